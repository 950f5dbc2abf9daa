"""A finished HDF5 layout described by the producer (BLISS's ``h5maps``), materialised.

The description is blissdata's ``blissdata.h5map`` model (JSON): groups with
attributes and children; datasets with an inline value, an external binary file or
a virtual layout; soft and external links.  A dataset whose value is a *stream*
reference is the data of that stream: its path is given to the scan writer, which
writes the points there as they arrive (:func:`stream_paths`); everything else is
written here by :func:`materialise`.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import h5py
import numpy as np

from .groups import set_attrs


def parse(tree: Any) -> Any:
    """``tree`` validated as a ``blissdata.h5map`` item (a ``Group`` for a file);
    raises ValueError naming what is wrong."""
    from blissdata.h5map import HDF5Item
    from pydantic import ValidationError

    try:
        return HDF5Item.validate_python(tree)
    except ValidationError as e:
        raise ValueError(f"malformed h5map: {e}") from e


def for_file(h5maps: Any, filename: str) -> Any | None:
    """The parsed layout that ``h5maps`` (``{file path: tree}``) gives ``filename``."""
    if not isinstance(h5maps, Mapping):
        return None
    for path, tree in h5maps.items():
        if os.path.normpath(str(path)) == os.path.normpath(filename):
            return parse(tree)
    return None


def _walk(item: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, item
    for name, child in getattr(item, "children", {}).items():
        yield from _walk(child, f"{path.rstrip('/')}/{name}")


def items(root: Any) -> Iterator[tuple[str, Any]]:
    """``(absolute path, item)`` of every item of the layout, parents first."""
    return _walk(root, "/")


def stream_of(item: Any) -> str | None:
    """The stream whose data a dataset item is (None for any other item)."""
    from blissdata.h5map import Dataset, Stream

    if isinstance(item, Dataset) and isinstance(item.value, Stream):
        return str(item.value.stream)
    return None


def stream_paths(root: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Stream name -> (path relative to the root, attributes) of its dataset."""
    out = {}
    for path, item in items(root):
        name = stream_of(item)
        if name is not None:
            out[name] = (path.lstrip("/"), decode_attrs(item.attributes))
    return out


def decode(value: Any) -> Any:
    """A data item (inline, base64, compound) as what h5py writes."""
    out = value.decode()
    if isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype.kind == "O":
        out = out[()]
    return out.decode() if isinstance(out, bytes) else out


def decode_attrs(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: decode(v) for name, v in attributes.items()}


def _selection(space: Any) -> tuple[slice, ...]:
    """An h5map hyperslab (start, stride, count, block) as slices (block 1)."""
    stride = space.stride or [1] * len(space.start)
    if space.block and any(b != 1 for b in space.block):
        raise ValueError("virtual source selections with blocks are not supported")
    return tuple(slice(s, s + st * (c - 1) + 1, st)
                 for s, st, c in zip(space.start, stride, space.count))


def _dataset(group: h5py.Group, name: str, item: Any, exists: bool) -> None:
    from blissdata.h5map import Dataset, ExternalBinaryDataset, VirtualDataset

    if exists:
        del group[name]
    if isinstance(item, Dataset):
        value = decode(item.value)
        if isinstance(value, (str, bytes)) or (isinstance(value, np.ndarray)
                                              and value.dtype.kind in "OUS"):
            dset = group.create_dataset(name, data=value, dtype=h5py.string_dtype())
        else:
            dset = group.create_dataset(name, data=value)
    elif isinstance(item, ExternalBinaryDataset):
        external = [(f.name, f.offset, f.size if f.size is not None else h5py.h5f.UNLIMITED)
                    for f in item.files]
        dset = group.create_dataset(name, shape=tuple(item.shape), dtype=np.dtype(item.dtype),
                                    external=external)
    elif isinstance(item, VirtualDataset):
        layout = h5py.VirtualLayout(shape=tuple(item.shape), dtype=np.dtype(item.dtype))
        for source in item.virtual_sources:
            count = tuple(source.src_space.count)
            vsource = h5py.VirtualSource(source.src_file, source.src_dataset, shape=count)
            layout[_selection(source.vspace)] = vsource[_selection(source.src_space)]
        dset = group.create_virtual_dataset(name, layout)
    else:  # pragma: no cover - the model has no other dataset kind
        raise TypeError(f"{group.name}/{name}: unknown dataset item {type(item).__name__}")
    set_attrs(dset, decode_attrs(item.attributes))


def materialise(f: h5py.File, root: Any, replace: bool = True,
                previous: Any | None = None) -> None:
    """Write every item of the layout ``root`` into ``f`` except the stream datasets
    (the scan writer writes those).  Static datasets and links are (re)written when
    ``replace``, else only created where absent; attributes are always set.

    ``previous``: the layout materialised before (at PREPARED); its datasets and
    links that the final layout keeps unchanged, and that are in the file, are not
    written again (group attributes always are: the writer may have set others).
    """
    _fill(f, root, previous, replace)


def _fill(group: h5py.Group, item: Any, old: Any | None, replace: bool) -> None:
    """``item`` (a layout group) into ``group``, children depth first; ``old`` is
    what was materialised there before, if anything.  The walk holds each parent
    open: no item is looked up by its path from the root."""
    from blissdata.h5map import ExternalLink, Group, SoftLink

    set_attrs(group, decode_attrs(item.attributes))
    before = old.children if isinstance(old, Group) else {}
    for name, child in item.children.items():
        if stream_of(child) is not None:
            continue
        previous = before.get(name)
        if isinstance(child, Group):
            sub = group.get(name)
            if sub is None:
                sub = group.create_group(name)
            elif not isinstance(sub, h5py.Group):
                raise TypeError(f"{group.name.rstrip('/')}/{name} exists and is not a group")
            _fill(sub, child, previous, replace)
            continue
        exists = group.get(name, getlink=True) is not None
        if exists and (not replace or previous == child):
            continue  # kept, or a dataset or link unchanged since it was written
        if isinstance(child, SoftLink):
            if exists:
                del group[name]
            group[name] = h5py.SoftLink(child.target_path)
        elif isinstance(child, ExternalLink):
            if exists:
                del group[name]
            group[name] = h5py.ExternalLink(child.target_file, child.target_path)
        else:
            _dataset(group, name, child, exists)
