"""What other producers and bad days bring: any numeric dtype, odd channel names, a
minimal scan_info, scans that never end, a writer that attaches late or is stopped."""

from __future__ import annotations

import json
import logging
import threading

import h5py
import numpy as np
import pytest

from nexus_writer.nexus.validate import validate_file
from nexus_writer.writer import ScanState
from tests.layout import Place
from tests.waiting import wait_for

from .helpers import assert_channel, check_scan, decode, manual_scan_info, wait_written

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16",
          "float32", "float64", ">f8", ">i4", "bool"]


def _values(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype.newbyteorder("="),
                            endpoint=True).astype(dtype)
    values = rng.normal(0, 1e3, shape).astype(dtype)
    values.flat[0] = np.nan  # NaN published is NaN written
    values.flat[-1] = -np.inf
    return values


def test_every_numeric_dtype_bit_exact(store, data_dir, writer_factory):
    filename = str(data_dir / "dtypes.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"}}
    for i, d in enumerate(DTYPES):
        code = np.dtype(d).str.replace("<", "le").replace(">", "be").replace("|", "")
        channels[f"ctrl:c_{code}"] = {"device": f"dev_{i}", "dim": 0, "unit": ""}
    channels["ctrl:image"] = {"device": "imager", "dim": 2, "unit": "counts"}
    channels["ctrl:spectrum"] = {"device": "mca", "dim": 1, "unit": ""}
    channels["ctrl:ragged_int"] = {"device": "samples", "dim": 1, "unit": ""}
    writer = writer_factory()
    pub = store.create_scan("test_session", manual_scan_info("test_session", 3, filename,
                                                              channels, npoints=6))
    pub.start()
    rng = np.random.default_rng(3)
    names = list(channels)
    dtypes = ["float64"] + DTYPES + ["uint32", "int16", "int32"]
    shapes = [()] * (1 + len(DTYPES)) + [(4, 5), (16,), (-1,)]
    pubs = [pub.create_channel(n, d, s, channels[n]["unit"], device=channels[n]["device"])
            for n, d, s in zip(names, dtypes, shapes, strict=True)]
    for batch in (2, 1, 3):
        for p, d, s in zip(pubs, dtypes, shapes, strict=True):
            dt = np.dtype(d)
            if s == (-1,):
                p.send([_values(dt, (int(rng.integers(1, 6)),), rng) for _ in range(batch)])
            else:
                p.send(_values(dt, (batch,) + s, rng))
    pub.end("SUCCESS")
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw)
    report = validate_file(filename)
    assert report.ok, report.messages
    with h5py.File(filename, "r", locking=False) as f:
        assert f["3.1/instrument/imager/data"].shape == (6, 4, 5)
        assert decode(f["3.1/plot2D"].attrs["signal"]) == "imager_image"
        assert f["3.1/instrument/imager/data"].attrs["units"] == "counts"
        # a boolean is stored as such, in a collection (NXdetector data is a number)
        assert f["3.1/instrument/c_b1/data"].dtype == bool
        assert decode(f["3.1/instrument/c_b1"].attrs["NX_class"]) == "NXcollection"
        ragged = f["3.1/instrument/samples/data"][()]
        assert ragged.dtype == np.int32 and (ragged == 0).any()


