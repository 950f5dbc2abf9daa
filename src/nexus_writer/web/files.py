"""Which files the page may read, and how it reads them without meeting a half-flushed
state.

Only files under the configured data roots are served: a requested path is resolved
(``..``, symlinks) before the check, so neither ``../`` nor a symlink leads out.

A reader in another process than the writer sees the file as last flushed, and may
meet it in the middle of a flush (HDF5 writes the metadata of a flush in several
steps): a few percent of such reads fail or see inconsistent shapes.  Inside the
writer process, reads go through the writer's own file thread (see
:meth:`nexus_writer.writer.filewriter.FileWriterPool.read`), which sees every
operation whole.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Protocol

import h5py


class NotServedError(PermissionError):
    """The path is not under a data root the page serves (HTTP 403)."""


class DataRoots:
    """The directories whose files may be served.

    ``extra``: a callable giving more allowed directories at each check (for a
    session writer started without roots: the directories of the files it writes).
    """

    def __init__(self, roots: Iterable[str] = (),
                 extra: Callable[[], Iterable[str]] | None = None):
        self.roots = [os.path.realpath(r) for r in roots]
        self.extra = extra

    def all(self) -> list[str]:
        roots = list(self.roots)
        if self.extra is not None:
            roots += [os.path.realpath(r) for r in self.extra() if r]
        return roots

    def resolve(self, path: str) -> str:
        """The real path of ``path`` if it lies under a root; NotServedError otherwise."""
        if not path or "\0" in path:
            raise NotServedError("no file given")
        real = os.path.realpath(path)
        for root in self.all():
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return real
        raise NotServedError(f"{path} is not under a data root this server serves")


class FileReader(Protocol):
    """Runs ``fn(file)`` on a consistent view of the HDF5 file at ``path``."""

    def read(self, path: str, fn: Callable[[h5py.File], Any]) -> Any: ...


class DirectReader:
    """Reads files written by another process (the service's writers): the file is
    opened read-only for each request; a read that meets a flush in progress (an
    error while opening or reading) is retried, up to ``attempts`` times within
    ``deadline`` s, so that a half-flushed state is reported as an error, never
    shown."""

    def __init__(self, attempts: int = 20, deadline: float = 2.0):
        self.attempts = attempts
        self.deadline = deadline

    def read(self, path: str, fn: Callable[[h5py.File], Any]) -> Any:
        end = time.monotonic() + self.deadline
        for attempt in range(self.attempts):
            try:
                with h5py.File(path, "r", locking=False) as f:
                    return fn(f)
            except (OSError, RuntimeError):
                if attempt + 1 >= self.attempts or time.monotonic() >= end:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")


class PoolReader:
    """Reads through a session writer's file pool: inside the writer process, in the
    thread that writes the file (a consistent view, never half-flushed)."""

    def __init__(self, pool: Any, timeout: float = 30.0):
        self.pool = pool
        self.timeout = timeout

    def read(self, path: str, fn: Callable[[h5py.File], Any]) -> Any:
        return self.pool.read(path, fn, self.timeout)
