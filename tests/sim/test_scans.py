"""Scan types: point counts, shapes, dtypes, scan_info, numbering, flags."""

from __future__ import annotations

import threading
from datetime import datetime

import numpy as np
import pytest

from nexus_writer.sim import TopMaster, device_rng

DIODE = "simulation_diode_sampling_controller:diode"
DIODE2 = "simulation_diode_sampling_controller:diode2"
GAUSS = "simulation_counter_controller:sim_ct_gauss"

#: Keys every scan_info carries once the scan has ended.
INFO_KEYS = {
    "scan_nb", "name", "type", "title", "session_name", "user_name", "publisher",
    "publisher_version", "start_time", "start_timestamp", "end_time", "end_timestamp",
    "count_time", "sleep_time", "npoints", "data_dim", "save", "data_writer", "filename",
    "images_path", "data_policy", "acquisition_chain", "channels", "devices", "positioners",
    "instrument", "sample", "scan_meta_categories", "comments", "end_reason",
}


def nodes_of(scan) -> dict:
    return {n.name: n for n in scan.node.nodes()}


def counts(scan) -> dict[str, int]:
    return {name: n.count() for name, n in nodes_of(scan).items()}


def test_ct(session):
    scan = session.ct(0.1, "diode", "simu1")
    assert scan.scan_info["title"] == "ct 0.1"
    assert set(counts(scan).values()) == {1}
    info = scan.node.info
    assert (info["type"], info["npoints"], info["data_dim"]) == ("ct", 1, 0)


def test_ct_without_counters_uses_default_measurement_group(session):
    scan = session.ct(0.1)
    assert {DIODE, DIODE2} <= set(counts(scan))


def test_loopscan_nodes_shapes_dtypes_and_values(session):
    scan = session.loopscan(7, 0.1, "diode", "diode9", "simu1")
    nodes = nodes_of(scan)
    assert list(nodes)[:2] == ["timer:elapsed_time", "timer:epoch"]
    assert set(counts(scan).values()) == {7}
    elapsed = nodes["timer:elapsed_time"]
    assert (elapsed.dtype, elapsed.shape, elapsed.unit) == (np.dtype("float64"), (), "s")
    assert np.all(np.diff(elapsed.get()) >= 0)
    diode = nodes[DIODE].get()
    assert diode.dtype == np.float64 and diode.shape == (7,)
    rng = device_rng(scan.seed, 0, "diode")
    assert np.array_equal(diode, [rng.uniform(0.0, 100.0) for _ in range(7)])
    d9 = nodes["simulation_diode_sampling_controller:diode9"]
    assert d9.shape == (-1,) and d9.dtype == np.float64
    samples = d9.get()
    assert len(samples) == 7 and len({len(p) for p in samples}) > 1
    means = nodes["simulation_diode_sampling_controller:diode9_mean"].get()
    assert np.allclose(means, [p.mean() for p in samples])
    spectrum = nodes["simu1:spectrum_det0"]
    assert spectrum.dtype == np.int32 and spectrum.shape == (1024,)
    assert spectrum.get().shape == (7, 1024)
    assert nodes["simu1:realtime_det0"].get().dtype == np.float64
    assert scan.scan_info["title"] == "loopscan 7 0.1"


def test_node_info_conventions(session):
    scan = session.ascan("roby", 0, 2, 4, 0.1, "diode", "simu1", "lima_simulator")
    nodes = nodes_of(scan)
    for node in nodes.values():
        assert node.info["top_master"] == "axis"
        assert {"device", "display_name"} <= set(node.info)
    roby = nodes["axis:roby"]
    assert roby.info["axis_kind"] == "positioner"
    assert (roby.info["start"], roby.info["stop"], roby.unit) == (0, 2, "mm")
    assert roby.info["device"] == "roby" and roby.info["display_name"] == "roby"
    assert nodes[DIODE].info["device"] == "diode"
    assert nodes["simu1:spectrum_det0"].info["display_name"] == "spectrum_det0"
    assert nodes["simu1:spectrum_det0"].info["device"] == "simu1"
    lima = nodes["lima_simulator:image"]
    assert lima.type == "lima" and lima.info["device"] == "lima_simulator"
    assert lima.info["display_name"] == "image" and lima.shape == (64, 64)


