"""NXdata plots: what silx and h5web open when a scientist double-clicks the file.

Signals and axes are soft links to the instrument datasets, so plots show data
live as it grows.  Mesh scans saved flat get a grid view through a virtual
dataset that reshapes the flat data (no copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import h5py
import numpy as np

from .datasets import Grid, fill_value
from .groups import require_group, set_attrs, soft_link


@dataclass
class PlotSpec:
    """Describe a plot: signal paths (first is the signal), axis paths per dimension."""

    name: str
    signals: list[tuple[str, str]]  # (name in NXdata, absolute target path)
    axes: list[tuple[str, str]] = field(default_factory=list)
    interpretation: str | None = None
    grid: Grid | None = None  # reshape flat signals to this grid


def write_plot(entry: h5py.Group, spec: PlotSpec) -> h5py.Group:
    """(Re)write the NXdata ``entry[spec.name]`` from ``spec``."""
    if spec.name in entry:
        del entry[spec.name]
    nxdata = require_group(entry, spec.name, "NXdata")
    names = []
    ndim = 1
    for name, target in spec.signals:
        if spec.grid is None:
            soft_link(nxdata, name, target)
            ndim = entry.file[target].ndim
        else:
            _grid_view(nxdata, name, entry.file[target], spec.grid)
            ndim = 2 + entry.file[target].ndim - 1
        names.append(name)
        if spec.interpretation:
            # the attribute sits on the target (a link has none)
            set_attrs(entry.file[target], {"interpretation": spec.interpretation})
    set_attrs(nxdata, {"signal": names[0]})
    if len(names) > 1:
        nxdata.attrs["auxiliary_signals"] = names[1:]
    axes = ["."] * ndim
    for dim, (name, target) in enumerate(spec.axes[:ndim]):
        if spec.grid is None and target in entry.file:
            soft_link(nxdata, name, target)
        elif isinstance(target, np.ndarray):  # pragma: no cover - defensive
            nxdata[name] = target
        else:
            continue
        axes[dim] = name
        nxdata.attrs[f"{name}_indices"] = dim
    nxdata.attrs["axes"] = axes
    return nxdata


def fit_plot(nxdata: h5py.Group) -> None:
    """Keep in a finished plot only what fits its signal's shape: auxiliary signals
    of another shape and axes of another length (channels of an aborted scan that
    stopped one point apart) would make the whole NXdata invalid for viewers."""
    signal = nxdata.attrs.get("signal")
    if isinstance(signal, bytes):
        signal = signal.decode()
    target = nxdata.get(str(signal)) if signal is not None else None
    if not isinstance(target, h5py.Dataset):
        return
    shape = target.shape
    aux = [a.decode() if isinstance(a, bytes) else str(a)
           for a in nxdata.attrs.get("auxiliary_signals", [])]
    kept = [a for a in aux if isinstance(nxdata.get(a), h5py.Dataset) and nxdata[a].shape == shape]
    if kept != aux:
        if kept:
            nxdata.attrs["auxiliary_signals"] = kept
        else:
            del nxdata.attrs["auxiliary_signals"]
        for name in set(aux) - set(kept):
            del nxdata[name]
    axes = [a.decode() if isinstance(a, bytes) else str(a) for a in nxdata.attrs.get("axes", [])]
    for dim, name in enumerate(axes):
        axis = nxdata.get(name) if name != "." else None
        if isinstance(axis, h5py.Dataset) and (dim >= len(shape) or axis.ndim != 1
                                                or axis.shape[0] != shape[dim]):
            del nxdata[name]
            if f"{name}_indices" in nxdata.attrs:
                del nxdata.attrs[f"{name}_indices"]
            axes[dim] = "."
    if axes:
        nxdata.attrs["axes"] = axes


def set_grid_axes(nxdata: h5py.Group, axes: Sequence[tuple[str, np.ndarray, str]]) -> None:
    """Give a grid plot its coordinates: ``(name, 1D values, units)`` slow axis first."""
    names = list(nxdata.attrs["axes"])
    for dim, (name, values, units) in enumerate(axes):
        if name in nxdata:
            del nxdata[name]
        dset = nxdata.create_dataset(name, data=np.asarray(values))
        dset.attrs["units"] = units
        names[dim] = name
        nxdata.attrs[f"{name}_indices"] = dim
    nxdata.attrs["axes"] = names


def _grid_view(nxdata: h5py.Group, name: str, source: h5py.Dataset, grid: Grid) -> None:
    """A VDS of shape ``(slow, fast, *point)`` over the flat ``source`` of the same file."""
    point = tuple(source.shape[1:])
    layout = h5py.VirtualLayout(shape=(grid.slow, grid.fast) + point, dtype=source.dtype)
    vsource = h5py.VirtualSource(".", source.name, shape=(grid.size,) + point, dtype=source.dtype)
    for row in range(grid.slow):
        layout[row] = vsource[row * grid.fast:(row + 1) * grid.fast]
    dset = nxdata.create_virtual_dataset(name, layout, fillvalue=fill_value(source.dtype))
    dset.attrs["units"] = source.attrs.get("units", "")
