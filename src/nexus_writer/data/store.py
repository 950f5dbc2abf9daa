"""``DataStore``: the connection to Redis, shared by publishers and listeners."""

from __future__ import annotations

import copy
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping

import redis

from ..errors import ProtocolVersionError
from . import protocol as P
from .urls import DEFAULT_URL, describe_error, redact_url, resolve_url  # noqa: F401 - DEFAULT_URL for importers

if TYPE_CHECKING:
    from .nodes import ScanNode, SessionNode
    from .publish import ScanPublisher

logger = logging.getLogger(__name__)



class DataStore:
    """Entry point of the data API, on one Redis database.

    ``url``: a Redis URL (an ACL user and password may be in it:
    ``redis://user:pw@host:port``); else the ``REDIS_URL`` environment variable; else
    ``redis://localhost:6379``.  :attr:`url` is the URL to show (credentials masked);
    the URL with its secret stays private.  ``retention``: seconds a scan's keys are kept
    after its end once a writer acknowledged it saved (default 24 h);
    ``unacked_retention``: the cap for scans no writer acknowledged (default 72 h),
    which protects Redis memory when no writer runs.

    The protocol version is checked on connect: a database written by another
    version raises :class:`ProtocolVersionError` naming both versions.
    """

    def __init__(self, url: str | None = None, retention: float = P.DEFAULT_RETENTION,
                 unacked_retention: float = P.DEFAULT_UNACKED_RETENTION):
        self._url = resolve_url(url)
        #: The URL as shown in logs, errors and status documents: never its secret.
        self.url = redact_url(self._url)
        self.retention = float(retention)
        self.unacked_retention = float(unacked_retention)
        self.redis = redis.Redis.from_url(self._url)
        self._check_protocol()

    def _check_protocol(self) -> None:
        try:
            self.redis.set(P.VERSION_KEY, P.PROTOCOL_VERSION, nx=True)
            found = self.redis.get(P.VERSION_KEY)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as e:
            self.redis.close()
            # which problem (unreachable, password, ACL...) and its fix, secrets masked
            raise ConnectionError(describe_error(e, self._url)) from e
        try:
            version = int(found)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            version = None
        if version != P.PROTOCOL_VERSION:
            shown = found.decode(errors="replace") if isinstance(found, bytes) else found
            self.redis.close()
            raise ProtocolVersionError(
                f"Redis at {self.url} holds nexus-writer protocol version {shown!r} "
                f"(key {P.VERSION_KEY}), this program speaks version {P.PROTOCOL_VERSION}; "
                "use a matching nexus-writer or another Redis database"
            )

    # -- producer side -------------------------------------------------------------
    def create_scan(
        self,
        session_name: str,
        scan_info: Mapping[str, Any],
        node_type: str = "scan",
        parent: "ScanPublisher | None" = None,
    ) -> "ScanPublisher":
        """Register a new scan of ``session_name`` and announce it to listeners.

        ``scan_info`` must carry ``scan_nb``.  ``node_type="scan_group"`` makes a
        sequence, whose child scans are added with :meth:`ScanPublisher.add_child`.
        """
        from .publish import ScanPublisher

        if "scan_nb" not in scan_info:
            raise ValueError(
                f"scan_info of a new scan in session {session_name!r} has no 'scan_nb'")
        if node_type not in ("scan", "scan_group"):
            raise ValueError(f"node_type must be 'scan' or 'scan_group', not {node_type!r}")
        uid = f"{session_name}:{int(scan_info['scan_nb'])}:{uuid.uuid4().hex[:10]}"
        key = P.scan_key(uid)
        info = copy.deepcopy(dict(scan_info))  # update_info must not touch the caller's dicts
        info.setdefault("session_name", session_name)
        mapping: dict[str | bytes, bytes | float | int | str] = {
            "info": P.dumps(info),
            "session": session_name,
            "number": int(scan_info["scan_nb"]),
            "name": str(scan_info.get("name", scan_info.get("type", "scan"))),
            "type": node_type,
            "state": "CREATED",
            "created": time.time(),
        }
        if parent is not None:
            mapping["parent"] = parent.key
        session_key = P.session_stream_key(session_name)
        # scans wait up to the unacknowledged cap for a writer: keep announcing them
        min_id = int((time.time() - max(self.retention, self.unacked_retention)) * 1000)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.xadd(P.scan_events_key(key), {P.F_EVENT: b"CREATED"})
            pipe.xtrim(session_key, minid=max(min_id, 0), approximate=True)
            pipe.xadd(session_key, {P.F_EVENT: b"NEW_NODE", P.F_SCAN: key.encode()})
            pipe.execute()
        logger.debug("session %s: scan %s created (%s)", session_name, scan_info["scan_nb"], key)
        return ScanPublisher(self, key, session_name, info, node_type)

    # -- listener side -------------------------------------------------------------
    def get_session_node(self, name: str) -> "SessionNode":
        """The session ``name``, to walk its scans."""
        from .nodes import SessionNode

        return SessionNode(self, name)

    def get_scan_node(self, key: str) -> "ScanNode":
        """A scan by its Redis key (as found in events or a saved position)."""
        from .nodes import ScanNode

        return ScanNode(self, key)

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"DataStore({self.url!r})"
