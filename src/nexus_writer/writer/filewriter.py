"""One thread per dataset file owns its HDF5 handle; scan writers feed it through a
bounded queue.

HDF5 calls in h5py run under one global lock, so more threads would not write
faster; what this buys is overlap: scan writers read Redis while this thread
writes.  Consecutive appends to the same dataset are merged into one write.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import h5py
import numpy as np

from ..errors import NexusWriterError
from ..nexus.groups import open_file

logger = logging.getLogger(__name__)

#: Operations waiting per file; a full queue makes scan writers wait (back-pressure).
QUEUE_SIZE = 256
#: Bytes merged into one write at most.
MERGE_BYTES = 16 << 20


class FileLockedError(NexusWriterError, BlockingIOError):
    """Another process holds an exclusive lock on the dataset file."""


def lock_holder(path: str) -> str | None:
    """Who holds an exclusive lock on ``path`` ("pid N (command)"), or None.

    HDF5 locks files with ``flock``; a shared lock attempt fails only against an
    exclusive holder (another writer), never against readers.
    """
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        inode = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                if len(parts) >= 6 and parts[5].rsplit(":", 1)[-1] == str(inode):
                    pid = parts[4]
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as c:
                            cmd = c.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    except OSError:
                        cmd = "?"
                    return f"pid {pid} ({cmd[:80]})"
    except OSError:
        pass
    return "a process this system does not name"


class Target:
    """Where a channel's appends go; ``writer`` is set in the file thread at creation."""

    def __init__(self, name: str, on_error: Callable[[str, BaseException], None]):
        self.name = name
        self.writer: Any = None  # ChannelDataset or CameraDataset
        self.error: BaseException | None = None
        self.on_error = on_error
        #: One past the highest point index written.
        self.written = 0
        #: Points below ``written`` that never arrived (gaps in the source).
        self.missing = 0

    @property
    def points(self) -> int:
        """Points actually written (a gap left by missing points is not counted)."""
        return self.written - self.missing

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            self.on_error(self.name, exc)


class _Append:
    __slots__ = ("target", "first", "data", "nbytes")

    def __init__(self, target: Target, first: int, data: Any):
        self.target = target
        self.first = first
        self.data = data
        self.nbytes = data.nbytes if isinstance(data, np.ndarray) else 0


class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[h5py.File], Any], future: Future | None):
        self.fn = fn
        self.future = future


_CLOSE = object()


