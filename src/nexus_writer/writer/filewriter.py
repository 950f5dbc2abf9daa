"""One thread per dataset file owns its HDF5 handle; scan writers feed it through a
bounded queue.

HDF5 calls in h5py run under one global lock, so more threads would not write
faster; what this buys is overlap: scan writers read Redis while this thread
writes.  Consecutive appends to the same dataset are merged into one write.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import queue
import shutil
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import h5py
import numpy as np

from ..errors import NexusWriterError
from ..nexus.groups import open_file
from .filelock import FileLockedError, WriterFileLock
from .progress import ProgressRecorder

logger = logging.getLogger(__name__)

#: Operations waiting per file; a full queue makes scan writers wait (back-pressure).
QUEUE_SIZE = 256
#: Bytes merged into one write at most.
MERGE_BYTES = 16 << 20
#: Seconds between free-space checks when far from the limit.
SPACE_CHECK_PERIOD = 1.0


#: Free bytes kept on the file's device.  Appends that would eat into them are refused
#: (the scans fail with "No space left on device"): HDF5 running out of space in the
#: middle of a flush leaves a file that cannot be opened again, while this reserve
#: keeps what was written readable and holds the final status.
MIN_FREE_BYTES = 2 << 20


class DiskFullError(NexusWriterError, OSError):
    """The dataset file's device is (nearly) full: no more data is written to it."""


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


def _broken_hdf5(path: str, error: OSError) -> bool:
    """Whether ``path`` is an HDF5 file (by its signature) that HDF5 cannot open for a
    reason other than the system's (permissions...): a file left half-written."""
    if error.errno is not None or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


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


