"""Files, groups and names: open-or-create helpers that fail loudly on a mismatch."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
from h5py import h5a, h5s, h5t

import nexus_writer

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_TEXT = h5py.string_dtype()  # what h5py makes of a str: variable-length UTF-8
_TEXT_TYPE = h5t.py_create(_TEXT, logical=True)
_SCALAR = h5s.create(h5s.SCALAR)


def nexus_name(text: str) -> str:
    """``text`` made a NeXus name (``^[a-zA-Z_][a-zA-Z0-9_]*$``).

    ``simu1:det0`` -> ``simu1_det0``."""
    name = _INVALID.sub("_", text.strip()) or "_"
    return "_" + name if name[0].isdigit() else name


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is not in ``taken`` (then added)."""
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate


def entry_name(scan_nb: int, index: int) -> str:
    """ESRF entry name of the ``index``-th top master (1-based) of scan ``scan_nb``."""
    return f"{int(scan_nb)}.{int(index)}"


def now_iso() -> str:
    """Local time, ISO 8601 with time zone."""
    return datetime.datetime.now().astimezone().isoformat()


def open_file(path: str | Path, mode: str = "a") -> h5py.File:
    """Open a dataset file for writing without an HDF5 file lock.

    Locking is off so that readers never block the writer (and the writer never
    blocks readers that also open with ``locking=False``).  The writer flushes
    every flush period so that what readers see on disk is consistent.
    """
    # The default (earliest) file format on purpose: with the v110 superblock HDF5 sets
    # a "file open for write" flag that makes the file unreadable, even read-only,
    # while the writer runs and forever after a crash (until h5clear).
    f = h5py.File(path, mode, locking=False)
    if "NX_class" not in f.attrs:
        write_root_attrs(f)
    return f


def write_root_attrs(f: h5py.File) -> None:
    """NXroot attributes of a new file."""
    set_attrs(f, {
        "NX_class": "NXroot",
        "file_name": str(f.filename),
        "file_time": now_iso(),
        "HDF5_Version": h5py.version.hdf5_version,
        "h5py_version": h5py.version.version,
        "creator": "nexus_writer",
        "creator_version": nexus_writer.__version__,
    })


def set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Set (replace) attributes of ``obj``, as ``obj.attrs.update(attrs)`` does; text
    through the low-level API, which costs a third of h5py's general path (a short
    scan sets dozens: NX_class, units, signal...)."""
    for name, value in attrs.items():
        if type(value) is not str:
            obj.attrs[name] = value
            continue
        key = name.encode()
        if h5a.exists(obj.id, key):
            h5a.delete(obj.id, key)
        h5a.create(obj.id, key, _TEXT_TYPE, _SCALAR).write(np.array(value, dtype=_TEXT))


def decode_text(value: Any) -> Any:
    """A value read back from HDF5 as written again (bytes -> str)."""
    return value.decode() if isinstance(value, bytes) else value


def nx_class_of(obj: h5py.HLObject) -> str | None:
    value = obj.attrs.get("NX_class")
    return value.decode() if isinstance(value, bytes) else value


def require_group(parent: h5py.Group, name: str, nx_class: str, **attrs: Any) -> h5py.Group:
    """Open or create ``parent[name]`` with ``NX_class``; raise if it has another class."""
    group = parent.get(name)
    if group is None:
        group = parent.create_group(name)
        set_attrs(group, {"NX_class": nx_class})
    elif not isinstance(group, h5py.Group):
        raise TypeError(f"{parent.name}/{name} exists and is not a group")
    elif nx_class_of(group) != nx_class:
        raise ValueError(f"{group.name} exists with NX_class {nx_class_of(group)!r}, "
                         f"requested {nx_class!r}")
    set_attrs(group, attrs)
    return group


def write_field(group: h5py.Group, name: str, value: Any, units: str | None = None,
                width: int | None = None, **attrs: Any) -> h5py.Dataset:
    """Create or replace a small field (strings, scalars, small arrays).

    ``width``: a text field of that many bytes (UTF-8, null-padded), for a value
    that changes often (a status, a date): written again in place, where a
    variable-length string would be deleted and created again (rewriting one in
    place leaves a dangling heap reference when the writer dies before a flush).
    """
    if width is not None:
        dtype = h5py.string_dtype("utf-8", width)
        data = np.array(str(value).encode()[:width], dtype=dtype)
        existing = group.get(name)
        if (isinstance(existing, h5py.Dataset) and existing.shape == ()
                and existing.dtype == dtype and not attrs and units is None):
            existing[()] = data
            return existing
        value = data
    if name in group:
        del group[name]
    if isinstance(value, str) or (isinstance(value, (list, tuple)) and value
                                  and all(isinstance(v, str) for v in value)):
        dset = group.create_dataset(name, data=value, dtype=h5py.string_dtype())
    else:
        dset = group.create_dataset(name, data=np.asarray(value))
    set_attrs(dset, attrs if units is None else {"units": units, **attrs})
    return dset


def soft_link(group: h5py.Group, name: str, target: str) -> None:
    """``group[name]`` -> ``target`` (an absolute path in the same file), replaced if present."""
    if name in group or group.get(name, getlink=True) is not None:
        del group[name]
    group[name] = h5py.SoftLink(target)


def entry_order(name: str) -> tuple[int, int] | None:
    """``"12.2"`` -> ``(12, -2)``: later scans first, then the first top master; None
    for a name that is not an entry name."""
    number, _, index = name.partition(".")
    try:
        return int(number), -int(index)
    except ValueError:
        return None


def later_entry(candidate: str, current: Any) -> bool:
    """Whether a root ``@default`` on entry ``current`` should move to ``candidate``:
    scans are written in parallel and finish in any order, and a file shows its latest
    scan, not the last one written."""
    if isinstance(current, bytes):
        current = current.decode()
    if not current:
        return True
    old, new = entry_order(str(current)), entry_order(candidate)
    return old is None or new is None or new >= old
