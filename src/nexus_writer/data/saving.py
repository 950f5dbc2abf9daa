"""The saving-completeness protocol: writers say they listen, and say what they saved.

Keys (see docs/protocol.md):

* ``nxw:writer:{session}`` (hash, short TTL): a writer's heartbeat; present while a
  writer listens to the session.
* ``{scan key}:saving`` (stream): the writer's reports on one scan, in order:
  ``READY`` or ``REFUSED`` (can it write the target file?), ``RUNNING``, then one
  final ``SUCCEEDED``, ``FAILED`` or ``SKIPPED``, each with a reason and details
  (file, entries, points written and published per channel).
* fields ``saving_state`` / ``saving_reason`` / ``saving_progress`` of the scan hash:
  the latest report and the points flushed to disk per channel, for resume.

The acquisition side asks with :meth:`ScanPublisher.writer_ready` and
:meth:`ScanPublisher.wait_saved`; both are built on :func:`wait_report`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from . import protocol as P
from .walk import connection_lost

if TYPE_CHECKING:
    from .store import DataStore

logger = logging.getLogger(__name__)

READY_STATES = ("READY", "REFUSED")
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED")
REPORT_STATES = READY_STATES + ("STARTING", "RUNNING") + FINAL_STATES
#: Seconds a writer's heartbeat lives without renewal.
HEARTBEAT_TTL = 10.0


def writer_key(session: str) -> str:
    return f"{P.PREFIX}:writer:{session}"


def saving_key(scan_key: str) -> str:
    return f"{scan_key}:saving"


@dataclass(frozen=True)
class SavingReport:
    """One report of a writer on a scan."""

    state: str
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in ("READY", "SUCCEEDED", "SKIPPED")

    def __str__(self) -> str:
        return self.state + (f": {self.reason}" if self.reason else "")


def writer_present(store: "DataStore", session: str) -> dict[str, str] | None:
    """The heartbeat of the writer listening to ``session``, or None."""
    fields = store.redis.hgetall(writer_key(session))
    return {k.decode(): v.decode() for k, v in fields.items()} or None


def reports(store: "DataStore", scan_key: str) -> list[SavingReport]:
    """All reports on a scan so far, oldest first."""
    return [_decode(fields) for _, fields in store.redis.xrange(saving_key(scan_key))]


def _decode(fields: Mapping[bytes, bytes]) -> SavingReport:
    detail: Any = {}
    raw = fields.get(b"detail")
    if raw:
        try:
            detail = P.loads(raw)
        except ValueError:
            detail = {"raw": raw.decode(errors="replace")}
    return SavingReport(fields.get(b"state", b"?").decode(),
                        fields.get(b"reason", b"").decode(), detail)


def wait_report(store: "DataStore", scan_key: str, states: tuple[str, ...],
                timeout: float) -> SavingReport | None:
    """The first report on ``scan_key`` whose state is in ``states`` (past ones
    included), waiting up to ``timeout`` seconds; None on timeout."""
    r = store.redis
    key = saving_key(scan_key)
    last = "0-0"
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        remaining = deadline - time.monotonic()
        block = max(1, int(min(remaining, 1.0) * 1000)) if remaining > 0 else None
        resp = r.xread({key: last}, count=100, block=block)
        for _, entries in resp or ():
            for entry_id, fields in entries:
                last = entry_id.decode()
                report = _decode(fields)
                if report.state in states:
                    return report
        if remaining <= 0:
            return None


class SavingReporter:
    """What a writer reports on one scan (writer side)."""

    def __init__(self, store: "DataStore", scan_key: str):
        self.store = store
        self.scan_key = scan_key

    def report(self, state: str, reason: str = "", **detail: Any) -> None:
        """Add a report; a final one also acknowledges the scan (see :meth:`acknowledge`)
        in the same transaction, so that a producer told "saved" finds the normal
        retention applied."""
        if state not in REPORT_STATES:
            raise ValueError(f"saving state {state!r} is not one of {REPORT_STATES}")
        with connection_lost(f"saving report {state} on scan {self.scan_key}"):
            self._report(state, reason, detail)

    def _report(self, state: str, reason: str, detail: Mapping[str, Any]) -> None:
        r = self.store.redis
        final = state in FINAL_STATES
        keys, ttl = self._ended_keys() if final else (None, 0)
        with r.pipeline(transaction=True) as pipe:
            pipe.xadd(saving_key(self.scan_key), {b"state": state, b"reason": reason,
                                                  b"detail": P.dumps(detail)})
            pipe.hset(self.scan_key, mapping={"saving_state": state, "saving_reason": reason})
            if final:
                pipe.hset(self.scan_key, "acknowledged", 1)
                for key in keys or ():
                    pipe.expire(key, ttl)
            pipe.execute()
        if final:
            if keys is None:  # not ended when read: maybe ended since
                self.acknowledge()
            return
        # Reports on an ended scan expire with it (a scan ending later expires them at
        # its end): else those of a writer that died before its final report would stay.
        pttl = r.pttl(self.scan_key)
        if pttl > 0:
            r.pexpire(saving_key(self.scan_key), pttl)

    def progress(self, flushed: Mapping[str, int]) -> None:
        """Points durably in the file per node name (resume starts from there)."""
        with connection_lost(f"progress of scan {self.scan_key}"):
            self.store.redis.hset(self.scan_key, "saving_progress", P.dumps(dict(flushed)))

    def saved_progress(self) -> dict[str, int]:
        with connection_lost(f"progress of scan {self.scan_key}"):
            raw = self.store.redis.hget(self.scan_key, "saving_progress")
        try:
            return {str(k): int(v) for k, v in P.loads(raw).items()} if raw else {}
        except (ValueError, AttributeError):
            return {}

    def last_state(self) -> str | None:
        """The latest report's state; raises :class:`RedisConnectionLost` (a
        ``ConnectionError``) when Redis is away, so that listeners retry."""
        with connection_lost(f"saving state of scan {self.scan_key}"):
            raw = self.store.redis.hget(self.scan_key, "saving_state")
        return raw.decode() if raw else None

    def _ended_keys(self) -> tuple[list[str] | None, int]:
        """The keys of the ended scan (its saving reports included) and the producer's
        retention in seconds; ``(None, 0)`` while the scan has not ended."""
        raw, retention = self.store.redis.hmget(self.scan_key, "keys", "retention")
        if raw is None:
            return None, 0
        try:  # the producer's retention, not this writer's
            seconds = float(retention) if retention is not None else self.store.retention
        except ValueError:
            seconds = self.store.retention
        return P.loads(raw) + [saving_key(self.scan_key)], max(1, int(round(seconds)))

    def acknowledge(self) -> None:
        """The scan is saved (or given up): its keys may now expire after the normal
        retention instead of the unacknowledged cap."""
        r = self.store.redis
        # The flag first, the keys second; ScanPublisher.end() does the reverse, so a
        # scan ending meanwhile is seen by one side or the other.
        r.hset(self.scan_key, "acknowledged", 1)
        keys, ttl = self._ended_keys()
        if keys is None:  # not ended yet: the publisher applies the retention at its end
            return
        with r.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.expire(key, ttl)
            pipe.execute()


class WriterPresence:
    """A writer's heartbeat on a session, renewed in a thread while it runs."""

    def __init__(self, store: "DataStore", session: str, ttl: float = HEARTBEAT_TTL,
                 **info: Any):
        self.store = store
        self.session = session
        self.ttl = ttl
        self.info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                     **info}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        key = writer_key(self.session)
        with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={k: str(v) for k, v in self.info.items()})
            pipe.hset(key, "heartbeat", str(time.time()))
            pipe.pexpire(key, int(self.ttl * 1000))
            pipe.execute()

    def start(self) -> "WriterPresence":
        self.beat()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"heartbeat:{self.session}")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001 - Redis away: retried at the next beat
                logger.warning("session %s: heartbeat failed: %s", self.session, e)

    def stop(self, delete: bool = True) -> None:
        """Stop beating; ``delete`` the heartbeat too (not when another writer took over
        the session: the key is its heartbeat now)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if not delete:
            return
        try:
            self.store.redis.delete(writer_key(self.session))
        except Exception:  # noqa: BLE001
            pass
