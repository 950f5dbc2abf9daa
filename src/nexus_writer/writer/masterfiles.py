"""Master files of the ESRF data policy: the collection file and the proposal file.

Scientists open a collection (sample) or a proposal at once, not one dataset file
at a time.  As the seed-era ESRF writer (``nexus_writer_service``) did, each entry
of a dataset file gets an HDF5 external link, with a path relative to the master
file, in two master files placed relative to the dataset directory
(see docs/masterfiles.md for the sources):

* ``../{proposal}_{collection}.h5``: the collection file, in the collection folder;
* ``../../{proposal}_{beamline}.h5``: the proposal file, beside the collection
  folders (the session's ``RAW_DATA`` folder in the current ESRF layout).

A link is named ``{dataset file name without .h5}_{entry}``, i.e.
``{collection}_{dataset}_{scan}.{sub}``: entries of different datasets never clash.
Links are added when the entry starts, so a reader of a master file follows scans
live; the root ``@default`` names the latest scan.

Several writers (processes or threads) may add to one master file.  Each addition
takes an exclusive ``flock`` on a side file ``{master}.lock``, opens the master
(without HDF5 file locking, like every file of this writer), adds the link and
closes it: no HDF5 lock that readers would need, and no lost link.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import h5py

from ..errors import NexusWriterError
from ..nexus.groups import later_entry, open_file

logger = logging.getLogger(__name__)

#: scan_info keys that put a scan under the ESRF data policy (master files on).
POLICY_FIELDS = ("proposal", "collection", "dataset")
#: Seconds a writer waits for the lock of a master file before giving up on it (the
#: dataset file's writing waits meanwhile: its data queues, nothing is lost).
LOCK_TIMEOUT = 10.0
#: Seconds an HDF5 refusal to open a master file is retried (a reader of this process).
OPEN_RETRY = 2.0


class MasterFileError(NexusWriterError, OSError):
    """A master file could not be updated (lock not obtained, file unwritable)."""


@dataclass(frozen=True)
class MasterFile:
    """One master file to update: ``kind`` is ``collection`` or ``proposal``."""

    kind: str
    path: str


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip() if value is not None else ""


def master_files(info: Mapping[str, Any], dataset_file: str) -> list[MasterFile]:
    """The master files of a scan saved in ``dataset_file`` (empty when the scan_info
    lacks a data-policy field: no master file outside the data policy).

    The proposal file needs ``beamline`` too; without it only the collection file
    is written.
    """
    fields = {k: _text(info.get(k)) for k in POLICY_FIELDS + ("beamline",)}
    if not all(fields[k] for k in POLICY_FIELDS):
        return []
    dataset_dir = os.path.dirname(os.path.abspath(dataset_file))
    collection_dir = os.path.dirname(dataset_dir)
    out = [MasterFile("collection", os.path.join(
        collection_dir, f"{fields['proposal']}_{fields['collection']}.h5"))]
    if fields["beamline"]:
        out.append(MasterFile("proposal", os.path.join(
            os.path.dirname(collection_dir), f"{fields['proposal']}_{fields['beamline']}.h5")))
    return out


def link_name(dataset_file: str, entry: str) -> str:
    """``{collection}_{dataset}_{entry}``: the dataset file's name without extension,
    then the entry name (the ESRF writer's naming)."""
    stem = os.path.splitext(os.path.basename(dataset_file))[0]
    return f"{stem}_{entry}"


class _FileLock:
    """An exclusive ``flock`` on ``path`` (created if needed), with a deadline.

    ``flock`` locks belong to the open file description: two threads of one
    process exclude each other as two processes do.
    """

    def __init__(self, path: str, timeout: float):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> "_FileLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise MasterFileError(
                        errno.ETIMEDOUT, f"lock {self.path} still held by another writer "
                        f"after {self.timeout:g} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _open_master(master: str, deadline: float) -> h5py.File:
    """Open (or create) the master file, retried until ``deadline``: in this process
    HDF5 refuses to open for writing a file that a reader of this process holds
    open, until that reader closes it."""
    delay = 0.01
    deadline = min(deadline, time.monotonic() + OPEN_RETRY)
    while True:
        try:
            return open_file(master)
        except OSError as e:
            # errno set: the system refused (permissions...), which a retry won't change
            if e.errno is not None or time.monotonic() + delay > deadline:
                raise
            logger.debug("%s not opened (%s); retrying in %.2f s", master, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def add_links(master: str, dataset_file: str, entries: Iterable[str],
              timeout: float = LOCK_TIMEOUT) -> list[str]:
    """Link ``entries`` of ``dataset_file`` into ``master`` (external links, relative
    paths) and point the root ``@default`` at the last one.

    Links already there are kept (a resumed scan adds nothing twice).  Returns the
    link names added.  Raises :class:`MasterFileError` (the lock not obtained in
    ``timeout`` seconds) or ``OSError`` (the file cannot be written).
    """
    entries = list(entries)
    if not entries:
        return []
    directory = os.path.dirname(os.path.abspath(master))
    os.makedirs(directory, exist_ok=True)
    relative = os.path.relpath(os.path.abspath(dataset_file), directory)
    added: list[str] = []
    deadline = time.monotonic() + timeout
    with _FileLock(master + ".lock", timeout):
        with _open_master(master, deadline) as f:
            for entry in entries:
                name = link_name(dataset_file, entry)
                if f.get(name, getlink=True) is None:
                    f[name] = h5py.ExternalLink(relative, f"/{entry}")
                    added.append(name)
            current = f.attrs.get("default")
            if isinstance(current, bytes):
                current = current.decode()
            # link names end with the entry name (collection_dataset_12.1)
            if added and later_entry(added[0].rpartition("_")[2],
                                     str(current or "").rpartition("_")[2]):
                # the latest scan is shown (writers start scans in any order)
                f.attrs["default"] = added[0]
            f.flush()
    return added


def link_scan(masters: Iterable[MasterFile], dataset_file: str, entries: Iterable[str],
              timeout: float | None = None) -> list[str]:
    """:func:`add_links` for each master file (waiting up to ``timeout`` s, default
    :data:`LOCK_TIMEOUT`, for each lock); returns one warning per master file that
    could not be updated (the others are updated all the same)."""
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    entries = list(entries)
    warnings = []
    for master in masters:
        try:
            added = add_links(master.path, dataset_file, entries, timeout)
        except (OSError, ValueError) as e:
            warnings.append(f"{master.kind} master file {master.path} not updated: {e}")
            continue
        if added:
            logger.debug("%s: linked %s", master.path, ", ".join(added))
    return warnings


def entries_of(master: str) -> dict[str, tuple[str, str]]:
    """The external links of a master file: name -> (file, path), as stored."""
    out: dict[str, tuple[str, str]] = {}
    with h5py.File(master, "r", locking=False) as f:
        for name in f:
            link = f.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                out[name] = (link.filename, link.path)
    return out
