"""Shared checks of the writer tests: wait for scans, and compare a written file with
what the scan published in Redis (bit-exact), its layout, links, plots and status."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Mapping

import h5py
import hdf5plugin  # noqa: F401 - readers of compressed data need the filters registered
import numpy as np

from nexus_writer.data import DataStore
from nexus_writer.writer import ScanState, ScanWriter, SessionWriter
from tests.layout import Place, expected_places
from tests.waiting import wait_for


def scan_keys(scans: Iterable[Any]) -> list[str]:
    """Redis keys of simulated scans (``Scan`` objects) or of raw publishers."""
    return [s.key for s in scans]


def wait_written(writer: SessionWriter, scans: Iterable[Any], timeout: float = 60.0
                 ) -> list[ScanWriter]:
    """Wait until the writer has taken every scan of ``scans`` and finished them all.

    ``wait_idle`` alone could return before the listener has even seen a scan that
    was published in a few milliseconds (``time_scale=0``).
    """
    keys = scan_keys(scans)
    deadline = time.monotonic() + timeout

    def taken() -> dict[str, ScanWriter] | None:
        seen = {w.source.key: w for w in writer.scans()}
        return seen if all(k in seen for k in keys) else None

    seen = wait_for(taken, timeout, f"the writer taking scans {keys}",
                    lambda: f"taken: {[w.source.key for w in writer.scans()]}")
    assert writer.wait_idle(max(1.0, deadline - time.monotonic())), \
        f"scans still being written after {timeout} s: {[w.label for w in writer.active()]}"
    return [seen[k] for k in keys]


def decode(value: Any) -> Any:
    """h5py strings (bytes, arrays of bytes) as str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [decode(v) for v in value.tolist()]
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def nx_class(obj: h5py.HLObject) -> str | None:
    return decode(obj.attrs.get("NX_class"))


def read_frame(ref: Any) -> np.ndarray:
    """The pixels of one camera frame, read from the camera's own file."""
    if ref.file_format == "hdf5":
        with h5py.File(ref.file_path, "r", locking=False) as f:
            return f[ref.data_path][ref.frame_index]
    import fabio

    with fabio.open(ref.file_path) as img:
        if img.nframes > 1:
            return img.getframe(ref.frame_index).data
        assert ref.frame_index == 0
        return img.data