class _FlushRequest:
    """A caller waiting for what it queued before to be on disk: the requests of one
    drained batch share one flush (scans ending together pay for one)."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future = Future()


class FileWriter:
    """Applies operations to one HDF5 file, in order, in its own thread."""

    def __init__(self, path: str, flush_period: float = 1.0):
        self.path = path
        self.flush_period = flush_period
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._file: h5py.File | None = None
        self._lock = WriterFileLock(path)
        self._dirty = False
        self._last_flush = time.monotonic()
        self.users = 0
        self._space_left = -1  # bytes that may be appended before checking the disk again
        self._space_at = 0.0
        self._deferred: set[Target] = set()  # targets whose writer has a pending rebuild
        #: Called in the file thread after each successful flush (progress records).
        self.flush_listeners: list[Callable[[], None]] = []
        #: Why data can no longer be written safely to this file (disk full, failed
        #: flush); scans writing it end FAILED with it.
        self.error: BaseException | None = None
        #: Where an unreadable file found at ``path`` was moved (see :meth:`_open`).
        self.replaced: str | None = None
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

    def flush(self) -> None:
        """Flush the file now (after what is queued) and wait; a failure is in
        :attr:`error`."""
        request = _FlushRequest()
        self._queue.put(request)
        request.future.result()

    def close(self) -> None:
        """Flush, close the file and end the thread once the queue is done."""
        self._queue.put(_CLOSE)
        self._thread.join()

    # -- the file thread -----------------------------------------------------------
    def _open(self) -> h5py.File:
        if self._file is None:
            if not self._lock.held:
                self._lock.acquire()  # before anything touches the file (or moves it aside)
            try:
                return self._open_file()
            except BaseException:
                self._lock.release()
                raise
        return self._file

    def _open_file(self) -> h5py.File:
        if self._file is None:
            holder = lock_holder(self.path)
            if holder is not None:
                raise FileLockedError(
                    f"{self.path} is locked for writing by another process ({holder}); "
                    "two writers on one file would corrupt it: stop that process or "
                    "save to another file")
            created = not os.path.exists(self.path)
            try:
                self._file = open_file(self.path)
            except OSError as e:
                if not _broken_hdf5(self.path, e):
                    raise
                aside = f"{self.path}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
                os.rename(self.path, aside)
                logger.error("%s cannot be opened (%s), most likely a writer was killed while "
                             "creating or flushing it: moved to %s; a new file is started "
                             "(the scans still in Redis are written again)", self.path, e,
                             aside)
                self.replaced = aside
                created = True
                self._file = open_file(self.path)
            if created:
                # The new file's root on disk now: a writer killed before its first
                # periodic flush would leave a file nobody can open.
                self._file.flush()
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
            flushes: list[_FlushRequest] = []
            i = 0
            while i < len(ops):
                op = ops[i]
                if op is _CLOSE:
                    self._flush(force=True)
                    self._resolve(flushes)
                    self._close()
                    return
                if isinstance(op, _FlushRequest):  # after the rest of the batch
                    flushes.append(op)
                    i += 1
                    continue
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
            self._flush(force=bool(flushes))
            self._resolve(flushes)

    @staticmethod
    def _resolve(flushes: list[_FlushRequest]) -> None:
        for request in flushes:
            request.future.set_result(None)

    def _sync_deferred(self) -> None:
        """Bring deferred (camera) datasets up to date."""
        deferred, self._deferred = self._deferred, set()
        for target in deferred:
            try:
                target.writer.sync()
            except Exception as e:  # noqa: BLE001 - this channel is flagged, others go on
                target.fail(e)

    def _do_call(self, op: _Call) -> None:
        if self._deferred:  # what a call reads or writes must see every frame announced
            self._sync_deferred()
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
        end = -1  # index after the last point of groups[-1]
        for op in ops:
            if groups and end == op.first:
                groups[-1][1].append(op.data)
            else:
                groups.append((op.first, [op.data]))
            end = op.first + len(op.data)
        try:
            self._open()
            self._check_space(sum(op.nbytes for op in ops))
            for first, parts in groups:
                if len(parts) == 1:
                    data = parts[0]
                elif isinstance(parts[0], np.ndarray):
                    data = np.concatenate(parts)
                else:
                    data = [p for part in parts for p in part]
                target.writer.append(first, data)
                if getattr(target.writer, "pending", False):
                    self._deferred.add(target)
                if first > target.written:
                    target.missing += first - target.written
                target.written = max(target.written, first + len(data))
            self._dirty = True
        except Exception as e:  # noqa: BLE001 - one channel's failure is reported, not raised
            target.fail(e)

    def _check_space(self, nbytes: int) -> None:
        """Refuse ``nbytes`` more of data when the device would keep less than
        :data:`MIN_FREE_BYTES` (twice the bytes: compressed chunks may be rewritten)."""
        if self.error is not None:
            raise self.error
        self._space_left -= 2 * nbytes
        now = time.monotonic()
        if self._space_left > 0 and now - self._space_at < SPACE_CHECK_PERIOD:
            return  # checked recently, and far from the limit
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            return
        needed = 2 * nbytes + MIN_FREE_BYTES
        # writes may use half the margin before the next check
        self._space_left, self._space_at = (free - MIN_FREE_BYTES) // 2, now
        if free < needed:
            self.error = DiskFullError(
                errno.ENOSPC, f"No space left on device for {self.path}: {free / 1e6:.1f} MB "
                f"free in {directory}, {needed / 1e6:.1f} MB needed to go on safely; data "
                "no longer written, the file keeps what was written before")
            logger.error("%s", self.error)
            raise self.error

    def _flush(self, force: bool) -> None:
        now = time.monotonic()
        if self._file is None or not self._dirty:
            self._last_flush = now
            return
        if force or now - self._last_flush >= self.flush_period:
            if self._deferred:
                self._sync_deferred()
            try:
                self._file.flush()
            except Exception as e:  # noqa: BLE001 - the scans of this file fail with it
                logger.error("%s: flush failed: %s", self.path, e)
                if self.error is None:
                    self.error = e
                return
            self._dirty = False
            self._last_flush = now
            # cheap: each listener snapshots what is durable now; the records are
            # written to Redis by the pool's recorder thread, not here
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
        self._lock.release()


class FileWriterPool:
    """One :class:`FileWriter` per path, shared by the scans writing that file."""

    def __init__(self, flush_period: float = 1.0):
        self.flush_period = flush_period
        self._writers: dict[str, FileWriter] = {}
        self._lock = threading.Lock()
        #: Writes the scans' durable progress to Redis (see :mod:`.progress`).
        self.progress = ProgressRecorder()

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

    def read(self, path: str, fn: Callable[[h5py.File], Any], timeout: float = 30.0) -> Any:
        """``fn(file)`` on a consistent view of ``path``, for readers in this process
        (the web page): in the file thread of the writer that holds it (HDF5 shares one
        open file per process, so that thread sees every operation whole, flushed or
        not), else on the file opened read-only while no writer can open it.

        Never opens a file for writing: a read-only handle held when a writer opens the
        same file would make that open fail, hence the pool lock around it.
        """
        with self._lock:
            writer = self._writers.get(path)
            if writer is None:
                with h5py.File(path, "r", locking=False) as f:
                    return fn(f)
            writer.users += 1
        try:
            return writer.call(fn, timeout)
        finally:
            self.release(writer)

    def close_all(self) -> None:
        with self._lock:
            writers = list(self._writers.values())
            self._writers.clear()
        for w in writers:
            w.close()
        self.progress.close()
