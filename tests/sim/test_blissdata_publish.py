"""``SimSession(protocol="blissdata")`` publishes as BLISS 2.4 does.

Each scan is compared with the same scan recorded from real BLISS 2.4
(``../shared/fixtures/bliss-2.4``, see its README): states, identity, the info keys
at every state, devices, channels, acquisition chain, stream names, kinds, plugins,
encodings, stream info and hdf5_fallback data paths.  What the sim publishes is read
back with blissdata's own reader (``DataStore.load_scan``, ``scan.streams``,
``CursorGroup``) and must equal what the devices produced.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blissdata.exceptions import EndOfStream
from blissdata.redis_engine.scan import Scan as BlissScan
from blissdata.redis_engine.store import DataStore
from blissdata.streams import CursorGroup

from nexus_writer.sim import ChannelSpec, Counter, PointContext, device_rng
from nexus_writer.sim.scans import ScanState
from tests.blissdata_replay import FIXTURES

STATES = ["CREATED", "PREPARED", "STARTED", "STOPPED", "CLOSED"]
#: The simulated session has a ``sample`` metadata category (BLISS publishes every
#: category of ``scan_meta_categories`` as a key); the recorded session had none.
SIM_EXTRA_KEYS = {"sample"}


def load_fixture(name: str) -> dict[str, Any]:
    with open(FIXTURES / f"{name}.json") as f:
        return json.load(f)


def info_at(scan: dict[str, Any], state: str) -> dict[str, Any]:
    """The recorded info at ``state`` (README: info minus ``unset``, plus ``set``)."""
    info = copy.deepcopy(scan["info"])
    change = scan["info_changes"].get(state)
    if change is not None:
        for key in change["unset"]:
            info.pop(key, None)
        info.update(copy.deepcopy(change["set"]))
    return info


@pytest.fixture
def published(monkeypatch, bliss_url):
    """Records, for every scan, the state and info a blissdata reader sees right after
    each transition (observe only: the producer's methods are called unchanged)."""
    reader = DataStore(bliss_url)
    seen: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def snapshot(key: str) -> None:
        scan = reader.load_scan(key)
        seen.setdefault(key, []).append((scan.state.name, copy.deepcopy(scan.info)))

    original_create = DataStore.create_scan

    def create_scan(self, identity, info={}):  # noqa: B006 (blissdata's signature)
        scan = original_create(self, identity, info)
        snapshot(scan.key)
        return scan

    monkeypatch.setattr(DataStore, "create_scan", create_scan)
    for name in ("prepare", "start", "stop", "close"):
        original = getattr(BlissScan, name)

        def transition(self, _original=original):
            _original(self)
            snapshot(self.key)

        monkeypatch.setattr(BlissScan, name, transition)
    return reader, seen


def device_entry(info: dict[str, Any], key: str) -> dict[str, Any]:
    return info["devices"][key]


def chain_by_name(info: dict[str, Any]) -> dict[str, Any]:
    """acquisition_chain with device keys replaced by device names (keys are ids)."""
    out = {}
    for name, chain in info["acquisition_chain"].items():
        c = copy.deepcopy(chain)
        c["top_master"] = device_entry(info, c["top_master"])["name"]
        c["devices"] = sorted(device_entry(info, d)["name"] for d in c["devices"])
        for k in ("scalars", "spectra", "images"):
            c[k] = sorted(c[k])
        out[name] = c
    return out


def devices_by_name(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The device entries with ids replaced by names, channels sorted, in a stable
    order (several devices may have the same name: one controller per diode)."""
    out = []
    for entry in info["devices"].values():
        e = copy.deepcopy(entry)
        if "triggered_devices" in e:
            e["triggered_devices"] = sorted(info["devices"][d]["name"]
                                            for d in e["triggered_devices"])
        e["channels"] = sorted(e["channels"])
        out.append(e)
    return sorted(out, key=lambda e: (e["name"], e["channels"]))


def compare_scan(expected: dict[str, Any], reader: DataStore, seen: dict, key: str,
                 filename: str) -> BlissScan:
    """Assert that the scan ``key`` was published as the recorded ``expected``."""
    scan = reader.load_scan(key)
    nb = scan.number
    # States, and the info keys at each (``sample``: the sim's metadata category).
    states = [s for s, _ in seen[key]]
    assert states == [s["state"] for s in expected["states"]]
    for state, info in seen[key]:
        want = set(info_at(expected, state))
        assert set(info) - SIM_EXTRA_KEYS == want, state
        if "positioners" in want:
            assert set(info["positioners"]) == set(info_at(expected, state)["positioners"]), \
                state
        # devices gain their metadata before PREPARED, then stay frozen until CLOSED
        want_dev = devices_by_name(info_at(expected, state))
        got_dev = devices_by_name(info)
        assert [(e["name"], e["channels"], set(e)) for e in got_dev] == \
            [(e["name"], e["channels"], set(e)) for e in want_dev], state
    final = scan.info
    want_final = expected["info"]
    assert final["end_reason"] == want_final["end_reason"]
    # Identity: as BLISS passes it, plus the ESRF data policy's fields.
    assert scan.name == expected["identity"]["name"]
    assert scan.session == expected["identity"]["session"]
    assert final["scan_nb"] == nb and final["name"] == f"{nb}_{scan.name}"
    assert final["filename"] == filename and scan.path == filename
    assert (scan.proposal, scan.collection, scan.dataset) == ("testproposal", "sample", "0001")
    # Devices (by name), channels, chain.
    assert devices_by_name(final) == devices_by_name(want_final)
    assert set(final["channels"]) == set(want_final["channels"])
    for name, ch in want_final["channels"].items():
        got = final["channels"][name]
        assert set(got) - {"unit"} == set(ch) - {"unit"}, name  # sim motors have units
        assert final["devices"][got["device"]]["name"] == \
            want_final["devices"][ch["device"]]["name"], name
        assert got["dim"] == ch["dim"] and got["display_name"] == ch["display_name"]
    assert chain_by_name(final) == chain_by_name(want_final)
    for key_ in ("plots", "display_extra", "writer_options", "start", "stop", "npoints",
                 "npoints1", "npoints2", "data_dim", "is_scan_sequence", "type", "save"):
        if key_ in want_final:
            assert final[key_] == want_final[key_], key_
    # Streams: names, kinds, plugins, encodings, info (data paths with our scan number).
    recorded = {s["name"]: s for s in expected["streams"]}
    assert set(scan.streams) == set(recorded)
    for name, want in recorded.items():
        stream = scan.streams[name]
        assert stream.kind == want["kind"], name
        assert stream.plugin == want["plugin"], name
        encoding = dict(stream.event_stream.encoding)
        assert encoding == want["encoding"], name
        info = dict(stream.info)
        want_info = copy.deepcopy(want["info"])
        if "data_path" in want_info:
            want_info["data_path"] = re.sub(r"^\d+\.1/", f"{nb}.1/", want_info["data_path"])
            want_info["file_path"] = filename
        assert info == want_info, name
        assert stream.is_sealed(), name
    return scan


def read_all(scan: BlissScan) -> dict[str, Any]:
    """Every stream's points, read with blissdata's CursorGroup until all are sealed."""
    group = CursorGroup(scan.streams)
    parts: dict[str, list[Any]] = {name: [] for name in scan.streams}
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "streams not all sealed within 30 s"
        try:
            views = group.read(timeout=1)
        except EndOfStream:
            break
        for stream, view in views.items():
            parts[stream.name].extend(list(view.get_data()))
    return {name: np.asarray(points) for name, points in parts.items()}


def check_diode(data: dict[str, Any], scan_nb: int, name: str, npoints: int) -> None:
    """``SimDiode``: uniform [0, 100) from the scan's RNG of that device, per point."""
    rng = device_rng(scan_nb, 0, name)
    want = np.array([rng.uniform(0.0, 100.0) for _ in range(npoints)])
    got = data[f"simulation_diode_sampling_controller:{name}"]
    assert got.dtype == np.float64 and np.array_equal(got, want)


def check_timer(data: dict[str, Any], npoints: int) -> None:
    elapsed, epoch = data["timer:elapsed_time"], data["timer:epoch"]
    assert len(elapsed) == len(epoch) == npoints
    assert np.all(np.diff(elapsed) >= 0) and np.all(np.diff(epoch) >= 0)


def test_loopscan_as_bliss(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.loopscan(10, 0.01, "diode", "sim_ct_gauss")
    bscan = compare_scan(load_fixture("loopscan"), reader, seen, scan.key,
                         s.scan_saving.filename)
    data = read_all(bscan)
    check_timer(data, 10)
    check_diode(data, scan.scan_number, "diode", 10)
    gauss = s.config.get("sim_ct_gauss")
    rng = device_rng(scan.scan_number, 0, "sim_ct_gauss")
    want = [gauss.read(PointContext(i, 10, 0.01), rng)[gauss.fullname] for i in range(10)]
    assert np.array_equal(data[gauss.fullname], want)
    # blissdata's random access gives the same as the cursors
    for name, points in data.items():
        assert np.array_equal(bscan.streams[name][:], points), name


def test_ascan_as_bliss(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.ascan("roby", 0, 1, 10, 0.01, "diode", "sim_ct_gauss")
    bscan = compare_scan(load_fixture("ascan"), reader, seen, scan.key,
                         s.scan_saving.filename)
    data = read_all(bscan)
    assert np.array_equal(data["axis:roby"], np.linspace(0, 1, 11))
    check_timer(data, 11)
    check_diode(data, scan.scan_number, "diode", 11)
    final = bscan.info["positioners"]
    assert final["positioners_start"]["roby"] == 0.0 and final["positioners_end"]["roby"] == 1.0


def test_amesh_as_bliss(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.amesh("roby", 0, 1, 4, "robz", 0, 1, 3, 0.01, "diode")
    bscan = compare_scan(load_fixture("amesh"), reader, seen, scan.key, s.scan_saving.filename)
    data = read_all(bscan)
    assert np.array_equal(data["axis:roby"], np.tile(np.linspace(0, 1, 5), 4))
    assert np.array_equal(data["axis:robz"], np.repeat(np.linspace(0, 1, 4), 5))
    check_diode(data, scan.scan_number, "diode", 20)
    channels = bscan.info["channels"]
    assert (channels["axis:roby"]["axis_id"], channels["axis:robz"]["axis_id"]) == (0, 1)
    assert (channels["axis:roby"]["axis_points"], channels["axis:robz"]["axis_points"]) == (5, 4)


def test_mca_loopscan_as_bliss(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.loopscan(5, 0.01, "diode", "simu1")
    bscan = compare_scan(load_fixture("loopscan_mca"), reader, seen, scan.key,
                         s.scan_saving.filename)
    data = read_all(bscan)
    mca = s.config.get("simu1")
    rng = device_rng(scan.scan_number, 0, "simu1")
    points = [mca.read(PointContext(i, 5, 0.01), rng) for i in range(5)]
    for name in (spec.name for spec in mca.channels()):
        want = np.array([p[name] for p in points])
        got = data[name]
        assert got.dtype == bscan.streams[name].dtype and np.array_equal(got, want), name
    assert data["simu1:spectrum_det3"].dtype == np.uint32
    assert data["simu1:spectrum_det3"].shape == (5, 1024)


def test_unsaved_scan_has_no_fallback(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.loopscan(3, 0.01, "diode", save=False)
    bscan = reader.load_scan(scan.key)
    expected = load_fixture("loopscan_save_false")
    assert bscan.path is None and bscan.info["filename"] is None
    assert bscan.info["save"] is False and bscan.info["name"] == f"_{scan.scan_number}_loopscan"
    assert bscan.info["data_writer"] == s.scan_saving.writer  # as BLISS: the configured one
    assert set(bscan.info) - SIM_EXTRA_KEYS == set(expected["info"])
    want = {s_["name"]: (s_["plugin"], s_["info"], s_["encoding"]) for s_ in expected["streams"]}
    got = {n: (st.plugin, dict(st.info), dict(st.event_stream.encoding))
           for n, st in bscan.streams.items()}
    assert got == want
    check_diode(read_all(bscan), scan.scan_number, "diode", 3)


def test_writer_null_as_bliss(bliss_session, published):
    """``scan_saving.writer = "null"``: identity path None, info save true, no file,
    plain streams (as BLISS with ``SCAN_SAVING.writer = "null"``)."""
    reader, seen = published
    s = bliss_session
    s.scan_saving.writer = "null"
    scan = s.loopscan(3, 0.01, "diode")
    bscan = reader.load_scan(scan.key)
    expected = load_fixture("loopscan_writer_null")
    assert bscan.path is None
    for key in ("save", "filename", "data_writer"):
        assert bscan.info[key] == expected["info"][key], key
    assert bscan.info["name"] == f"{scan.scan_number}_loopscan"
    assert set(bscan.info) - SIM_EXTRA_KEYS == set(expected["info"])
    want = {s_["name"]: (s_["plugin"], s_["info"], s_["encoding"]) for s_ in expected["streams"]}
    got = {n: (st.plugin, dict(st.info), dict(st.event_stream.encoding))
           for n, st in bscan.streams.items()}
    assert got == want


def test_sequence_as_bliss(bliss_session, published):
    """The recorded ``ScanSequence(runner, channels=[seq_step, seq_matrix])``: emit,
    loopscan, emit, ascan."""
    reader, seen = published
    s = bliss_session
    expected = load_fixture("sequence")
    recorded = {x["name"]: x for x in expected["streams"]}
    channels = [ChannelSpec("seq_step", "seq_step", "float64", ()),
                ChannelSpec("seq_matrix", "seq_matrix", "float32", (2, 3))]
    with s.sequence(title="sequence_of_scans", channels=channels) as seq:
        seq.emit("seq_step", recorded["seq_step"]["data"][:1])
        seq.emit("seq_matrix", recorded["seq_matrix"]["data"][:1])
        seq.add_and_run(s.loopscan(3, 0.01, "diode", run=False))
        seq.emit("seq_step", recorded["seq_step"]["data"][1:])
        seq.emit("seq_matrix", recorded["seq_matrix"]["data"][1:])
        seq.add_and_run(s.ascan("roby", 0, 1, 3, 0.01, "diode", run=False))
    parent = compare_scan(expected, reader, seen, seq.key, s.scan_saving.filename)
    assert parent.info["is_scan_sequence"] is True and parent.info["title"] == "sequence_of_scans"
    sub = parent.streams["SUBSCANS"]
    assert sub.event_stream[:] == [{"key": c.key, "scan_number": c.scan_number}
                                   for c in seq.children]
    assert [c.key for c in sub[:]] == [c.key for c in seq.children]
    data = read_all(parent)
    assert data["seq_step"].dtype == np.float64
    assert np.array_equal(data["seq_step"], recorded["seq_step"]["data"])
    assert data["seq_matrix"].dtype == np.float32
    assert np.array_equal(data["seq_matrix"], recorded["seq_matrix"]["data"])
    for child, rec in zip(seq.children, expected["children"], strict=True):
        bchild = compare_scan(rec, reader, seen, child.key, s.scan_saving.filename)
        assert bchild.info["group"] == seq.key
        check_diode(read_all(bchild), child.scan_number, "diode", len(rec["streams"][0]["data"]))


def test_sequence_emit_errors(bliss_session):
    s = bliss_session
    seq = s.sequence(channels=[ChannelSpec("seq_step", "seq_step", "float64", ())])
    with pytest.raises(RuntimeError, match="emit.. while not running"):
        seq.emit("seq_step", [1.0])
    with seq:
        with pytest.raises(KeyError, match="no channel 'nope'; it has seq_step"):
            seq.emit("nope", [1.0])
        with pytest.raises(ValueError, match=r"batch of points of shape \(\)"):
            seq.emit("seq_step", 1.0)


def test_aborted_timescan_as_bliss(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.timescan(0.01, "diode", run=False)
    scan.run_in_thread()
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, "fewer than 5 points within 10 s"
        assert scan.state != ScanState.DONE, "the timescan ended by itself"
        if scan.key is not None and reader.load_scan(scan.key).state.name == "STARTED":
            stream = reader.load_scan(scan.key).streams["timer:epoch"]
            if len(stream) >= 5:
                break
        time.sleep(0.005)
    scan.abort()
    assert scan.wait(10)
    expected = load_fixture("timescan_aborted")
    bscan = compare_scan(expected, reader, seen, scan.key, s.scan_saving.filename)
    assert "STOPPED" not in [st for st, _ in seen[scan.key]]
    assert bscan.info["end_reason"] == "USER_ABORT" and bscan.info["npoints"] == 0
    assert "end_time" in bscan.info
    data = read_all(bscan)
    counts = {name: len(points) for name, points in data.items()}
    assert len(set(counts.values())) == 1 and min(counts.values()) >= 5, counts
    check_diode(data, scan.scan_number, "diode", counts["timer:epoch"])


def test_camera_references_read_by_blissdata(bliss_session):
    """Lima streams (blissdata's ``lima`` plugin): blissdata reads the frames from the
    camera's files, as it does for BLISS (no fixture: BLISS needs a Lima server)."""
    s = bliss_session
    camera = s.config.get("lima_simulator")
    camera.saving_frame_per_file = 2
    scan = s.loopscan(5, 0.01, camera, "diode")
    bscan = s.store.load_scan(scan.key)
    stream = bscan.streams["lima_simulator:image"]
    assert (stream.kind, stream.plugin) == ("array", "lima")
    lima = stream.info["lima_info"]
    assert lima["frame_per_file"] == 2 and lima["file_format"] == "hdf5"
    assert lima["file_path"] == str(Path(scan.images_path) / "lima_simulator_%04d.h5")
    assert lima["data_path"] == "/entry_0000/measurement/data"
    assert len(stream) == 5
    frames = stream[0:5]
    for i in range(5):
        assert np.array_equal(frames[i], camera.make_frame(scan.seed, i)), i
    refs = stream.get_references(slice(0, 5))
    assert [(Path(r.file_path).name, r.index) for r in refs] == [
        ("lima_simulator_0000.h5", 0), ("lima_simulator_0000.h5", 1),
        ("lima_simulator_0001.h5", 0), ("lima_simulator_0001.h5", 1),
        ("lima_simulator_0002.h5", 0)]


def test_native_stays_the_default(sim_session):
    assert sim_session.protocol == "native"
    scan = sim_session.loopscan(2, 0.01, "diode")
    assert scan.node.info["scan_nb"] == scan.scan_number


def test_info_frozen_while_running_comment_published_at_close(bliss_session, published):
    reader, seen = published
    s = bliss_session
    scan = s.timescan(0.01, "diode", run=False)
    scan.add_comment("before")
    scan.run_in_thread()
    deadline = time.monotonic() + 10
    while scan.key is None or reader.load_scan(scan.key).state.name != "STARTED":
        assert time.monotonic() < deadline, "scan not STARTED within 10 s"
        time.sleep(0.002)
    scan.add_comment("while running")
    scan.abort()
    assert scan.wait(10)
    by_state = dict(seen[scan.key])
    assert [c["message"] for c in by_state["PREPARED"]["comments"]] == ["before"]
    assert by_state["STARTED"]["comments"] == by_state["PREPARED"]["comments"]
    assert [c["message"] for c in by_state["CLOSED"]["comments"]] == ["before", "while running"]


def test_unknown_protocol_refused(bliss_url, data_dir):
    from nexus_writer.sim import SimSession

    with pytest.raises(ValueError, match="protocol must be one of native, blissdata"):
        SimSession(redis_url=bliss_url, base_path=data_dir, protocol="bliss")


def test_unprepared_redis_refused(redis_url, data_dir):
    from nexus_writer.sim import SimSession

    with pytest.raises(RuntimeError, match="not a blissdata Redis.*init_db=True"):
        SimSession(redis_url=redis_url, base_path=data_dir, protocol="blissdata")


@pytest.mark.parametrize("fixture, command", [
    ("dscan", lambda s: s.dscan("roby", -0.5, 0.5, 5, 0.01, "diode")),
    ("a2scan", lambda s: s.a2scan("roby", 0, 1, "robz", 0, 2, 5, 0.01, "diode", "diode2")),
    ("d2scan", lambda s: s.d2scan("roby", -0.5, 0.5, "robz", -1, 1, 4, 0.01, "diode")),
])
def test_motor_scans_as_bliss(bliss_session, published, fixture, command):
    """The recorded relative and two-motor scans (roby at 1, robz at 2 before them)."""
    reader, seen = published
    s = bliss_session
    s.config.get("roby").move(1.0)
    s.config.get("robz").move(2.0)
    scan = command(s)
    expected = load_fixture(fixture)
    bscan = compare_scan(expected, reader, seen, scan.key, s.scan_saving.filename)
    data = read_all(bscan)
    for motor in ("axis:roby", "axis:robz"):
        if motor in expected["info"]["channels"]:
            want = next(x["data"] for x in expected["streams"] if x["name"] == motor)
            assert np.allclose(data[motor], want, rtol=0, atol=1e-12), motor
    check_diode(data, scan.scan_number, "diode", len(data["timer:epoch"]))


def test_unsaved_ct_as_bliss(bliss_session, published):
    """``ct`` publishes no metadata categories, no plots (BLISS's ct is bare)."""
    reader, seen = published
    s = bliss_session
    scan = s.ct(0.01, "diode", "diode2", save=False)
    expected = load_fixture("ct")
    bscan = reader.load_scan(scan.key)
    assert [st for st, _ in seen[scan.key]] == [x["state"] for x in expected["states"]]
    for state, info in seen[scan.key]:
        assert set(info) == set(info_at(expected, state)), state
    assert bscan.path is None and bscan.info["name"] == f"_{scan.scan_number}_ct"
    want = {x["name"]: (x["plugin"], x["info"], x["encoding"]) for x in expected["streams"]}
    got = {n: (st.plugin, dict(st.info), dict(st.event_stream.encoding))
           for n, st in bscan.streams.items()}
    assert got == want
    assert chain_by_name(bscan.info) == chain_by_name(expected["info"])


def test_sampling_counters_as_bliss(bliss_session, published):
    """SAMPLES and STATS sampling counters (BLISS 2.4's names, variable-length samples)."""
    reader, seen = published
    s = bliss_session
    scan = s.loopscan(3, 0.05, "diode_samples", "diode_stats")
    bscan = compare_scan(load_fixture("loopscan_samples"), reader, seen, scan.key,
                         s.scan_saving.filename)
    data = read_all(bscan)
    prefix = "simulation_diode_sampling_controller:"
    rng_samples = device_rng(scan.scan_number, 0, "diode_samples")
    rng_stats = device_rng(scan.scan_number, 0, "diode_stats")
    for i in range(3):
        samples = rng_samples.uniform(0.0, 100.0, size=4).round(2)
        assert np.array_equal(data[prefix + "diode_samples_samples"][i], samples)
        assert data[prefix + "diode_samples"][i] == samples.mean()
        stats = rng_stats.uniform(0.0, 100.0, size=4).round(2)
        assert data[prefix + "diode_stats"][i] == stats.mean()
        assert data[prefix + "diode_stats_N"][i] == 4.0
        assert data[prefix + "diode_stats_p2v"][i] == stats.max() - stats.min()
        assert data[prefix + "diode_stats_var"][i] == stats.var()


class UnpluggedDiode(Counter):
    """A counter that fails at its third point."""

    def read(self, ctx, rng):
        if ctx.index == 2:
            raise OSError("diode unplugged")
        return {self.fullname: 1.0}


def test_failure_as_bliss(bliss_session, published):
    """A failing device: no STOPPED, CLOSED with end_reason FAILURE, streams sealed
    with the points before the failure (as BLISS when a scan fails)."""
    reader, seen = published
    s = bliss_session
    scan = s.loopscan(5, 0.01, UnpluggedDiode("broken"), run=False)
    with pytest.raises(OSError, match="unplugged"):
        scan.run()
    assert [st for st, _ in seen[scan.key]] == ["CREATED", "PREPARED", "STARTED", "CLOSED"]
    bscan = reader.load_scan(scan.key)
    assert bscan.info["end_reason"] == "FAILURE" and "end_time" in bscan.info
    assert "positioners_end" in bscan.info["positioners"]
    assert all(st.is_sealed() for st in bscan.streams.values())
    assert {name: len(points) for name, points in read_all(bscan).items()} == {
        "timer:elapsed_time": 2, "timer:epoch": 2, "simulation_counter_controller:broken": 2}
