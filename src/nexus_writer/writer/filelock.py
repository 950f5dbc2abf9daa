"""No two writer processes write one dataset file at the same time.

HDF5's own file locking is off (readers must never block the writer, nor the writer
its readers), so writers take a lock of their own, which readers never see: an
exclusive ``flock`` on a side file ``.{name}.writer-lock`` beside the dataset file,
holding who took it (host, pid, since) for the refusal message.  Linux's NFS client
maps ``flock`` onto NFS byte-range locks, so the lock also holds between hosts.

The side file is removed when the lock is released; a writer that takes a lock file
another one removed meanwhile notices (its inode is gone) and takes the new one.

The lock belongs to the process: the file writers of one process (a scan's file
closing while the next scan of the same file opens it, two sessions of one process)
share it, as HDF5 shares an open file within a process.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time

from ..errors import NexusWriterError


class FileLockedError(NexusWriterError, BlockingIOError):
    """Another writer process is writing the dataset file."""


class LockHeld(Exception):
    """:func:`claim_lock_file` found the lock taken; ``holder``: what its holder wrote."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def claim_lock_file(path: str | os.PathLike[str], identity: str) -> int:
    """An exclusive ``flock`` on ``path`` (created if needed), taken without waiting,
    with ``identity`` written in it for whoever finds it taken; returns the open
    descriptor (closing it releases the lock).  Raises :class:`LockHeld`.

    Holders remove the file when they release it: a file removed between our open and
    our lock (its inode gone) is opened again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(holder) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, identity.encode())
    return fd


def lock_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.writer-lock")


#: This process's locks: side-file path -> [fd, holders].
_held: dict[str, list[int]] = {}
_held_lock = threading.Lock()


class WriterFileLock:
    """The exclusive right of this process to write ``path``."""

    def __init__(self, path: str):
        self.path = path
        self.lock_path = lock_path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`FileLockedError` naming its holder."""
        if self._fd is not None:
            return
        with _held_lock:
            held = _held.get(self.lock_path)
            if held is not None:
                held[1] += 1
                self._fd = held[0]
                return
            self._fd = self._take()
            _held[self.lock_path] = [self._fd, 1]

    def _take(self) -> int:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            return claim_lock_file(self.lock_path, f"host {socket.gethostname()}, pid "
                                                   f"{os.getpid()}, since {since}\n")
        except LockHeld as e:
            raise FileLockedError(
                f"{self.path} is being written by another writer process "
                f"({e.holder or 'unknown'}); two writers on one file would corrupt it: stop "
                "the other writer (only one writer may serve a session) or save to another "
                "file") from None

    def release(self) -> None:
        if self._fd is None:
            return
        self._fd = None
        with _held_lock:
            held = _held[self.lock_path]
            held[1] -= 1
            if held[1] > 0:
                return
            del _held[self.lock_path]
            try:
                os.unlink(self.lock_path)  # while still locked: nobody holds a stale inode
            except OSError:
                pass
            os.close(held[0])

    @property
    def held(self) -> bool:
        return self._fd is not None
