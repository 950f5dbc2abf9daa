"""The seed's list of scans (``run_some_scans``) and the example script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py

from nexus_writer.sim import run_some_scans

ROOT = Path(__file__).resolve().parents[2]
D = "simulation_diode_sampling_controller"
T = ["timer:elapsed_time", "timer:epoch"]
MCA = ["simu1:spectrum_det0"] + [f"simu1:{s}_det0" for s in (
    "realtime", "livetime", "triggers", "events", "icr", "ocr", "deadtime")]

#: (title, end reason, {node name: points}) of each scan, in order; None: not checked.
EXPECTED = [
    ("d2scan roby -1 1 robz -0.5 0.5 10 0.1", "SUCCESS",
     dict.fromkeys(["axis:roby", "axis:robz", *T, "simulation_counter_controller:sim_ct_gauss"],
                   11)),
    ("loopscan 5 0.1", "SUCCESS", dict.fromkeys([*T, "lima_simulator:image", f"{D}:diode"], 5)),
    ("ascan robu 0 1 5 0.1", "SUCCESS", dict.fromkeys(["axis:robu", *T, *MCA], 6)),
    ("multi_top_master_scan 2 0.1 50 0.01", "SUCCESS",
     {**dict.fromkeys([*T, f"{D}:diode"], 2),
      **dict.fromkeys(["timer2:elapsed_time", "timer2:epoch", "lima_simulator:image",
                       f"{D}:diode2"], 50)}),
    *[("loopscan 10 0.05", "SUCCESS", dict.fromkeys([*T, f"{D}:diode"], 10))] * 3,
    ("timescan 0.1", "USER_ABORT", dict.fromkeys([*T, f"{D}:diode", f"{D}:diode2"], None)),
    ("loopscan 10 0.1", "SUCCESS",
     dict.fromkeys([*T, f"{D}:diode9", f"{D}:diode9_mean"], 10)),
    ("ascan soft_axis 0 5 5 0.1", "SUCCESS",
     dict.fromkeys(["axis:soft_axis", *T, "simulation_counter_controller:sim_var_samples"], 6)),
]


def test_run_some_scans(session):
    scans = run_some_scans(session, abort_after=0.05)
    assert [s.scan_number for s in scans] == list(range(1, 11))
    for scan, (title, reason, expected) in zip(scans, EXPECTED, strict=True):
        node = scan.node
        assert (node.info["title"], node.end_reason) == (title, reason)
        counts = {n.name: n.count() for n in node.nodes()}
        assert list(counts) == list(expected), title
        for name, n in expected.items():
            assert n is None or counts[name] == n, (title, name, counts[name])
    timescan = scans[7]
    assert len({n.count() for n in timescan.node.nodes()}) == 1
    assert timescan.node.nodes()[0].count() >= 1
    # 2 frames per file: 5 frames in 3 files, 50 frames in 25 files
    assert len(list(Path(scans[1].images_path).iterdir())) == 3
    assert len(list(Path(scans[3].images_path).iterdir())) == 25
    with h5py.File(Path(scans[1].images_path) / "lima_simulator_0002.h5", "r") as f:
        assert f["/entry_0000/measurement/data"].shape == (1, 64, 64)
    assert scans[0].node.info["_display_extra"]["plotselect"] == [
        "simulation_counter_controller:sim_ct_gauss"]
    assert scans[0].node.info["comments"][0]["message"]


def test_run_some_scans_extra(session):
    scans = run_some_scans(session, extra=True, abort_after=0.01)
    types = [s.scan_info["type"] for s in scans[10:]]
    assert types == ["amesh", "ct", "sequence", "loopscan", "ascan"]
    amesh = scans[10]
    assert sorted(p.suffix for p in Path(amesh.images_path).iterdir()) == [".edf"] * 4
    assert all(s.end_reason == "SUCCESS" for s in scans[10:])


def test_example_script(redis_url, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "examples" / "some_scans.py"),
         "--redis", redis_url, "--base-path", str(tmp_path), "--time-scale", "0"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("SUCCESS" in line for line in lines) == 9
    assert sum("USER_ABORT" in line for line in lines) == 1
    assert str(tmp_path) in lines[-1]
