"""Scan metadata in an entry: positioner snapshots, metadata categories, comments,
and the ``writer`` status group that readers poll."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
from silx.io.dictdump import dicttonx

from .groups import decode_text, nexus_name, now_iso, require_group, write_field

POSITIONER_SNAPSHOTS = ("positioners_start", "positioners_end", "positioners_dial_start",
                        "positioners_dial_end")
WRITER_STATES = ("STARTING", "RUNNING", "SUCCEEDED", "FAILED")
#: Bytes of the fixed-width ``writer/status`` and ``writer/date`` fields (ISO 8601
#: with microseconds and UTC offset: 32).
STATUS_WIDTH = 16
DATE_WIDTH = 32
#: Names the layout itself uses in an entry's NXinstrument: positioner snapshots and
#: NXinstrument's own ``name`` (the keys of the ``instrument`` metadata category are
#: added per scan, see :func:`instrument_names`).  No channel group takes them.
INSTRUMENT_NAMES = ("positioners", *POSITIONER_SNAPSHOTS, "name")


def instrument_names(category: Any) -> set[str]:
    """The names the layout uses in NXinstrument for a scan whose ``instrument``
    metadata category (scan_info) is ``category``."""
    names = set(INSTRUMENT_NAMES)
    if isinstance(category, Mapping):
        for key in category:
            name = str(key).partition("@")[0]
            if name:
                names.add(nexus_name(name))
    return names


def write_positioners(instrument: h5py.Group, positioners: Mapping[str, Any]) -> None:
    """Snapshot collections (NXcollection, one field per motor with its units).

    ``positioners`` is scan_info's ``positioners`` dict.  ``positioners`` (the
    start values) is written too, as readers of ESRF files expect it.
    """
    units = positioners.get("positioners_units") or {}
    snapshots = dict((k, positioners.get(k)) for k in POSITIONER_SNAPSHOTS)
    snapshots["positioners"] = positioners.get("positioners_start")
    for name, values in snapshots.items():
        if not values:
            continue
        group = require_group(instrument, name, "NXcollection")
        for motor, value in values.items():
            if value is None:
                continue
            write_field(group, nexus_name(motor), value, units=str(units.get(motor) or ""))


def _clean(tree: Mapping[str, Any]) -> dict:
    """scan_info sub-dict ready for silx ``dicttonx``: NeXus names, no None, and every
    group with an ``@NX_class`` (NXcollection unless the dict says otherwise)."""
    out: dict[str, Any] = {"@NX_class": "NXcollection"}
    for key, value in tree.items():
        if value is None:
            continue
        name, at, attr = str(key).partition("@")
        name = (nexus_name(name) if name else "") + at + attr
        if isinstance(value, Mapping):
            out[name] = _clean(value)
        elif isinstance(value, (list, tuple)):
            out[name] = _sequence(value)
        else:
            out[name] = value
    return out


def _sequence(values: Sequence[Any]) -> Any:
    """A list as HDF5 can store it: strings, a numeric array, else its JSON text
    (lists of dicts, mixed or ragged lists would make ``dicttonx`` fail half-way)."""
    if values and all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object)
    try:
        array = np.asarray(values)
    except ValueError:  # ragged
        array = None
    if array is not None and array.dtype.kind in "biuf":
        return array
    return json.dumps(values, default=str)


def write_category(entry: h5py.Group, name: str, tree: Mapping[str, Any]) -> None:
    """A metadata category (``instrument``, ``sample``...) via silx ``dicttonx``.

    A key ``"@NX_class"`` in the dict becomes the group's class (``NXcollection`` when
    none); existing groups are completed, never overwritten.
    """
    tree = _clean(tree)
    if nexus_name(name) not in entry:
        # the class first: a failure below must not leave a group without one
        require_group(entry, nexus_name(name), str(tree["@NX_class"]))
    dicttonx(tree, entry.file, h5path=f"{entry.name}/{nexus_name(name)}",
             update_mode="add", add_nx_class=False)


def write_comments(entry: h5py.Group, comments: Sequence[Any]) -> None:
    """One NXnote per user comment, in the NXcollection ``comments``."""
    if not comments:
        return
    group = require_group(entry, "comments", "NXcollection")
    for i, comment in enumerate(comments, 1):
        if isinstance(comment, Mapping):
            date, message = comment.get("date"), comment.get("message", "")
        else:
            date, message = None, str(comment)
        note = require_group(group, f"comment_{i:02d}", "NXnote")
        write_field(note, "type", "text/plain")
        write_field(note, "data", str(message))
        if date:
            write_field(note, "date", str(date))


def write_writer_status(entry: h5py.Group, status: str, reason: str = "",
                        extra: Mapping[str, Any] | None = None) -> None:
    """The ``writer`` NXcollection: ``status`` (STARTING, RUNNING, SUCCEEDED, FAILED)
    and ``reason``, plus ``extra`` fields (counts, the scan's end reason...).

    ``status`` and ``date`` are fixed-width text, rewritten in place at each change;
    ``reason`` only when it changes."""
    if status not in WRITER_STATES:
        raise ValueError(f"writer status {status!r} is not one of {WRITER_STATES}")
    group = require_group(entry, "writer", "NXcollection")
    write_field(group, "status", status, width=STATUS_WIDTH)
    old = group.get("reason")
    if not isinstance(old, h5py.Dataset) or decode_text(old[()]) != reason:
        write_field(group, "reason", reason)
    write_field(group, "date", now_iso(), width=DATE_WIDTH)
    for key, value in (extra or {}).items():
        write_field(group, nexus_name(key), value)
