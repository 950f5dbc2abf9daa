"""Datasets that grow as points arrive: flat, ragged (SAMPLES mode) or on a mesh grid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import hdf5plugin
import numpy as np

from .groups import set_attrs

#: Target chunk size, bytes: large enough for throughput, small enough for live reads.
CHUNK_BYTES = 1 << 20
#: Chunk size of scalar channels: each keeps its partial chunk in memory.
SCALAR_CHUNK_BYTES = 64 << 10
#: Chunk size when the number of points is unknown (timescan): a whole chunk is
#: allocated at the first point, so 1 MiB per counter would bloat short scans.
UNKNOWN_LENGTH_CHUNK_BYTES = 64 << 10
COMPRESSIONS = ("bitshuffle", "gzip", "none")


def fill_value(dtype: np.dtype) -> Any:
    """NaN for floats, 0 for the rest: what pads ragged points and unwritten grid cells."""
    return np.nan if np.dtype(dtype).kind == "f" else 0


def compression_args(dtype: np.dtype, point_shape: Sequence[int], compression: str) -> dict:
    """Filter arguments: none for scalar data (small, and read live), lossless for detectors."""
    if not point_shape or compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if compression == "bitshuffle":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    raise ValueError(f"unknown compression {compression!r}, choose one of {COMPRESSIONS}")


def chunk_shape(dtype: np.dtype, point_shape: Sequence[int], npoints_hint: int,
                leading: int = 1) -> tuple[int, ...]:
    """Chunks of about :data:`CHUNK_BYTES`: whole points, several along the scan axis."""
    point = tuple(max(1, d) for d in point_shape)
    nbytes = max(1, math.prod(point) * np.dtype(dtype).itemsize)
    along = max(1, (CHUNK_BYTES if point_shape else SCALAR_CHUNK_BYTES) // nbytes)
    if npoints_hint > 0:
        along = min(along, npoints_hint)
    else:
        along = min(along, max(1, UNKNOWN_LENGTH_CHUNK_BYTES // nbytes))
    if leading > 1:  # grid: chunk rows of the fast axis
        return (1, min(along, leading)) + point
    return (along,) + point


@dataclass
class Grid:
    """Mesh shape ``(npoints2, npoints1)``: slow axis first, as the data is published."""

    slow: int
    fast: int

    @property
    def size(self) -> int:
        return self.slow * self.fast


class ChannelDataset:
    """One channel's data in the file, appended point batch by point batch.

    Fixed-shape points grow along the first axis.  Points with ``-1`` dimensions
    (SAMPLES mode) are padded to the longest point seen, with :func:`fill_value`.
    With a :class:`Grid` (``keepshape``) the dataset is ``(slow, fast, *point)``
    and flat point ``i`` goes to ``(i // fast, i % fast)``.
    """

    def __init__(self, dset: h5py.Dataset, point_shape: Sequence[int], grid: Grid | None = None):
        self.dset = dset
        self.point_shape = tuple(point_shape)
        self.grid = grid
        self.count = int(dset.attrs.get("points_written", 0 if grid else dset.shape[0]))

    @classmethod
    def create(cls, group: h5py.Group, name: str, dtype: Any, point_shape: Sequence[int],
               npoints_hint: int = 0, compression: str = "bitshuffle",
               grid: Grid | None = None, units: str | None = None) -> "ChannelDataset":
        dtype = np.dtype(dtype)
        point_shape = tuple(int(d) for d in point_shape)
        init_point = tuple(0 if d < 0 else d for d in point_shape)
        max_point = tuple(None if d < 0 else d for d in point_shape)
        kwargs = compression_args(dtype, point_shape, compression)
        if grid is not None:
            shape = (grid.slow, grid.fast) + init_point
            maxshape = (grid.slow, grid.fast) + max_point
            chunks = chunk_shape(dtype, point_shape, npoints_hint, leading=grid.fast)
        else:
            shape = (0,) + init_point
            maxshape = (None,) + max_point
            chunks = chunk_shape(dtype, point_shape, npoints_hint)
        if not point_shape:  # many counters: each dataset keeps two chunks cached at most
            kwargs.update(rdcc_nbytes=2 * math.prod(chunks) * dtype.itemsize, rdcc_nslots=101)
        dset = group.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype,
                                    chunks=chunks, fillvalue=fill_value(dtype), **kwargs)
        set_attrs(dset, {"units": units or ""})
        if grid is not None:
            dset.attrs["points_written"] = 0
        return cls(dset, point_shape, grid)

    @property
    def variable(self) -> bool:
        return any(d < 0 for d in self.point_shape)

    def append(self, first_index: int, data: np.ndarray | list[np.ndarray]) -> None:
        """Write points ``first_index ..`` (an array ``(n, *shape)`` or a list for ragged)."""
        n = len(data)
        if n == 0:
            return
        if self.variable:
            data = self._pad(data)
        end = first_index + n
        dset = self.dset
        if self.grid is None:
            if dset.shape[0] < end:
                dset.resize(end, axis=0)
            dset[first_index:end] = data
        else:
            self._write_grid(first_index, data)
            dset.attrs["points_written"] = max(self.count, end)
        self.count = max(self.count, end)

    def _pad(self, points: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Stack ragged points, growing the dataset's variable dimensions if needed."""
        dset = self.dset
        offset = 2 if self.grid else 1
        widths = list(dset.shape[offset:])
        for p in points:
            widths = [max(w, s) for w, s in zip(widths, p.shape)]
        if widths != list(dset.shape[offset:]):
            dset.resize(tuple(dset.shape[:offset]) + tuple(widths))
        out = np.full((len(points),) + tuple(widths), fill_value(dset.dtype), dtype=dset.dtype)
        for i, p in enumerate(points):
            out[(i,) + tuple(slice(0, s) for s in p.shape)] = p
        return out

    def _write_grid(self, first: int, data: np.ndarray | Sequence[np.ndarray]) -> None:
        grid = self.grid
        assert grid is not None, "_write_grid is only called for keepshape datasets"
        fast = grid.fast
        i = 0
        n = min(len(data), grid.size - first)
        while i < n:
            flat = first + i
            row, col = divmod(flat, fast)
            take = min(fast - col, n - i)
            self.dset[row, col:col + take] = data[i:i + take]
            i += take
        if len(data) > n:
            raise ValueError(f"{self.dset.name}: {first + len(data)} points do not fit the "
                             f"{grid.slow}x{grid.fast} grid (keepshape)")


class JsonDataset:
    """Events of a JSON stream: one UTF-8 JSON document per point (variable-length
    strings), appended as they arrive; ``""`` marks a point never received."""

    def __init__(self, dset: h5py.Dataset):
        self.dset = dset
        self.count = int(dset.shape[0])

    @classmethod
    def create(cls, group: h5py.Group, name: str, npoints_hint: int = 0) -> "JsonDataset":
        chunk = max(1, min(npoints_hint or 256, 1024))
        dset = group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(chunk,),
                                    dtype=h5py.string_dtype())
        dset.attrs["content"] = "application/json"
        return cls(dset)

    def append(self, first_index: int, data: Sequence[str]) -> None:
        """Write documents ``first_index ..``."""
        n = len(data)
        if n == 0:
            return
        end = first_index + n
        if self.dset.shape[0] < end:
            self.dset.resize((end,))
        self.dset[first_index:end] = list(data)
        self.count = max(self.count, end)
