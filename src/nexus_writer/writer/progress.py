"""Durable progress records, written to Redis off the file thread.

After each flush the file thread notes, per scan, the points now durably in the
file (a dict snapshot, cheap); this recorder's thread writes the latest note of each
scan to Redis.  A Redis round trip per scan per flush in the file thread made every
flush cost as many round trips as scans open on the file.  Only the latest note of
a scan matters (a resume starts from it), so notes not yet written are replaced,
and a record that lags behind the file is safe (a resume rewrites those points).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

logger = logging.getLogger(__name__)


class ProgressRecorder:
    """Writes ``save(flushed)`` calls in its own thread, latest note per key first."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[Callable[[Mapping[str, int]], None], dict[str, int]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def note(self, key: str, save: Callable[[Mapping[str, int]], None],
             flushed: Mapping[str, int]) -> None:
        """Record ``flushed`` for ``key`` soon (replaces a note not written yet)."""
        with self._lock:
            self._pending[key] = (save, dict(flushed))
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()
        self._wake.set()

    def discard(self, key: str) -> None:
        """Forget a note not written yet (the scan is final: its record is the report)."""
        with self._lock:
            self._pending.pop(key, None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until every note taken so far is written (or failed)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._pending:
                        self._idle.set()
                        break
                    key = next(iter(self._pending))
                    save, flushed = self._pending.pop(key)
                try:
                    save(flushed)
                except Exception as e:  # noqa: BLE001 - Redis away: the next flush notes again
                    logger.debug("progress of %s not recorded: %s", key, e)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is noted, then end the thread."""
        self._idle.wait(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["ProgressRecorder"]