class FileWriter:
    """Applies operations to one HDF5 file, in order, in its own thread."""

    def __init__(self, path: str, flush_period: float = 1.0):
        self.path = path
        self.flush_period = flush_period
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._file: h5py.File | None = None
        self._dirty = False
        self._last_flush = time.monotonic()
        self.users = 0
        #: Called in the file thread after each successful flush (progress records).
        self.flush_listeners: list[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._run, name=f"h5:{path}", daemon=True)
        self._thread.start()

    # -- called from scan writers --------------------------------------------------
    def append(self, target: Target, first_index: int, data: Any) -> None:
        """Queue points for ``target`` (waits while the queue is full)."""
        self._queue.put(_Append(target, first_index, data))

    def submit(self, fn: Callable[[h5py.File], Any]) -> Future:
        """Queue ``fn(file)``; its result or exception arrives in the returned future."""
        future: Future = Future()
        self._queue.put(_Call(fn, future))
        return future

    def call(self, fn: Callable[[h5py.File], Any], timeout: float | None = None) -> Any:
        """Run ``fn(file)`` in the file thread and wait for its result."""
        return self.submit(fn).result(timeout)

    def close(self) -> None:
        """Flush, close the file and end the thread once the queue is done."""
        self._queue.put(_CLOSE)
        self._thread.join()

    # -- the file thread -----------------------------------------------------------
    def _open(self) -> h5py.File:
        if self._file is None:
            holder = lock_holder(self.path)
            if holder is not None:
                raise FileLockedError(
                    f"{self.path} is locked for writing by another process ({holder}); "
                    "two writers on one file would corrupt it: stop that process or "
                    "save to another file")
            self._file = open_file(self.path)
        return self._file

    def _run(self) -> None:
        pending: list[Any] = []
        while True:
            if not pending:
                try:
                    pending.append(self._queue.get(timeout=max(0.01, self.flush_period / 4)))
                except queue.Empty:
                    self._flush(force=False)
                    continue
            # drain what is there, to merge appends
            while len(pending) < QUEUE_SIZE:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ops, pending = pending, []
            i = 0
            while i < len(ops):
                op = ops[i]
                if op is _CLOSE:
                    self._flush(force=True)
                    self._close()
                    return
                if isinstance(op, _Call):
                    self._do_call(op)
                    i += 1
                    continue
                j = i + 1
                size = op.nbytes
                while (j < len(ops) and isinstance(ops[j], _Append) and ops[j].target is op.target
                       and size < MERGE_BYTES):
                    size += ops[j].nbytes
                    j += 1
                self._do_append(ops[i:j])
                i = j
            self._flush(force=False)

    def _do_call(self, op: _Call) -> None:
        try:
            result = op.fn(self._open())
            self._dirty = True
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            logger.debug("%s: operation failed: %s", self.path, e)
            if op.future is not None:
                op.future.set_exception(e)
            return
        if op.future is not None:
            op.future.set_result(result)

    def _do_append(self, ops: list[_Append]) -> None:
        target = ops[0].target
        if target.error is not None or target.writer is None:
            if target.writer is None and target.error is None:
                target.fail(RuntimeError(f"{target.name}: data arrived before its dataset"))
            return
        # merge contiguous batches
        groups: list[tuple[int, list[Any]]] = []
        for op in ops:
            if groups and groups[-1][0] + sum(len(d) for d in groups[-1][1]) == op.first:
                groups[-1][1].append(op.data)
            else:
                groups.append((op.first, [op.data]))
        try:
            self._open()
            for first, parts in groups:
                if len(parts) == 1:
                    data = parts[0]
                elif isinstance(parts[0], np.ndarray):
                    data = np.concatenate(parts)
                else:
                    data = [p for part in parts for p in part]
                target.writer.append(first, data)
                if first > target.written:
                    target.missing += first - target.written
                target.written = max(target.written, first + len(data))
            self._dirty = True
        except Exception as e:  # noqa: BLE001 - one channel's failure is reported, not raised
            target.fail(e)

    def _flush(self, force: bool) -> None:
        now = time.monotonic()
        if self._file is None or not self._dirty:
            self._last_flush = now
            return
        if force or now - self._last_flush >= self.flush_period:
            try:
                self._file.flush()
            except Exception:  # noqa: BLE001
                logger.exception("%s: flush failed", self.path)
                return
            self._dirty = False
            self._last_flush = now
            for listener in list(self.flush_listeners):
                try:
                    listener()
                except Exception:  # noqa: BLE001 - a progress record must not stop writing
                    logger.exception("%s: flush listener failed", self.path)

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001
                logger.exception("%s: close failed", self.path)
            self._file = None


class FileWriterPool:
    """One :class:`FileWriter` per path, shared by the scans writing that file."""

    def __init__(self, flush_period: float = 1.0):
        self.flush_period = flush_period
        self._writers: dict[str, FileWriter] = {}
        self._lock = threading.Lock()

    def acquire(self, path: str) -> FileWriter:
        with self._lock:
            writer = self._writers.get(path)
            if writer is None:
                writer = self._writers[path] = FileWriter(path, self.flush_period)
            writer.users += 1
            return writer

    def release(self, writer: FileWriter) -> None:
        with self._lock:
            writer.users -= 1
            if writer.users > 0:
                return
            del self._writers[writer.path]
        writer.close()

    def close_all(self) -> None:
        with self._lock:
            writers = list(self._writers.values())
            self._writers.clear()
        for w in writers:
            w.close()
