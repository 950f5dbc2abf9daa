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
from ..data.saving import FINAL_STATES, reports
from ..data.status import publish_status
from ..data.walk import connection_lost
from .filewriter import FileWriterPool
from .options import WriterOptions
from .scan import ScanWriter
from .source import RedisScanSource
from .state import ScanState

logger = logging.getLogger(__name__)

#: Scans listed in the status document (the most recent ones).
STATUS_SCANS = 50
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
    ``start()`` returns at once; ``stop()`` lets scans in progress finish.
    """

    def __init__(self, session: str, redis_url: str | None = None, from_next: bool = False,
                 on_change: Callable[[ScanWriter], None] | None = None,
                 status_period: float = 1.0, **options: Any):
        self.session = session
        self.options = WriterOptions(**options)
        self.store = DataStore(redis_url)
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

    @property
    def url(self) -> str:
        return self.store.url

    def start(self) -> "SessionWriter":
        """Listen in a thread; returns once the listener is attached."""
        self.presence.start()
        self._thread = threading.Thread(target=self._listen, name=f"session:{self.session}",
                                        daemon=True)
        self._thread.start()
        self._status_thread = threading.Thread(target=self._publish_status, daemon=True,
                                               name=f"status:{self.session}")
        self._status_thread.start()
        self._ready.wait(10)
        logger.info("session %s: writer listening on %s", self.session, self.store.url)
        return self

    def _listen(self) -> None:
        """Follow the session; on a lost connection, reconnect with backoff and resume."""
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
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                logger.warning("session %s: %s; reconnecting in %.1f s", self.session,
                               _without(str(e), f"session {self.session!r}: "), delay)
                self._stop_listening.wait(delay)
            except Exception:  # noqa: BLE001
                logger.exception("session %s: listener failed", self.session)
                raise

    def _new_scan(self, scan: Any) -> None:
        with self._lock:
            if scan.key in self.writers:
                return
            saved = SavingReporter(scan.store, scan.key).last_state()
            if saved in FINAL_STATES:
                logger.debug("%s: saved already (%s)", scan.label, saved)
                return
            writer = ScanWriter(RedisScanSource(scan), self.pool, self.options,
                                stop=self._abort_scans, on_change=self.on_change)
            self.writers[scan.key] = writer
        logger.info("%s: new scan", scan.label)
        writer.start()

    # -- on demand (the Tango device's SaveScan), without following the session ----
    def save_scan(self, scan_key: str) -> ScanWriter | None:
        """Write the scan ``scan_key`` now, whether or not this writer follows its session.

        Returns the writer on it (the one already writing it, or a new one; a scan that
        a killed writer left unfinished is resumed from its last flush), or None when a
        writer saved it already (its final report is in Redis: see :meth:`scan_status`).
        Raises ``KeyError`` when the scan is not in Redis (expired or never created) and
        ``ConnectionError`` when Redis is away.
        """
        with self._lock:
            writer = self.writers.get(scan_key)
            if writer is not None:
                return writer
            scan = self.store.get_scan_node(scan_key)
            with connection_lost(f"scan {scan_key}"):
                scan.number  # noqa: B018 - raises KeyError for a scan that is not in Redis
            if SavingReporter(self.store, scan_key).last_state() in FINAL_STATES:
                return None
            writer = ScanWriter(RedisScanSource(scan), self.pool, self.options,
                                stop=self._abort_scans, on_change=self.on_change)
            self.writers[scan_key] = writer
        logger.info("%s: saving requested", scan.label)
        writer.start()
        return writer

    def scan_status(self, scan_key: str) -> dict[str, Any] | None:
        """How the saving of ``scan_key`` goes: this writer's live view of it (``state``,
        ``reason``, ``problems``, ``file``, ``channels``: see :meth:`ScanWriter.stats`);
        else the last report a writer left in Redis (``state`` may then also be READY);
        None when no writer took the scan.  Raises ``ConnectionError`` when Redis is away.
        """
        with self._lock:
            writer = self.writers.get(scan_key)
        if writer is not None:
            return writer.stats()
        with connection_lost(f"saving reports of scan {scan_key}"):
            found = reports(self.store, scan_key)
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
                "active": len(self.active()),
                "scans": [w.stats() for w in self.scans()[-STATUS_SCANS:]]}

    def _publish_status(self) -> None:
        while not self._stopped.wait(self.status_period):
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
        if self._thread is not None:  # started: it announced itself (on demand, it did not)
            try:
                publish_status(self.store, self.session, self.status(), ttl=5)
            except Exception:  # noqa: BLE001
                pass
            self.presence.stop()
        self.store.close()

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
