"""``SessionWriter``: follows one session and writes every new scan, live."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from ..data import DataStore, EventType
from .filewriter import FileWriterPool
from .options import WriterOptions
from .scan import ScanWriter
from .source import RedisScanSource
from .state import ScanState

logger = logging.getLogger(__name__)


class SessionWriter:
    """Writes the scans of ``session`` found in Redis at ``redis_url``.

    ``options`` are :class:`WriterOptions` fields (``keepshape=True``...).
    ``from_next=False`` also writes the retained scans found at start.
    ``start()`` returns at once; ``stop()`` lets scans in progress finish.
    """

    def __init__(self, session: str, redis_url: str | None = None, from_next: bool = True,
                 on_change: Callable[[ScanWriter], None] | None = None, **options: Any):
        self.session = session
        self.options = WriterOptions(**options)
        self.store = DataStore(redis_url)
        self.from_next = from_next
        self.on_change = on_change
        self.pool = FileWriterPool(self.options.flush_period)
        self.writers: dict[str, ScanWriter] = {}
        self._lock = threading.Lock()
        self._stop_listening = threading.Event()
        self._abort_scans = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return self.store.url

    def start(self) -> "SessionWriter":
        """Listen in a thread; returns once the listener is attached."""
        self._thread = threading.Thread(target=self._listen, name=f"session:{self.session}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        logger.info("session %s: writer listening on %s", self.session, self.store.url)
        return self

    def _listen(self) -> None:
        session = self.store.get_session_node(self.session)
        iterator = session.iterator
        walk = iterator.walk_on_new_events(filter=("scan", "scan_group"),
                                           from_next=self.from_next, stop=self._stop_listening,
                                           block=0.2)
        self._ready.set()
        try:
            for event, scan in walk:
                if event != EventType.NEW_NODE:
                    continue
                with self._lock:
                    if scan.key in self.writers:
                        continue
                    writer = ScanWriter(RedisScanSource(scan), self.pool, self.options,
                                        stop=self._abort_scans, on_change=self.on_change)
                    self.writers[scan.key] = writer
                logger.info("%s: new scan", scan.label)
                writer.start()
        except Exception:  # noqa: BLE001
            logger.exception("session %s: listener failed", self.session)
            raise

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
