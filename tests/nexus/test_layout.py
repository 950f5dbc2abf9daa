"""The HDF5 layout helpers on their own: growing datasets, camera links, plots, groups."""

from __future__ import annotations

import os
from datetime import datetime

import h5py
import numpy as np
import pytest

from nexus_writer.nexus import metadata
from nexus_writer.nexus.camera import CameraDataset, FrameRef, relative_to
from nexus_writer.nexus.datasets import ChannelDataset, Grid, fill_value
from nexus_writer.nexus.groups import (entry_name, nexus_name, open_file, require_group, set_attrs,
                                       soft_link, unique_name, write_field)
from nexus_writer.nexus.plots import PlotSpec, write_plot


@pytest.fixture
def h5(tmp_path):
    f = open_file(tmp_path / "file.h5")
    yield f
    f.close()


def test_root_attributes(h5):
    for attr in ("NX_class", "file_name", "file_time", "HDF5_Version", "h5py_version",
                 "creator", "creator_version"):
        assert attr in h5.attrs
    assert h5.attrs["NX_class"] == "NXroot"


def test_names():
    assert nexus_name("simu1:det0") == "simu1_det0"
    assert nexus_name("1st") == "_1st"
    assert entry_name(12, 2) == "12.2"
    taken: set[str] = set()
    assert [unique_name("a", taken) for _ in range(3)] == ["a", "a_2", "a_3"]


def test_require_group_fails_loudly(h5):
    group = require_group(h5, "g", "NXcollection")
    assert require_group(h5, "g", "NXcollection") == group
    with pytest.raises(ValueError, match="NXcollection.*NXdetector"):
        require_group(h5, "g", "NXdetector")
    write_field(h5, "f", 1.0)
    with pytest.raises(TypeError, match="not a group"):
        require_group(h5, "f", "NXcollection")


def test_fields_and_links(h5):
    write_field(h5, "title", "ascan roby 0 1 10 0.1")
    write_field(h5, "title", "replaced")
    assert h5["title"].asstr()[()] == "replaced"
    write_field(h5, "names", ["a", "bb"])
    assert list(h5["names"].asstr()[()]) == ["a", "bb"]
    write_field(h5, "x", np.arange(3), units="mm")
    assert h5["x"].attrs["units"] == "mm"
    soft_link(h5, "link", "/x")
    soft_link(h5, "link", "/title")
    assert h5.get("link", getlink=True).path == "/title"


@pytest.mark.parametrize("dtype", ["float64", "int32", "uint16"])
def test_flat_dataset_grows(h5, dtype):
    ds = ChannelDataset.create(h5, "d", dtype, (), npoints_hint=0)
    ds.append(0, np.arange(3, dtype=dtype))
    ds.append(3, np.arange(3, 5, dtype=dtype))
    assert h5["d"].dtype == np.dtype(dtype) and h5["d"].maxshape == (None,)
    np.testing.assert_array_equal(h5["d"][()], np.arange(5))
    assert ds.count == 5


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_ragged_points_padded(h5, dtype):
    ds = ChannelDataset.create(h5, "r", dtype, (-1,))
    points = [np.arange(n, dtype=dtype) + 1 for n in (2, 5)]
    ds.append(0, points)
    ds.append(2, [np.arange(7, dtype=dtype) + 1])  # wider later: earlier rows padded too
    data = h5["r"][()]
    assert data.shape == (3, 7) and data.dtype == np.dtype(dtype)
    pad = fill_value(np.dtype(dtype))
    for row, n in zip(data, (2, 5, 7), strict=True):
        np.testing.assert_array_equal(row[:n], np.arange(n) + 1)
        if np.dtype(dtype).kind == "f":
            assert np.isnan(row[n:]).all()
        else:
            assert (row[n:] == pad).all()


def test_grid_dataset(h5):
    grid = Grid(slow=3, fast=4)
    ds = ChannelDataset.create(h5, "g", "float64", (2,), grid=grid)
    values = np.arange(24, dtype=float).reshape(12, 2)
    ds.append(0, values[:5])  # crosses a row
    ds.append(5, values[5:])
    data = h5["g"][()]
    assert data.shape == (3, 4, 2)
    np.testing.assert_array_equal(data.reshape(12, 2), values)
    assert h5["g"].attrs["points_written"] == 12
    with pytest.raises(ValueError, match="do not fit the 3x4 grid"):
        ds.append(12, values[:1])
    # reopened: the count comes back from the file
    assert ChannelDataset(h5["g"], (2,), grid).count == 12


