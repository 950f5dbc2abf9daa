"""Camera frames saved by the camera itself: linked, never copied by default.

* HDF5 camera files -> a virtual dataset (VDS) whose sources are the camera files,
  with paths relative to the dataset file (HDF5 resolves them against the
  directory of the file holding the VDS, wherever the reader runs).
* EDF files -> raw external datasets (uncompressed EDF only), or ``relpath::index``
  strings when external datasets are not enabled.
* ``copy`` mode -> the pixels are read and copied into a normal dataset.

The VDS is rebuilt as frames are announced: describe (the references), then build
(one ``create_virtual_dataset`` call), which touches only metadata.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import h5py
import numpy as np

from .datasets import ChannelDataset, fill_value

CAMERA_MODES = ("vds", "external", "strings", "copy")


@dataclass(frozen=True)
class FrameRef:
    """One frame: file, HDF5 data path (empty for EDF), index in that file."""

    file_path: str
    data_path: str
    frame_index: int


def relative_to(path: str, dataset_file: str) -> str:
    """``path`` relative to the directory of ``dataset_file`` (absolute if on another drive)."""
    try:
        return os.path.relpath(path, os.path.dirname(os.path.abspath(dataset_file)))
    except ValueError:
        return path


def _runs(refs: Sequence[FrameRef]) -> list[tuple[FrameRef, int, int]]:
    """Consecutive frames of one file: (first ref, position in refs, count)."""
    runs: list[tuple[FrameRef, int, int]] = []
    for i, ref in enumerate(refs):
        if runs:
            first, start, n = runs[-1]
            if (ref.file_path == first.file_path and ref.data_path == first.data_path
                    and ref.frame_index == first.frame_index + n):
                runs[-1] = (first, start, n + 1)
                continue
        runs.append((ref, i, 1))
    return runs


def write_vds(group: h5py.Group, name: str, refs: Sequence[FrameRef], frame_shape: Sequence[int],
              dtype: np.dtype, frames_per_file: int) -> h5py.Dataset:
    """(Re)create ``group[name]`` as a VDS of all ``refs``, sources relative to the file."""
    frame_shape = tuple(int(d) for d in frame_shape)
    layout = h5py.VirtualLayout(shape=(len(refs),) + frame_shape, dtype=dtype)
    dataset_file = group.file.filename
    for first, start, n in _runs(refs):
        extent = max(frames_per_file, first.frame_index + n)
        source = h5py.VirtualSource(relative_to(first.file_path, dataset_file), first.data_path,
                                    shape=(extent,) + frame_shape, dtype=dtype)
        layout[start:start + n] = source[first.frame_index:first.frame_index + n]
    units = _units(group, name)
    if name in group:
        del group[name]
    dset = group.create_virtual_dataset(name, layout, fillvalue=fill_value(dtype))
    dset.attrs["units"] = units
    dset.attrs["interpretation"] = "image"
    return dset


def _units(group: h5py.Group, name: str) -> str:
    old = group.get(name)
    units = old.attrs.get("units", "") if isinstance(old, h5py.Dataset) else ""
    return units.decode() if isinstance(units, bytes) else str(units)


def edf_frame_offsets(path: str) -> list[tuple[int, int]]:
    """(byte offset, byte size) of each frame's data in an uncompressed EDF file."""
    import fabio

    img = fabio.open(path)
    try:
        out = []
        for i in range(img.nframes):
            frame = img._frames[i] if hasattr(img, "_frames") else img.getframe(i)
            if frame.header.get("Compression", "None") not in ("None", "NONE", "none", ""):
                raise ValueError(f"{path}: frame {i} is compressed; cannot map it as raw external")
            out.append((int(frame.start), int(frame.blobsize if hasattr(frame, "blobsize")
                                                  else frame.size)))
        return out
    finally:
        img.close()


def write_edf_external(group: h5py.Group, name: str, refs: Sequence[FrameRef],
                       frame_shape: Sequence[int], dtype: np.dtype) -> h5py.Dataset:
    """(Re)create ``group[name]`` as a raw external dataset over the EDF frames.

    External file names are stored as absolute paths: HDF5 resolves relative ones
    against the reader's working directory, not the file's.
    """
    offsets: dict[str, list[tuple[int, int]]] = {}
    external = []
    frame_bytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
    for ref in refs:
        if ref.file_path not in offsets:
            offsets[ref.file_path] = edf_frame_offsets(ref.file_path)
        offset, size = offsets[ref.file_path][ref.frame_index]
        if size != frame_bytes:
            raise ValueError(f"{ref.file_path} frame {ref.frame_index}: {size} bytes, expected "
                             f"{frame_bytes} for {tuple(frame_shape)} {np.dtype(dtype)}")
        external.append((os.path.abspath(ref.file_path), offset, size))
    if name in group:
        del group[name]
    dset = group.create_dataset(name, shape=(len(refs),) + tuple(frame_shape), dtype=dtype,
                                external=external or None)
    dset.attrs["units"] = ""
    dset.attrs["interpretation"] = "image"
    return dset