def test_scan_info_keys_and_structure(session):
    session.plotselect("diode")
    scan = session.ascan("roby", 0, 1, 10, 0.1, "diode", "simu1", "lima_simulator")
    info = scan.node.info
    assert INFO_KEYS <= set(info), INFO_KEYS - set(info)
    assert info["title"] == "ascan roby 0 1 10 0.1"
    assert info["publisher"] == "nexus_writer.sim"
    assert (info["npoints"], info["data_dim"], info["end_reason"]) == (11, 1, "SUCCESS")
    for key in ("start_time", "end_time"):
        assert datetime.fromisoformat(info[key]).tzinfo is not None
    assert info["end_timestamp"] >= info["start_timestamp"]
    chain = info["acquisition_chain"]
    assert list(chain) == ["axis"]
    assert chain["axis"]["master"]["scalars"] == ["axis:roby"]
    assert {"timer:elapsed_time", "timer:epoch", DIODE} <= set(chain["axis"]["scalars"])
    assert chain["axis"]["spectra"] == ["simu1:spectrum_det0"]
    assert chain["axis"]["images"] == ["lima_simulator:image"]
    assert chain["axis"]["devices"] == ["roby", "timer", "diode", "simu1", "lima_simulator"]
    published = {n.name for n in scan.node.nodes()}
    assert set(info["channels"]) == published
    assert info["channels"]["axis:roby"]["unit"] == "mm"
    assert info["channels"]["lima_simulator:image"]["dim"] == 2
    assert info["devices"]["simu1"]["type"] == "mca"
    assert info["devices"]["lima_simulator"]["type"] == "lima"
    assert info["devices"]["roby"]["type"] == "axis"
    pos = info["positioners"]
    assert set(pos) == {"positioners_start", "positioners_end", "positioners_dial_start",
                        "positioners_dial_end", "positioners_units"}
    for snapshot in pos.values():
        assert set(snapshot) == {"roby", "robz", "robu", "soft_axis"}
    assert pos["positioners_end"]["roby"] == 1.0
    assert pos["positioners_dial_start"]["robu"] == -0.5  # offset 0.5
    assert pos["positioners_units"] == {"roby": "mm", "robz": "mm", "robu": "mm",
                                        "soft_axis": None}
    assert info["instrument"]["@NX_class"] == "NXinstrument"
    assert info["sample"]["@NX_class"] == "NXsample"
    assert set(info["scan_meta_categories"]) == {"instrument", "sample"}
    assert info["_display_extra"]["plotselect"] == [DIODE]
    assert info["plots"][0]["items"][0] == {"kind": "curve", "x": "axis:roby", "y": DIODE}


def test_comments(session):
    scan = session.loopscan(2, 0.1, "diode", run=False)
    scan.add_comment("first")
    scan.run()
    (comment,) = scan.node.info["comments"]
    assert comment["message"] == "first"
    datetime.fromisoformat(comment["date"])


def test_dscan_is_relative_and_returns(session):
    roby = session.config.get("roby")
    roby.move(5.0)
    scan = session.dscan(roby, -1, 1, 4, 0.1, "diode")
    positions = nodes_of(scan)["axis:roby"].get()
    assert np.allclose(positions, [4.0, 4.5, 5.0, 5.5, 6.0])
    assert roby.position == 5.0
    assert scan.scan_info["title"] == "dscan roby -1 1 4 0.1"
    assert nodes_of(scan)["axis:roby"].info["start"] == 4.0


def test_a2scan_and_d2scan(session):
    scan = session.a2scan("roby", 0, 1, "robz", 10, 20, 5, 0.1, "diode")
    nodes = nodes_of(scan)
    assert np.allclose(nodes["axis:robz"].get(), np.linspace(10, 20, 6))
    assert set(counts(scan).values()) == {6}
    assert scan.scan_info["acquisition_chain"]["axis"]["master"]["scalars"] == [
        "axis:roby", "axis:robz"]
    robz = session.config.get("robz")
    scan = session.d2scan("roby", -1, 1, "robz", -2, 2, 2, 0.1, "sim_ct_gauss")
    assert np.allclose(nodes_of(scan)["axis:robz"].get(), [18, 20, 22])
    assert robz.position == 20
    assert scan.scan_info["title"] == "d2scan roby -1 1 robz -2 2 2 0.1"


def test_gauss_counter_peaks_in_the_middle(session):
    scan = session.ascan("roby", 0, 10, 20, 0.1, "sim_ct_gauss")
    values = nodes_of(scan)[GAUSS].get()
    assert int(np.argmax(values)) == 10


def test_amesh(session):
    scan = session.amesh("roby", 0, 1, 3, "robz", 0, 2, 2, 0.1, "diode")
    info = scan.node.info
    assert (info["npoints"], info["data_dim"], info["npoints1"], info["npoints2"]) == (12, 2, 4, 3)
    nodes = nodes_of(scan)
    assert np.allclose(nodes["axis:roby"].get(), np.tile(np.linspace(0, 1, 4), 3))
    assert np.allclose(nodes["axis:robz"].get(), np.repeat([0, 1, 2], 4))
    assert (nodes["axis:roby"].info["axis_id"], nodes["axis:robz"].info["axis_id"]) == (0, 1)
    assert set(counts(scan).values()) == {12}
    assert info["title"] == "amesh roby 0 1 3 robz 0 2 2 0.1"


def test_timescan_with_npoints(session):
    scan = session.timescan(0.1, "diode", npoints=4)
    assert scan.node.info["npoints"] == 4
    assert set(counts(scan).values()) == {4}


