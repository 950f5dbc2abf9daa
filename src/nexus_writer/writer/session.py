"""``SessionWriter``: follows one session and writes every scan, live.

It also writes the scans retained in Redis that no writer has saved yet: those
created while it was down, and those it was writing when it crashed (their
files are resumed where the last flush left them).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from ..data import DataStore, EventType, SavingReporter, WriterPresence
from ..data.lease import LEASE_TTL, LeaseHolder, SessionLease
from ..data.saving import FINAL_STATES, reports
from ..data.status import publish_status
from ..data.store import DEFAULT_URL
from ..data.walk import connection_lost
from ..errors import NexusWriterError
from .blissdata_source import (BlissdataScanSource, detect_protocol, preload_blissdata,
                               record_key, scan_identity)
from .filewriter import FileWriterPool
from .options import WriterOptions
from .scan import ScanWriter
from .source import RedisScanSource
from .state import ScanState

logger = logging.getLogger(__name__)

#: Scans listed in the status document (the most recent ones).
STATUS_SCANS = 50
#: Finished scans a writer keeps in memory (status, web page, Tango); older ones are
#: forgotten, their outcome stays in Redis (:meth:`SessionWriter.scan_status`): a
#: session runs for weeks.
KEEP_FINISHED = STATUS_SCANS
#: Seconds between reconnection attempts when Redis is away (the last one repeats).
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _without(message: str, prefix: str) -> str:
    """``message`` without a leading ``prefix`` (the log line names the session already)."""
    return message[len(prefix):] if message.startswith(prefix) else message


class SessionWriter:
    """Writes the scans of ``session`` found in Redis at ``redis_url``.

    ``options`` are :class:`WriterOptions` fields (``keepshape=True``...).
    ``from_next=True`` writes only scans announced after the start; by default the
    retained scans that no writer saved are written too.
    ``protocol``: ``"native"`` (this project's), ``"blissdata"`` (BLISS 2.x) or
    ``"auto"`` (what the server speaks, see :func:`detect_protocol`).
    ``start()`` returns at once; ``stop()`` lets scans in progress finish.

    One writer only takes a session at a time (a lease in Redis, see
    :mod:`nexus_writer.data.lease`): ``start()`` raises :class:`LeaseHeldError` naming
    the active writer, or with ``standby=True`` returns and waits in the background
    for that writer's lease to lapse, then takes the session over.
    """

    def __init__(self, session: str, redis_url: str | None = None, from_next: bool = False,
                 on_change: Callable[[ScanWriter], None] | None = None,
                 status_period: float = 1.0, protocol: str = "auto", standby: bool = False,
                 lease_ttl: float = LEASE_TTL, **options: Any):
        self.session = session
        self.options = WriterOptions(**options)
        url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_URL
        # before the native store, which sets its own protocol key on connect
        self.protocol = detect_protocol(url, protocol)
        self.bliss_store: Any = None
        if self.protocol == "blissdata":
            from blissdata.redis_engine.store import DataStore as BlissDataStore

            self.bliss_store = BlissDataStore(url)
            self._bliss_json = self.bliss_store._redis.json()
            preload_blissdata()
        # this writer's own keys (heartbeat, status, saving records) in both protocols
        self.store = DataStore(url)
        self.from_next = from_next
        self.on_change = on_change
        self.status_period = status_period
        self.pool = FileWriterPool(self.options.flush_period)
        self.writers: dict[str, ScanWriter] = {}
        self._lock = threading.Lock()
        self._stop_listening = threading.Event()
        self._abort_scans = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.presence = WriterPresence(self.store, session, url=self.store.url)
        self.standby = standby
        self.lease = SessionLease(self.store, session, lease_ttl, on_lost=self._lease_lost)
        #: The writer that took the session over while this one wrote it, if any.
        self.lease_lost_to: LeaseHolder | None = None
        #: Address of this writer's web page when one serves it (set by nexus_writer.web).
        self.web_url: str | None = None

    @property
    def url(self) -> str:
        return self.store.url

    def start(self) -> "SessionWriter":
        """Listen in a thread; returns once the listener is attached (at once when
        standing by).  Raises :class:`LeaseHeldError` when another writer has the
        session and ``standby`` is off."""
        if not self.standby:
            self.lease.acquire()
        self._thread = threading.Thread(target=self._listen, name=f"session:{self.session}",
                                        daemon=True)
        self._thread.start()
        self._status_thread = threading.Thread(target=self._publish_status, daemon=True,
                                               name=f"status:{self.session}")
        self._status_thread.start()
        if self.lease.held:
            self._ready.wait(10)
            logger.info("session %s: writer listening on %s", self.session, self.store.url)
        return self

    def _stand_by(self) -> bool:
        """Wait for the session's lease (hot standby); False if stopped meanwhile."""
        if self.lease.held:
            return True

        def waiting(holder: LeaseHolder) -> None:
            logger.warning("session %s: standing by: the session is written by another "
                           "writer (%s); taking over when it stops", self.session, holder)

        if not self.lease.wait_acquire(self._stop_listening, on_wait=waiting):
            return False
        logger.warning("session %s: taking the session over (lease acquired); writing the "
                       "scans it left unsaved", self.session)
        return True

    def _lease_lost(self, holder: LeaseHolder | None) -> None:
        """Another writer has the session now: stop taking scans, end those in progress
        (recorded FAILED with the reason) and release their files to it."""
        self.lease_lost_to = holder
        self.presence.stop(delete=False)
        self._stop_listening.set()
        self._abort_scans.set()

    def _listen(self) -> None:
        """Follow the session; on a lost connection, reconnect with backoff and resume."""
        if not self._stand_by():
            return
        self.presence.start()
        try:
            if self.bliss_store is not None:
                self._listen_blissdata()
            else:
                self._listen_native()
        except Exception:  # noqa: BLE001 - said here, and the thread ends with it
            logger.exception("session %s: listener failed", self.session)
            raise

    def _listen_native(self) -> None:
        """This project's protocol: the session stream, from where it was left."""
        iterator = self.store.get_session_node(self.session).iterator
        since = None
        attempt = 0
        while not self._stop_listening.is_set():
            try:
                walk = iterator.walk_on_new_events(
                    filter=("scan", "scan_group"), from_next=self.from_next, since=since,
                    stop=self._stop_listening, block=0.2)
                since = iterator.last_id  # fixed at the call: a reconnection goes on from it
                self._ready.set()
                for event, scan in walk:
                    attempt = 0
                    if event == EventType.NEW_NODE:
                        self._new_scan(scan)
                    # handled: a reconnection resumes after it (not before a scan that
                    # Redis going away kept from being taken)
                    since = iterator.last_id
                return
            except ConnectionError as e:
                attempt = self._reconnect_later(attempt, e)

    def _reconnect_later(self, attempt: int, error: ConnectionError) -> int:
        """Redis went away: say so, wait this attempt's backoff; the next attempt."""
        delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
        logger.warning("session %s: %s; reconnecting in %.1f s", self.session,
                       _without(str(error), f"session {self.session!r}: "), delay)
        self._stop_listening.wait(delay)
        return attempt + 1

    def _listen_blissdata(self) -> None:
        """BLISS 2.x: first the session's retained scans that no writer finished
        (unless ``from_next``), then each new scan, from blissdata's scan history."""
        from blissdata.exceptions import NoScanAvailable

        bliss = self.bliss_store
        since: str | None = None
        attempt = 0
        while not self._stop_listening.is_set():
            try:
                with connection_lost(f"session {self.session!r}"):
                    if since is None:
                        if self.from_next:
                            since = bliss.get_last_scan_timetag()
                        else:  # the timetag of the search: no scan missed after it
                            since, keys = bliss.search_existing_scans(session=self.session)
                            for key in sorted(keys):  # ULIDs: creation order
                                self._new_bliss_scan(key)
                    self._ready.set()
                    while not self._stop_listening.is_set():
                        try:
                            timetag, key = bliss.get_next_scan(since=since, timeout=0.2)
                        except NoScanAvailable:
                            continue
                        attempt = 0
                        self._new_bliss_scan(key)
                        since = timetag
                return
            except ConnectionError as e:
                attempt = self._reconnect_later(attempt, e)

    def _new_bliss_scan(self, key: str) -> None:
        """A scan announced by blissdata (any session's): written if it is ours.  Its
        session and number are read alone (two fields of its document): a scan of
        another session costs no more; ours is loaded once, by its source."""
        identity = scan_identity(self._bliss_json, key)
        if identity is None:
            logger.warning("session %s: scan %s not readable (deleted, or not a blissdata "
                           "scan document)", self.session, key)
            return
        session, number = identity
        if session != self.session:
            return
        label = f"scan {number} of session {self.session!r}"
        try:
            self._take(key, label, SavingReporter(self.store, record_key(key)),
                       lambda: BlissdataScanSource(self.bliss_store, key, self.store,
                                                  stop=self._abort_scans))
        except ConnectionError:
            raise  # the listener reconnects and takes the scan again
        except NexusWriterError as e:  # deleted meanwhile, or a malformed document
            logger.warning("%s: not written: %s", label, e)

    def _new_scan(self, scan: Any) -> None:
        """A scan announced on the native protocol; a malformed one (a number that is
        not an integer...) is logged with its key and skipped: the session goes on."""
        try:
            label = scan.label
            self._take(scan.key, label, SavingReporter(scan.store, scan.key),
                       lambda: RedisScanSource(scan))
        except (ValueError, TypeError, KeyError) as e:
            logger.error("session %s: scan %s not written: malformed scan (%s: %s)",
                         self.session, scan.key, type(e).__name__, e)

    def _take(self, key: str, label: str, reporter: SavingReporter,
              make_source: Callable[[], Any]) -> None:
        """Write scan ``key`` unless it is being written or was saved already."""
        with self._lock:
            if key in self.writers:
                return
            saved = reporter.last_state()
            if saved in FINAL_STATES:
                logger.debug("%s: saved already (%s)", label, saved)
                return
            writer = ScanWriter(make_source(), self.pool, self.options,
                                stop=self._abort_scans, on_change=self.on_change)
            self._add(key, writer)
        logger.info("%s: new scan", label)
        writer.start()

    def _add(self, key: str, writer: ScanWriter) -> None:
        """A new scan writer (under the lock), the oldest finished beyond
        :data:`KEEP_FINISHED` forgotten."""
        self.writers[key] = writer
        finished = [k for k, w in self.writers.items() if w.finished is not None]
        for old in finished[:-KEEP_FINISHED]:
            del self.writers[old]

    # -- on demand (the Tango device's SaveScan), without following the session ----
    def save_scan(self, scan_key: str) -> ScanWriter | None:
        """Write the scan ``scan_key`` now, whether or not this writer follows its session.

        Returns the writer on it (the one already writing it, or a new one; a scan that
        a killed writer left unfinished is resumed from its last flush), or None when a
        writer saved it already (its final report is in Redis: see :meth:`scan_status`).
        Raises ``KeyError`` when the scan is not in Redis (expired or never created),
        ``ValueError`` when it cannot be read, ``ConnectionError`` when Redis is away.
        """
        with self._lock:
            writer = self.writers.get(scan_key)
            if writer is not None:
                return writer
            label, _, make_source = self._identify(scan_key)
            if SavingReporter(self.store, self._record(scan_key)).last_state() in FINAL_STATES:
                return None
            try:
                source = make_source()
            except NexusWriterError as e:  # deleted meanwhile, or a malformed document
                raise ValueError(str(e)) from e
            writer = ScanWriter(source, self.pool, self.options,
                                stop=self._abort_scans, on_change=self.on_change)
            self._add(scan_key, writer)
        logger.info("%s: saving requested", label)
        writer.start()
        return writer

    def scan_session(self, scan_key: str) -> str:
        """The session of scan ``scan_key`` (errors as :meth:`save_scan`)."""
        return self._identify(scan_key)[1]

    def _record(self, scan_key: str) -> str:
        """Where the saving reports of ``scan_key`` are (the scan's own hash when native)."""
        return record_key(scan_key) if self.bliss_store is not None else scan_key

    def _identify(self, scan_key: str) -> tuple[str, str, Callable[[], Any]]:
        """``(label, session, make_source)`` of a scan of this writer's protocol."""
        if self.bliss_store is not None:
            with connection_lost(f"scan {scan_key}"):
                identity = scan_identity(self._bliss_json, scan_key)
                exists = identity is not None or self.bliss_store._redis.exists(scan_key)
            if identity is None:
                if not exists:
                    raise KeyError(f"scan {scan_key!r} does not exist (expired or never "
                                   "created)")
                raise ValueError(f"scan {scan_key!r} cannot be read: not a blissdata scan "
                                 "document")
            session, number = identity
            return (f"scan {number} of session {session!r}", session,
                    lambda: BlissdataScanSource(self.bliss_store, scan_key, self.store))
        node = self.store.get_scan_node(scan_key)
        with connection_lost(f"scan {scan_key}"):
            session = node.session  # KeyError for a scan that is not in Redis
            node.number  # noqa: B018 - ValueError when malformed
        return node.label, session, lambda: RedisScanSource(node)

    def scan_status(self, scan_key: str) -> dict[str, Any] | None:
        """How the saving of ``scan_key`` goes: this writer's live view of it (``state``,
        ``reason``, ``problems``, ``file``, ``channels``: see :meth:`ScanWriter.stats`);
        else the last report a writer left in Redis (``state`` may then also be READY);
        None when no writer took the scan.  Raises ``ConnectionError`` when Redis is away.
        """
        with self._lock:
            writer = self.writers.get(scan_key)
        if writer is not None:
            stats = writer.stats()
            if writer.finished is None and stats["state"] in FINAL_STATES:
                # its outcome is known, not yet in the file: final once it is
                stats["state"] = "RUNNING"
            return stats
        with connection_lost(f"saving reports of scan {scan_key}"):
            found = reports(self.store, self._record(scan_key))
        if not found:
            return None
        last = found[-1]
        detail = last.detail
        return {"key": scan_key, "state": last.state, "reason": last.reason,
                "file": detail.get("file"), "entries": list(detail.get("entries") or ()),
                "channels": dict(detail.get("channels") or {}),
                "problems": list(detail.get("problems") or ())}

    def status(self) -> dict[str, Any]:
        """This writer's status document (also published in Redis)."""
        return {"pid": os.getpid(), "host": socket.gethostname(), "url": self.store.url,
                "protocol": self.protocol,
                "active": len(self.active()), "web": self.web_url,
                "lease": "held" if self.lease.held else
                         ("lost" if self.lease.lost.is_set() else "standby"),
                "scans": [w.stats() for w in self.scans()[-STATUS_SCANS:]]}

    def _publish_status(self) -> None:
        while not self._stopped.wait(self.status_period):
            if not self.lease.held:  # the active writer's document is not ours to replace
                continue
            try:
                publish_status(self.store, self.session, self.status())
            except Exception as e:  # noqa: BLE001 - Redis away: next period
                logger.debug("session %s: status not published: %s", self.session, e)

    def scans(self) -> list[ScanWriter]:
        with self._lock:
            return list(self.writers.values())

    def active(self) -> list[ScanWriter]:
        return [w for w in self.scans() if w.finished is None]

    def wait_idle(self, timeout: float = 30.0, settle: float = 0.0) -> bool:
        """Wait until every scan seen so far is written (for tests and the demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.active():
                if settle <= 0:
                    return True
                time.sleep(settle)
                settle = 0
                continue
            time.sleep(0.02)
        return False

    @property
    def listening(self) -> bool:
        """Whether the session is being followed (its listener thread is alive)."""
        return self._thread is not None and self._thread.is_alive()

    def stop_listening(self) -> None:
        """Take no new scan; scans in progress go on."""
        self._stop_listening.set()
        if self._thread is not None:
            self._thread.join(5)

    def abort(self) -> None:
        """End the scans in progress now: each is finalized FAILED with what it received."""
        self._abort_scans.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking new scans; let running ones finish for ``timeout`` s, then abort them."""
        self.stop_listening()
        deadline = None if timeout is None else time.monotonic() + timeout
        for writer in self.scans():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not writer.join(remaining):
                break
        if self.active():
            logger.warning("session %s: aborting %d scan(s) still in progress", self.session,
                           len(self.active()))
            self._abort_scans.set()
            for writer in self.scans():
                writer.join(30)
        self.pool.close_all()
        self._stopped.set()
        if self._status_thread is not None:
            self._status_thread.join(5)
        if self.lease.held:
            try:
                publish_status(self.store, self.session, self.status(), ttl=5)
            except Exception:  # noqa: BLE001
                pass
            self.presence.stop()
        self.lease.release()
        self.close_stores()

    def close_stores(self) -> None:
        """Close the Redis connections (what :meth:`stop` ends with; alone, for a writer
        never started)."""
        self.store.close()
        if self.bliss_store is not None:
            self.bliss_store._redis.close()

    def summary(self) -> dict[str, int]:
        """Number of scans per final state."""
        out: dict[str, int] = {}
        for w in self.scans():
            out[w.state.name] = out.get(w.state.name, 0) + 1
        return out

    def __enter__(self) -> "SessionWriter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(timeout=30)


__all__ = ["ScanState", "SessionWriter"]