def write_reference_strings(group: h5py.Group, name: str, refs: Sequence[FrameRef]) -> h5py.Dataset:
    """(Re)create ``group[name]`` as ``relpath::index`` strings (one per frame)."""
    dataset_file = group.file.filename
    values = [f"{relative_to(r.file_path, dataset_file)}::{r.frame_index}" for r in refs]
    if name in group:
        del group[name]
    dset = group.create_dataset(name, data=np.array(values, dtype=object),
                                dtype=h5py.string_dtype())
    dset.attrs["units"] = ""
    return dset


def read_frames(refs: Sequence[FrameRef], file_format: str) -> np.ndarray:
    """The pixels of ``refs`` (copy mode)."""
    frames = []
    if file_format == "hdf5":
        for first, _, n in _runs(refs):
            with h5py.File(first.file_path, "r", locking=False) as f:
                frames.append(f[first.data_path][first.frame_index:first.frame_index + n])
        return np.concatenate(frames)
    import fabio

    for ref in refs:
        with fabio.open(ref.file_path) as img:
            frames.append(img.getframe(ref.frame_index).data[np.newaxis]
                          if img.nframes > 1 else img.data[np.newaxis])
    return np.concatenate(frames)


class CameraDataset:
    """A camera's frames in the dataset file, extended as the camera saves them."""

    def __init__(self, group: h5py.Group, name: str, mode: str, frame_shape: Sequence[int],
                 dtype: np.dtype | None, frames_per_file: int, file_format: str,
                 compression: str = "bitshuffle", min_interval: float = 0.0):
        if mode not in CAMERA_MODES:
            raise ValueError(f"camera mode {mode!r} is not one of {CAMERA_MODES}")
        self.group = group
        self.name = name
        self.mode = mode
        self.frame_shape = tuple(frame_shape)
        self.dtype = np.dtype(dtype)  # not published (None): numpy's default, float64
        self.frames_per_file = int(frames_per_file)
        self.file_format = file_format
        self.refs: list[FrameRef] = []
        self._copy: ChannelDataset | None = None
        self.compression = compression
        #: Rebuilds closer together than this are deferred to :meth:`sync`.
        self.min_interval = float(min_interval)
        #: Frames announced that the dataset does not show yet (call :meth:`sync`).
        self.pending = False
        self._built_at = -float("inf")
        self._rebuild()

    @property
    def count(self) -> int:
        return len(self.refs)

    def extend(self, refs: Sequence[FrameRef]) -> None:
        """Add frames (already saved by the camera) and rebuild the dataset."""
        if not refs:
            return
        if self.mode == "copy":
            assert self._copy is not None
            self._copy.append(len(self.refs), read_frames(refs, self.file_format))
            self.refs.extend(refs)
            return
        self.refs.extend(refs)
        if time.monotonic() - self._built_at >= self.min_interval:
            self._rebuild()
        else:
            self.pending = True

    def sync(self) -> None:
        """Rebuild now if frames were announced since the last rebuild."""
        if self.pending:
            self._rebuild()

    def append(self, first_index: int, refs: Sequence[FrameRef]) -> None:
        """Frames ``first_index ..``: the same call as :meth:`ChannelDataset.append`."""
        if first_index < self.count:  # announced again after a resume
            refs = refs[self.count - first_index:]
            first_index = self.count
        if first_index != self.count:
            raise ValueError(f"{self.group.name}/{self.name}: frames {self.count}.."
                             f"{first_index - 1} were never announced")
        self.extend(refs)

    def _rebuild(self) -> None:
        self.pending = False
        self._built_at = time.monotonic()
        if self.mode == "vds":
            write_vds(self.group, self.name, self.refs, self.frame_shape, self.dtype,
                      self.frames_per_file)
        elif self.mode == "external":
            write_edf_external(self.group, self.name, self.refs, self.frame_shape, self.dtype)
        elif self.mode == "strings":
            write_reference_strings(self.group, self.name, self.refs)
        elif self._copy is None:
            if self.name in self.group:
                del self.group[self.name]
            self._copy = ChannelDataset.create(self.group, self.name, self.dtype, self.frame_shape,
                                               compression=self.compression)
            self._copy.dset.attrs["interpretation"] = "image"


