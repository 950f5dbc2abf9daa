"""The simulated camera ``lima_simulator``: writes real image files, publishes references.

Like a Lima camera server, the camera saves its frames itself (HDF5 through h5py,
or EDF through fabio), ``saving_frame_per_file`` frames per file, in the scan's
``images_path``; only *references* go to Redis, and only once the file holding
the frames is complete on disk.  A file is written under a temporary name and
renamed, so a reader never opens a half-written camera file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .devices import ChannelSpec

#: Where Lima's HDF5 saving puts the frames; the writer reads this from the node info.
HDF5_DATA_PATH = "/entry_0000/measurement/data"
FORMATS = {"HDF5": ("hdf5", ".h5"), "EDF": ("edf", ".edf")}


class SimCamera:
    """A 2D detector producing ``uint16`` frames of ``image_shape`` (rows, columns).

    ``saving_format`` is "HDF5" or "EDF"; ``saving_frame_per_file`` >= 1.  Both may
    be changed between scans (a running scan keeps the values it started with).
    """

    kind = "lima"

    def __init__(self, name: str = "lima_simulator", image_shape: tuple[int, int] = (64, 64),
                 saving_format: str = "HDF5", saving_frame_per_file: int = 1):
        self.name = name
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.saving_format = saving_format
        self.saving_frame_per_file = saving_frame_per_file

    @property
    def saving_format(self) -> str:
        return self._saving_format

    @saving_format.setter
    def saving_format(self, value: str) -> None:
        value = value.upper()
        if value not in FORMATS:
            raise ValueError(f"camera {self.name!r}: saving_format must be one of "
                             f"{sorted(FORMATS)}, not {value!r}")
        self._saving_format = value

    @property
    def saving_frame_per_file(self) -> int:
        return self._frames_per_file

    @saving_frame_per_file.setter
    def saving_frame_per_file(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"camera {self.name!r}: saving_frame_per_file must be >= 1, "
                             f"not {value}")
        self._frames_per_file = int(value)

    @property
    def fullname(self) -> str:
        return f"{self.name}:image"

    def channels(self) -> list[ChannelSpec]:
        return [ChannelSpec(self.fullname, "image", "uint16", self.image_shape)]

    def file_template(self, images_path: str | os.PathLike) -> str:
        """``str.format`` template of this camera's files in a scan directory."""
        ext = FORMATS[self.saving_format][1]
        return str(Path(images_path) / f"{self.name}_{{file_index:04d}}{ext}")

    def make_frame(self, seed: int, index: int) -> np.ndarray:
        """Frame ``index`` of the scan with RNG ``seed``: a spot moving with the index on
        Poisson noise.  Pixel (0, 0) holds the frame index so a reader can check
        that a reference points to the right frame."""
        rows, cols = self.image_shape
        rng = np.random.default_rng([int(seed), int(index), 0x11A])
        y, x = np.mgrid[0:rows, 0:cols]
        cy = rows / 2 + rows / 4 * np.sin(index / 5)
        cx = cols / 2 + cols / 4 * np.cos(index / 5)
        spot = 1000 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (min(rows, cols) / 10) ** 2))
        frame = rng.poisson(spot + 10).astype(np.uint16)
        frame[0, 0] = index % 65536
        return frame

    def metadata(self) -> dict[str, Any]:
        return {"saving_format": self.saving_format,
                "saving_frame_per_file": self.saving_frame_per_file,
                "image_shape": list(self.image_shape), "dtype": "uint16",
                "data_path": HDF5_DATA_PATH if self.saving_format == "HDF5" else ""}

    def acquisition(self, images_path: str | os.PathLike, seed: int) -> "CameraAcquisition":
        """The camera's part of one scan (one top master)."""
        return CameraAcquisition(self, images_path, seed)

    def __repr__(self) -> str:
        return (f"SimCamera({self.name!r}, {self.saving_format}, "
                f"{self.saving_frame_per_file} frame(s)/file)")


class CameraAcquisition:
    """Saves the frames of one scan and announces them.

    Frames are kept until a file is full (or the scan ends), then the file is
    written and ``last_index_saved`` sent: a reference is never published before
    its frame is on disk.
    """

    def __init__(self, camera: SimCamera, images_path: str | os.PathLike, seed: int):
        self.camera = camera
        self.images_path = Path(images_path)
        self.seed = int(seed)
        self.file_format, _ = FORMATS[camera.saving_format]
        self.frames_per_file = camera.saving_frame_per_file
        self.template = camera.file_template(images_path)
        self.data_path = HDF5_DATA_PATH if self.file_format == "hdf5" else ""
        self._pending: list[np.ndarray] = []
        self._saved = 0  # frames on disk
        self._lima: Any = None
        self.files: list[str] = []

    def channels(self) -> list[ChannelSpec]:
        return self.camera.channels()

    def prepare(self, scan: Any, **info: Any) -> None:
        """Create the lima node in ``scan`` (a ``ScanPublisher``)."""
        spec = self.camera.channels()[0]
        self._lima = scan.create_lima_channel(
            spec.name, spec.dtype, spec.shape, file_template=self.template,
            data_path=self.data_path, file_format=self.file_format,
            frames_per_file=self.frames_per_file, **info)

    def read(self, index: int, ctx: Any = None) -> np.ndarray:
        """Acquire the next frame (kept in memory until its file is written)."""
        return self.camera.make_frame(self.seed, self._saved + len(self._pending))

    def send(self, frame: np.ndarray) -> None:
        """Queue a frame for saving; write the file (then announce it) when it is full."""
        self._pending.append(frame)
        if len(self._pending) >= self.frames_per_file:
            self._write_file()

    def finish(self) -> None:
        """Write the last, possibly partial, file."""
        if self._pending:
            self._write_file()

    def _write_file(self) -> None:
        frames = np.stack(self._pending)
        file_index = self._saved // self.frames_per_file
        path = Path(self.template.format(file_index=file_index))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        if self.file_format == "hdf5":
            _write_hdf5(tmp, frames, self.camera)
        else:
            _write_edf(tmp, frames)
        os.replace(tmp, path)
        self.files.append(str(path))
        self._saved += len(frames)
        self._pending.clear()
        if self._lima is not None:
            self._lima.send(last_index_saved=self._saved - 1)


def _write_hdf5(path: Path, frames: np.ndarray, camera: SimCamera) -> None:
    """A Lima-like HDF5 file: ``/entry_0000/measurement/data`` (frames, rows, columns)."""
    import h5py

    with h5py.File(path, "w") as f:
        entry = f.create_group("entry_0000")
        entry.attrs["NX_class"] = "NXentry"
        meas = entry.create_group("measurement")
        meas.attrs["NX_class"] = "NXcollection"
        dset = meas.create_dataset("data", data=frames, chunks=(1,) + frames.shape[1:])
        dset.attrs["interpretation"] = "image"
        inst = entry.create_group("instrument")
        inst.attrs["NX_class"] = "NXinstrument"
        det = inst.create_group(camera.name)
        det.attrs["NX_class"] = "NXdetector"
        det["data"] = h5py.SoftLink(HDF5_DATA_PATH)


def _write_edf(path: Path, frames: np.ndarray) -> None:
    """A multi-frame EDF file (fabio)."""
    from fabio.edfimage import EdfImage

    img = EdfImage(data=frames[0])
    for frame in frames[1:]:
        img.append_frame(data=frame)
    img.write(str(path))
