"""``nexus-writer demo --protocol blissdata``: its own valkey-server, the simulated
session publishing as BLISS 2.4, the writer's blissdata source, in one process."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401 - detector data is compressed
import pytest

from nexus_writer.nexus.validate import validate_file

BIN = os.path.dirname(sys.executable)


@pytest.mark.timeout(300)
def test_demo_blissdata(tmp_path):
    out = subprocess.run(
        [os.path.join(BIN, "nexus-writer"), "demo", "--protocol", "blissdata",
         "--time-scale", "0", "--no-live"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "embedded valkey-server (blissdata)" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "15 scans published" in out.stdout and ": 15 SUCCEEDED" in out.stdout, out.stdout
    files = sorted(p for p in tmp_path.rglob("*.h5") if p.parent.name.startswith("sample_"))
    assert len(files) == 1, files
    report = validate_file(str(files[0]))
    assert report.ok and "0 errors, 0 warnings" in report.summary(), report.messages
    with h5py.File(files[0], "r", locking=False) as f:
        # BLISS 2.4's simu1 (4 elements) at its hdf5_fallback data path, and the
        # sampling counters' data paths (blisswriter's device names)
        assert f["3.1/instrument/simu1_det3/spectrum"].shape == (6, 1024)
        assert f["3.1/instrument/simu1_det3/spectrum"].dtype == "uint32"
        assert f["1.1/instrument/sim_ct_gauss/data"].shape == (11,)