def _camera_file(path, frames):
    with h5py.File(path, "w") as f:
        f["entry_0000/measurement/data"] = frames


def test_camera_vds_relative_and_extended(tmp_path, h5):
    images = tmp_path / "scan0001"
    images.mkdir()
    frames = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    _camera_file(images / "cam_0000.h5", frames[:2])
    _camera_file(images / "cam_0001.h5", frames[2:4])
    _camera_file(images / "cam_0002.h5", frames[4:])
    refs = [FrameRef(str(images / f"cam_{i // 2:04d}.h5"), "/entry_0000/measurement/data", i % 2)
            for i in range(5)]
    group = require_group(h5, "cam", "NXdetector")
    cam = CameraDataset(group, "data", "vds", (4, 3), np.uint16, 2, "hdf5")
    assert group["data"].shape == (0, 4, 3)
    cam.append(0, refs[:3])
    assert group["data"].shape == (3, 4, 3)
    cam.append(3, refs[3:])
    cam.append(2, refs[2:])  # announced again: nothing doubled
    dset = group["data"]
    assert dset.is_virtual and dset.shape == (5, 4, 3)
    np.testing.assert_array_equal(dset[()], frames)
    assert {s.file_name for s in dset.virtual_sources()} == {
        os.path.join("scan0001", f"cam_{i:04d}.h5") for i in range(3)}
    with pytest.raises(ValueError, match="never announced"):
        cam.append(7, refs[:1])


def test_reference_strings(tmp_path, h5):
    group = require_group(h5, "cam", "NXcollection")
    refs = [FrameRef(str(tmp_path / "scan0001" / "cam_0000.edf"), "", i) for i in range(2)]
    CameraDataset(group, "data", "strings", (4, 3), np.uint16, 2, "edf").append(0, refs)
    assert list(group["data"].asstr()[()]) == ["scan0001/cam_0000.edf::0",
                                                "scan0001/cam_0000.edf::1"]
    assert relative_to(str(tmp_path / "a" / "b.h5"), str(tmp_path / "x.h5")) == "a/b.h5"


def test_plot_links_and_grid_view(h5):
    entry = require_group(h5, "1.1", "NXentry")
    instrument = require_group(entry, "instrument", "NXinstrument")
    det = require_group(instrument, "diode", "NXdetector")
    ChannelDataset.create(det, "data", "float64", ()).append(0, np.arange(6.0))
    pos = require_group(instrument, "roby", "NXpositioner")
    ChannelDataset.create(pos, "value", "float64", ()).append(0, np.linspace(0, 1, 6))
    write_plot(entry, PlotSpec("plot0D", [("diode", "/1.1/instrument/diode/data")],
                               axes=[("roby", "/1.1/instrument/roby/value")]))
    plot = entry["plot0D"]
    assert plot.attrs["signal"] == "diode" and list(plot.attrs["axes"]) == ["roby"]
    assert plot.get("diode", getlink=True).path == "/1.1/instrument/diode/data"
    write_plot(entry, PlotSpec("grid", [("diode", "/1.1/instrument/diode/data")],
                               grid=Grid(slow=2, fast=3)))
    view = entry["grid/diode"]
    assert view.is_virtual and view.shape == (2, 3)
    np.testing.assert_array_equal(view[()], np.arange(6.0).reshape(2, 3))


def test_writer_status_and_metadata(h5):
    entry = require_group(h5, "1.1", "NXentry")
    metadata.write_writer_status(entry, "RUNNING")
    metadata.write_writer_status(entry, "FAILED", "disk full", {"end_reason": "SUCCESS"})
    assert entry["writer/status"].asstr()[()] == "FAILED"
    assert entry["writer/reason"].asstr()[()] == "disk full"
    with pytest.raises(ValueError, match="not one of"):
        metadata.write_writer_status(entry, "DONE")
    metadata.write_category(entry, "sample", {"@NX_class": "NXsample", "name": "quartz",
                                              "holder": {"position": 3}})
    assert entry["sample"].attrs["NX_class"] == "NXsample"
    assert entry["sample/holder"].attrs["NX_class"] == "NXcollection"
    metadata.write_comments(entry, [{"date": "2024-01-01", "message": "hello"}, "plain"])
    assert entry["comments/comment_02/data"].asstr()[()] == "plain"
    instrument = require_group(entry, "instrument", "NXinstrument")
    metadata.write_positioners(instrument, {"positioners_start": {"roby": 1.5},
                                            "positioners_units": {"roby": "mm"}})
    assert instrument["positioners/roby"][()] == 1.5
    assert instrument["positioners_start/roby"].attrs["units"] == "mm"