def test_odd_channel_names_and_minimal_scan_info(store, data_dir, writer_factory):
    """A producer that is not BLISS: no acquisition chain, no devices, names that are
    not NeXus names or collide once made NeXus names."""
    filename = str(data_dir / "odd.h5")
    writer = writer_factory()
    pub = store.create_scan("test_session", {"scan_nb": 5, "title": "minimal",
                                             "filename": filename})
    pub.start()
    names = ["x-1", "x_1", "a/b", "ctrl:1st counter", "µ:ä", "x 1"]
    pubs = [pub.create_channel(n, "float64") for n in names]
    for i, p in enumerate(pubs):
        p.send(np.arange(4.0) + i)
    pub.end("SUCCESS")
    [sw] = wait_written(writer, [pub])
    # NeXus names (invalid characters -> "_", a leading digit gets "_"), made unique in
    # publication order with _2, _3...: each channel a detector of its own
    expected = {"x-1": "x_1", "x_1": "x_1_2", "a/b": "a_b", "ctrl:1st counter": "_1st_counter",
                "µ:ä": "_", "x 1": "x_1_3"}
    places = {name: Place("5.1", short, "data", short, "NXdetector")
              for name, short in expected.items()}
    check_scan(store, sw, places=places)
    nodes = {n.name: n for n in store.get_scan_node(pub.key).nodes()}
    with h5py.File(filename, "r", locking=False) as f:
        measurement = f["5.1/measurement"]
        assert sorted(measurement) == sorted(expected.values())  # none lost in a collision
        for name, place in places.items():
            assert_channel(f[place.path], nodes[name])
    report = validate_file(filename)
    assert report.errors == 0 and report.warnings == 0, report.messages


def test_scan_that_never_ends(store, data_dir, writer_factory, caplog):
    """No end of scan (the producer died): after the inactivity timeout the scan is
    FAILED, with what came, and says so in the log, in Redis and in the file."""
    filename = str(data_dir / "stuck.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""}}
    writer = writer_factory(inactivity_timeout=1.0)
    pub = store.create_scan("test_session", manual_scan_info("test_session", 1, filename,
                                                              channels, npoints=10))
    pub.start()
    for name in channels:
        pub.create_channel(name, "float64", device=channels[name]["device"]).send(np.arange(4.0))
    [sw] = wait_written(writer, [pub], timeout=60)
    assert sw.state == ScanState.FAILED
    assert "no new event for 1 s" in sw.saving.reason, sw.saving.reason
    assert sw.saving.reason.startswith("scan 1 of session 'test_session': ")
    assert "no end of scan received" in sw.saving.reason
    saved = pub.wait_saved(timeout=5)  # what the producer's side hears, had it survived
    assert saved.state == "FAILED" and saved.reason == sw.saving.reason
    assert saved.detail["channels"] == {name: {"written": 4, "published": None}
                                        for name in channels}
    assert saved.detail["end_reason"] is None
    assert any(r.levelno == logging.ERROR and "no end of scan received" in r.getMessage()
               for r in caplog.records)
    with h5py.File(filename, "r", locking=False) as f:
        entry = f["1.1"]
        assert decode(entry["writer/status"][()]) == "FAILED"
        assert decode(entry["writer/reason"][()]) == sw.saving.reason
        assert entry["measurement/diode"].shape == (4,)
        assert "end_time" in entry


def test_stopping_the_writer_records_scans_in_progress(store, data_dir, redis_url):
    from nexus_writer.writer import SessionWriter

    filename = str(data_dir / "stopped.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"}}
    writer = SessionWriter("test_session", redis_url, flush_period=0.2).start()
    try:
        pub = store.create_scan("test_session", manual_scan_info("test_session", 1, filename,
                                                                  channels))
        pub.start()
        pub.create_channel("timer:elapsed_time", "float64").send(np.arange(3.0))
        wait_for(lambda: writer.scans() and writer.scans()[0].state == ScanState.RUNNING, 10,
                 "the scan RUNNING in the writer", lambda: writer.scans())
    finally:
        writer.stop(timeout=0.5)
    [sw] = writer.scans()
    assert sw.state == ScanState.FAILED
    assert "stopped before the end of the scan" in sw.saving.reason
    with h5py.File(filename, "r", locking=False) as f:
        assert decode(f["1.1/writer/status"][()]) == "FAILED"
        assert f["1.1/measurement/elapsed_time"].shape == (3,)


def test_writer_attaching_late_loses_nothing(sim_session, writer_factory, store):
    """``from_next=False``: scans published before the writer started, and one already
    running when it starts, are written whole."""
    done = sim_session.loopscan(5, 0.1, "diode")
    sim_session.time_scale = 1.0
    running = sim_session.loopscan(20, 0.02, "diode", run=False)
    thread = threading.Thread(target=running.run)
    thread.start()
    wait_for(lambda: running.key is not None and running.node.nodes()
             and running.node.nodes()[-1].count() >= 3, 10,
             "3 points of the running scan in Redis")
    writer = writer_factory(from_next=False)
    thread.join(30)
    written = wait_written(writer, [done, running])
    for sw in written:
        check_scan(store, sw)