def test_soft_axis_and_variable_samples(session):
    scan = session.ascan("soft_axis", 0, 5, 5, 0.1, "sim_var_samples")
    nodes = nodes_of(scan)
    assert nodes["axis:soft_axis"].unit is None
    samples = nodes["simulation_counter_controller:sim_var_samples"]
    assert samples.shape == (-1,)
    assert len(samples.get()) == 6 and len({len(p) for p in samples.get()}) > 1


def test_scan_numbers_increase(session):
    numbers = [session.ct(0.1, "diode").scan_number for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert session.loopscan(2, 0.1, "diode").node.number == 4


def test_parallel_scans_get_distinct_numbers(session):
    scans = [session.loopscan(20, 0.1, "diode", run=False) for _ in range(4)]
    threads = [threading.Thread(target=s.run) for s in scans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({s.scan_number for s in scans}) == 4
    assert len({s.key for s in scans}) == 4
    for s in scans:
        assert s.end_reason == "SUCCESS"
        assert set(counts(s).values()) == {20}


def test_parallel_scans_from_threads_of_their_own(session):
    scans = [session.loopscan(5, 0.1, "diode", run=False) for _ in range(3)]
    for s in scans:
        s.run_in_thread()
    for s in scans:
        assert s.wait(10)
    assert sorted(s.scan_number for s in scans) == [1, 2, 3]


def test_multi_top_master_scan(session):
    scan = session.multi_top_master_scan([
        TopMaster.timer(2, 0.1, "diode"),
        TopMaster.timer(50, 0.01, "lima_simulator", "diode2"),
    ])
    c = counts(scan)
    assert c["timer:elapsed_time"] == c[DIODE] == 2
    assert c["timer2:elapsed_time"] == c["timer2:epoch"] == c[DIODE2] == 50
    assert c["lima_simulator:image"] == 50
    info = scan.node.info
    assert list(info["acquisition_chain"]) == ["timer", "timer2"]
    assert info["acquisition_chain"]["timer2"]["images"] == ["lima_simulator:image"]
    assert info["npoints"] == 50
    tops = {n.name: n.info["top_master"] for n in scan.node.nodes()}
    assert tops[DIODE] == "timer" and tops["lima_simulator:image"] == "timer2"


def test_multi_top_master_refuses_duplicate_channels(session):
    with pytest.raises(ValueError, match="diode"):
        session.multi_top_master_scan([TopMaster.timer(2, 0.1, "diode"),
                                       TopMaster.timer(3, 0.1, "diode")], run=False)


def test_save_false_and_null_writer(session):
    scan = session.loopscan(2, 0.1, "diode", save=False)
    assert (scan.node.info["save"], scan.node.info["data_writer"]) == (False, "null")
    session.scan_saving.writer = "null"
    scan = session.loopscan(2, 0.1, "diode")
    assert (scan.node.info["save"], scan.node.info["data_writer"]) == (False, "null")
    session.scan_saving.writer = "nexus"
    scan = session.loopscan(2, 0.1, "diode")
    assert (scan.node.info["save"], scan.node.info["data_writer"]) == (True, "nexus")


def test_filename_and_images_path_layout(session, data_dir):
    session.scan_saving.proposal = "blc1"
    session.scan_saving.newcollection("cube", "0007")
    scan = session.ct(0.1, "diode")
    dataset = data_dir / "blc1/id00/test_session/RAW_DATA/cube/cube_0007"
    assert scan.scan_info["filename"] == str(dataset / "cube_0007.h5") == scan.filename
    assert scan.scan_info["images_path"] == str(dataset / "scan0001")
    assert dataset.is_dir()
    assert scan.scan_info["sample"]["name"] == "cube"


def test_title_and_scan_info_keywords(session):
    scan = session.loopscan(2, 0.1, "diode", title="my title",
                            scan_info={"sample": {"name": "mine"}, "extra": 1})
    info = scan.node.info
    assert (info["title"], info["extra"], info["sample"]["name"]) == ("my title", 1, "mine")
    assert info["sample"]["@NX_class"] == "NXsample"


def test_run_false_then_run_once(session):
    scan = session.loopscan(3, 0.1, "diode", run=False)
    assert scan.key is None
    with pytest.raises(RuntimeError, match="not been run"):
        _ = scan.node
    scan.run()
    assert scan.node.state == "ENDED"
    with pytest.raises(RuntimeError, match="run already"):
        scan.run()


def test_failure_ends_scan_with_failure(session, monkeypatch):
    diode = session.config.get("diode")

    def broken(ctx, rng):
        if ctx.index == 2:
            raise OSError("diode unplugged")
        return {diode.fullname: 1.0}

    monkeypatch.setattr(diode, "read", broken)
    scan = session.loopscan(5, 0.1, diode, run=False)
    with pytest.raises(OSError, match="unplugged"):
        scan.run()
    node = scan.node
    assert node.state == "ENDED" and node.end_reason == "FAILURE"
    assert node.info["end_reason"] == "FAILURE"
    # the failing point is not published at all: every channel has the same length
    assert set(counts(scan).values()) == {2}