def test_writer_status_rewritten_in_place(h5):
    """status and date change at every step of a scan: fixed-width text written again
    where it is (no object deleted and created, no heap reference left dangling by
    a crash); reason only when it changes."""
    entry = require_group(h5, "1.1", "NXentry")
    metadata.write_writer_status(entry, "STARTING")
    first = {name: entry["writer"][name] for name in ("status", "date", "reason")}
    for state in ("RUNNING", "SUCCEEDED"):
        metadata.write_writer_status(entry, state)
        for name, dset in first.items():  # still linked: the very same objects
            assert h5py.h5o.get_info(dset.id).rc == 1, name
        assert first["status"][()] == state.encode()
    assert entry["writer/status"].dtype == np.dtype("S16")
    assert entry["writer/status"].asstr()[()] == "SUCCEEDED"
    datetime.fromisoformat(entry["writer/date"].asstr()[()])
    metadata.write_writer_status(entry, "FAILED", "disk full")
    assert h5py.h5o.get_info(first["reason"].id).rc == 0  # replaced
    assert entry["writer/reason"].asstr()[()] == "disk full"


def test_metadata_category_that_fails_keeps_a_valid_group(h5):
    entry = require_group(h5, "1.1", "NXentry")
    metadata.write_category(entry, "technique", {"list_of_dicts": [{"a": 1}],
                                                 "ragged": [[1], [1, 2]], "empty": [],
                                                 "numbers": [1, 2.5]})
    technique = entry["technique"]
    assert technique["list_of_dicts"].asstr()[()] == '[{"a": 1}]'
    assert technique["ragged"].asstr()[()] == "[[1], [1, 2]]"
    np.testing.assert_array_equal(technique["numbers"][()], [1, 2.5])
    with pytest.raises(Exception):  # noqa: B017 - whatever silx raises
        metadata.write_category(entry, "broken", {"@NX_class": "NXsample", "x": object()})
    assert entry["broken"].attrs["NX_class"] == "NXsample"
    # the instrument category completes the NXinstrument, whatever its dict says
    require_group(entry, "instrument", "NXinstrument")
    metadata.write_category(entry, "instrument", {"name": "id00"})
    assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
    assert entry["instrument/name"].asstr()[()] == "id00"


def test_chunks():
    from nexus_writer.nexus.datasets import chunk_shape

    assert chunk_shape(np.dtype("f8"), (), 10) == (10,)
    assert chunk_shape(np.dtype("f8"), (), 0)[0] * 8 <= 64 << 10  # unknown length
    assert chunk_shape(np.dtype("f8"), (), 10**7)[0] * 8 <= 1 << 20
    assert chunk_shape(np.dtype("u2"), (2048, 2048), 0) == (1, 2048, 2048)
    assert chunk_shape(np.dtype("i4"), (1024,), 6) == (6, 1024)
    assert chunk_shape(np.dtype("f8"), (), 12, leading=4) == (1, 4)


def test_set_attrs_writes_what_h5py_writes(h5):
    """The fast text path gives the very attribute h5py's ``attrs[...] =`` gives."""
    values = {"NX_class": "NXdetector", "units": "", "title": "ascan ε 0 1", "count": 3,
              "axes": ["x", "y"]}
    a, b = h5.create_group("a"), h5.create_group("b")
    a.attrs.update(values)
    set_attrs(b, values)
    set_attrs(b, {"NX_class": "NXdetector"})  # replaced, not added twice
    assert list(b.attrs) == list(a.attrs)
    for name in values:
        left, right = h5py.h5a.open(a.id, name.encode()), h5py.h5a.open(b.id, name.encode())
        assert left.get_type().equal(right.get_type()), name
        assert left.get_space().shape == right.get_space().shape, name
        assert np.array_equal(a.attrs[name], b.attrs[name]), name