def test_metadata_that_cannot_be_written_does_not_lose_data(sim_session, writer_factory, store):
    sim_session.metadata["technique"] = {"@NX_class": "NXcollection", "energy": 12.4,
                                         "list_of_dicts": [{"a": 1}, {"b": 2}],
                                         "nothing": None, "mixed": [1, "a", 2.5]}
    writer = writer_factory()
    scan = sim_session.loopscan(3, 0.1, "diode")
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw)
    with h5py.File(sw.filename, "r", locking=False) as f:
        entry = f["1.1"]
        technique = entry["technique"]
        assert decode(technique.attrs["NX_class"]) == "NXcollection"
        assert technique["energy"][()] == 12.4
        # what HDF5 cannot hold as such is kept as JSON text
        assert json.loads(decode(technique["list_of_dicts"][()])) == [{"a": 1}, {"b": 2}]
        assert json.loads(decode(technique["mixed"][()])) == [1, "a", 2.5]
        assert "nothing" not in technique
        assert "problems" not in entry["writer"]
    assert validate_file(sw.filename).ok


def _incomplete_mesh(store, filename):
    channels = {"axis:roby": {"device": "roby", "dim": 0, "unit": "mm"},
                "axis:robz": {"device": "robz", "dim": 0, "unit": "mm"},
                "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""}}
    info = manual_scan_info("test_session", 1, filename, channels, npoints=6, title="amesh")
    info.update(data_dim=2, npoints1=3, npoints2=2)
    info["acquisition_chain"]["timer"]["master"]["scalars"] = ["axis:roby", "axis:robz"]
    info["acquisition_chain"]["timer"]["scalars"] = ["ctrl:diode"]
    for motor in ("roby", "robz"):
        info["devices"][motor]["type"] = "axis"
    pub = store.create_scan("test_session", info)
    pub.start()
    roby = pub.create_channel("axis:roby", "float64", (), "mm", device="roby",
                              axis_kind="positioner")
    robz = pub.create_channel("axis:robz", "float64", (), "mm", device="robz",
                              axis_kind="positioner")
    diode = pub.create_channel("ctrl:diode", "float64", (), device="diode")
    roby.send(np.array([0.0, 0.5, 1.0, 0.0]))
    robz.send(np.array([0.0, 0.0, 0.0, 1.0]))
    diode.send(np.array([1.0, 2.0, 3.0, 4.0]))
    pub.end("USER_ABORT")
    return pub


@pytest.mark.parametrize("keepshape", [False, True])
def test_aborted_mesh(store, data_dir, writer_factory, keepshape):
    """A mesh stopped after 4 of its 6 points: all 4 written, the grid view padded."""
    filename = str(data_dir / "mesh.h5")
    writer = writer_factory(keepshape=keepshape)
    pub = _incomplete_mesh(store, filename)
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw, keepshape=keepshape)
    with h5py.File(filename, "r", locking=False) as f:
        diode = f["1.1/instrument/diode/data"][()]
        if keepshape:
            assert diode.shape == (2, 3)
            np.testing.assert_array_equal(diode.reshape(-1)[:4], [1, 2, 3, 4])
            assert np.isnan(diode.reshape(-1)[4:]).all()
        else:
            np.testing.assert_array_equal(diode, [1, 2, 3, 4])
        plot = f["1.1/plot0D"]
        view = plot[decode(plot.attrs["signal"])][()]
        assert view.shape == (2, 3)
        np.testing.assert_array_equal(view.reshape(-1)[:4], [1, 2, 3, 4])
        assert np.isnan(view.reshape(-1)[4:]).all()
    report = validate_file(filename)
    assert report.ok, report.messages