def native(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def assert_same_bytes(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """dtype, shape and every bit equal (NaN included); byte order may differ."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert native(actual.dtype) == native(expected.dtype), \
        f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    actual, expected = actual.astype(native(actual.dtype)), expected.astype(native(actual.dtype))
    assert np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes(), \
        f"{what}: values differ"


def _flat_points(dset: h5py.Dataset, grid: tuple[int, int] | None) -> np.ndarray:
    data = dset[()]
    if grid is not None:
        assert data.shape[:2] == grid, f"{dset.name}: grid {data.shape[:2]}, expected {grid}"
        data = data.reshape((-1,) + data.shape[2:])
    return data


def assert_channel(dset: h5py.Dataset, node: Any, grid: tuple[int, int] | None = None) -> None:
    """A channel dataset equals the node's published points, bit-exact.

    Ragged (SAMPLES mode) points: the valid part is exact, the rest is the fill
    value (NaN for floats, 0 for integers) and the width is the longest point.
    """
    published = node.get()
    what = f"{dset.name} ({node.name})"
    assert dset.dtype == node.dtype, f"{what}: dtype {dset.dtype} != declared {node.dtype}"
    data = _flat_points(dset, grid)
    if not node.definition.variable:
        published = np.asarray(published)
        if grid is None:
            assert_same_bytes(data, published, what)
        else:
            assert_same_bytes(data[:len(published)], published, what)
        return
    assert len(published) > 0
    assert data.shape[0] >= len(published)
    if grid is None:
        assert data.shape[0] == len(published), f"{what}: {data.shape[0]} points"
    widths = np.max([p.shape for p in published], axis=0)
    assert data.shape[1:] == tuple(widths), f"{what}: padded to {data.shape[1:]}, not {widths}"
    for i, point in enumerate(published):
        valid = tuple(slice(0, s) for s in point.shape)
        assert_same_bytes(data[i][valid], point, f"{what} point {i}")
        pad = data[i].copy()
        pad[valid] = 0 if pad.dtype.kind != "f" else np.nan
        if pad.dtype.kind == "f":
            assert np.isnan(pad).all(), f"{what} point {i}: padding is not NaN"
        else:
            assert (pad == 0).all(), f"{what} point {i}: padding is not 0"


def camera_mode_of(dset: h5py.Dataset) -> str:
    if dset.is_virtual:
        return "vds"
    if dset.external:
        return "external"
    if dset.dtype.kind == "O":
        return "strings"
    return "copy"


def assert_camera(dset: h5py.Dataset, node: Any, mode: str | None = None) -> None:
    """A camera dataset shows the frames the camera saved (pixels or references)."""
    refs = node.get_references()
    what = f"{dset.name} ({node.name})"
    assert refs, f"{what}: no frame published"
    found = camera_mode_of(dset)
    if mode is not None:
        assert found == mode, f"{what}: written as {found}, expected {mode}"
    base = os.path.dirname(os.path.abspath(dset.file.filename))
    if found == "strings":
        values = decode(dset[()])
        assert len(values) == len(refs)
        for value, ref in zip(values, refs, strict=True):
            path, _, index = value.rpartition("::")
            assert not os.path.isabs(path), f"{what}: {value} is not relative"
            assert os.path.normpath(os.path.join(base, path)) == os.path.normpath(ref.file_path)
            assert int(index) == ref.frame_index
        return
    assert dset.shape == (len(refs),) + tuple(node.shape), f"{what}: shape {dset.shape}"
    assert dset.dtype == node.dtype
    if found == "vds":
        sources = dset.virtual_sources()
        assert sources
        for source in sources:
            assert not os.path.isabs(source.file_name), \
                f"{what}: VDS source {source.file_name} is absolute"
            assert os.path.exists(os.path.join(base, source.file_name))
    for i, ref in enumerate(refs):
        frame = dset[i]
        assert_same_bytes(frame, read_frame(ref), f"{what} frame {i}")
        assert int(frame[0, 0]) == i % 65536, f"{what}: frame {i} is frame {frame[0, 0]}"


def assert_links_resolve(group: h5py.Group) -> None:
    """Every soft link of ``group`` leads to a dataset."""
    for name in group:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            target = group.get(name)
            assert isinstance(target, h5py.Dataset), \
                f"{group.name}/{name} -> {link.path} does not resolve"


def assert_plots(entry: h5py.Group) -> None:
    """Every NXdata of the entry is valid for silx; the entry's @default is one of them."""
    from silx.io.nxdata import is_valid_nxdata

    plots = [g for g in entry.values() if isinstance(g, h5py.Group) and nx_class(g) == "NXdata"]
    for plot in plots:
        assert_links_resolve(plot)
        assert is_valid_nxdata(plot), f"{plot.name} is not a valid NXdata"
        signal = plot[decode(plot.attrs["signal"])]
        assert "interpretation" not in signal.attrs or decode(signal.attrs["interpretation"]) in (
            "spectrum", "image")
    if plots:
        default = decode(entry.attrs["default"])
        assert nx_class(entry[default]) == "NXdata"


def check_scan(store: DataStore, sw: ScanWriter, *, keepshape: bool = False,
               camera: str | None = None, state: ScanState = ScanState.SUCCEEDED,
               places: Mapping[str, Place] | None = None) -> None:
    """The whole scan in the file: status, every channel bit-exact, layout, links, plots.

    Each channel is looked for where the documented layout puts it
    (:func:`tests.layout.expected_places`, or ``places`` given by the test), never
    where the writer's plan says.
    """
    assert sw.state == state, f"{sw.label}: {sw.state.name} ({sw.saving.reason})"
    scan = store.get_scan_node(sw.source.key)
    nodes = scan.nodes()
    info = scan.info
    assert sw.filename == info["filename"]
    if places is None:
        places = expected_places(info, nodes)
    grid = None
    if keepshape and info.get("data_dim") == 2:
        grid = (int(info["npoints2"]), int(info["npoints1"]))
    with h5py.File(sw.filename, "r", locking=False) as f:
        assert nx_class(f) == "NXroot"
        for attr in ("default", "file_name", "file_time", "HDF5_Version", "h5py_version",
                     "creator", "creator_version"):
            assert attr in f.attrs, f"root attribute {attr} missing"
        entries = sw.entries
        chain = info.get("acquisition_chain") or {"": None}
        assert entries == [f"{info['scan_nb']}.{k}" for k in range(1, len(chain) + 1)]
        for name in entries:
            entry = f[name]
            assert nx_class(entry) == "NXentry"
            assert decode(entry["title"][()]) == info["title"]
            assert "start_time" in entry and "end_time" in entry
            assert nx_class(entry["instrument"]) == "NXinstrument"
            assert nx_class(entry["measurement"]) == "NXcollection"
            writer = entry["writer"]
            assert decode(writer["status"][()]) == state.name
            assert decode(writer["end_reason"][()]) == scan.end_reason
            channels = decode(writer["channels"][()])
            written = writer["points_written"][()].tolist()
            published = writer["points_published"][()].tolist()
            counts = {n.name: n.count() for n in nodes if n.type != "node_ref_channel"}
            if counts:
                assert channels == sorted(counts)
                assert published == [counts[c] for c in channels]
                if state == ScanState.SUCCEEDED:
                    assert written == published
            assert_links_resolve(entry["measurement"])
            assert_plots(entry)
            for sub in entry["instrument"].values():
                if isinstance(sub, h5py.Group):
                    assert nx_class(sub) in ("NXpositioner", "NXdetector", "NXcollection",
                                             "NXsource", "NXinstrument"), sub.name
        measured = set()
        for node in nodes:
            if node.type == "node_ref_channel":
                entry = f[entries[0]]
                for child in node.get():
                    link = entry["subscans"].get(f"scan_{child.number}", getlink=True)
                    assert isinstance(link, h5py.SoftLink) and link.path == f"/{child.number}.1"
                    assert nx_class(entry["subscans"][f"scan_{child.number}"]) == "NXentry"
                continue
            place = places[node.name]
            assert place.path in f, f"{node.name}: no dataset at {place.path}"
            dset = f[place.path]
            meas = f[place.entry]["measurement"]
            link = meas.get(place.measurement, getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == place.path, \
                f"{node.name}: measurement/{place.measurement} is not a link to {place.path}"
            measured.add((place.entry, place.measurement))
            group = f[place.group_path]
            if node.type == "lima":
                expected = "NXcollection" if camera_mode_of(dset) == "strings" else "NXdetector"
                assert nx_class(group) == expected, f"{group.name}: {nx_class(group)}"
                assert_camera(dset, node, camera)
                continue
            assert nx_class(group) == place.nx_class, \
                f"{group.name}: {nx_class(group)}, expected {place.nx_class}"
            assert "units" in dset.attrs
            assert_channel(dset, node, grid)
        for name in entries:
            # nothing in measurement that is not a channel of this scan
            assert {(name, m) for m in f[name]["measurement"]} <= measured


def manual_scan_info(session: Any, scan_nb: int, filename: str, channels: dict[str, dict],
                     npoints: int = 0, title: str = "manual scan") -> dict[str, Any]:
    """A minimal BLISS-like scan_info for scans published by hand (one timer top master).

    ``channels``: full name -> ``{"device": ..., "dim": ..., "unit": ...}``; the first
    one is the top master's scalar.
    """
    names = list(channels)
    return {
        "scan_nb": scan_nb, "name": "manual", "type": "loopscan", "title": title,
        "session_name": session, "npoints": npoints, "data_dim": 1, "save": True,
        "data_writer": "nexus", "filename": filename, "count_time": 0.1,
        "acquisition_chain": {"timer": {"master": {"scalars": names[:1], "spectra": [],
                                                   "images": []},
                                        "scalars": names[1:], "spectra": [], "images": []}},
        "channels": {n: dict(c, display_name=n.split(":")[-1], top_master="timer")
                     for n, c in channels.items()},
        "devices": {c["device"]: {"type": "timer" if i == 0 else "counter", "channels": [n]}
                    for i, (n, c) in enumerate(channels.items())},
        "start_time": "2024-01-01T00:00:00+01:00",
    }


#: The channels of :func:`publish_by_hand`: a timer and a counter.
HAND_CHANNELS = {"timer:elapsed_time": {"device": "timer", "unit": "s"},
                 "ctrl:diode": {"device": "ctrl", "unit": "counts"}}


def publish_by_hand(store: Any, filename: str, points: int, npoints: int = 0
                    ) -> tuple[Any, list[Any]]:
    """Scan 1 of ``test_session`` published with the data API, ``points`` points of
    :data:`HAND_CHANNELS` sent and the scan left running (``npoints``: its declared
    length, 0 for unknown); (scan publisher, channel publishers)."""
    pub = store.create_scan("test_session", manual_scan_info("test_session", 1, filename,
                                                             HAND_CHANNELS, npoints=npoints))
    pub.start()
    chans = [pub.create_channel(name, "float64", (), c["unit"], device=c["device"],
                                top_master="timer") for name, c in HAND_CHANNELS.items()]
    for i in range(points):
        for c in chans:
            c.send(float(i))
    return pub, chans
