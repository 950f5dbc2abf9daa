"""``nexus-writer demo``, README's first command, run as a user runs it: the console
script in a fresh directory, no argument, its own embedded redis-server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401 - detector data is compressed
import pytest

from nexus_writer.nexus.validate import validate_file
from tests.writer.helpers import decode

BIN = os.path.dirname(sys.executable)
# the seed's scans (sim.some_scans with extra=True): 15 scans, scan 4 with two top masters
ENTRIES = sorted([f"{n}.1" for n in range(1, 16)] + ["4.2"])
# ESRF layout of the simulated session's default saving, below --base-path (./demo_data)
DATASET = "demo_data/testproposal/id00/demo_session/RAW_DATA/sample/sample_0001/sample_0001.h5"


@pytest.mark.timeout(300)
def test_demo_as_readme_runs_it(tmp_path):
    out = subprocess.run([os.path.join(BIN, "nexus-writer"), "demo"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]

    # the embedded server it announced is gone with it
    m = re.search(r"embedded redis-server at redis://127\.0\.0\.1:(\d+)", out.stderr)
    assert m, out.stderr[-3000:]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5).close()

    # summary: every scan written, one file, its entries, points and NeXus check
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"15 scans published, written in \d+\.\d s: 15 SUCCEEDED",
                        lines[1]), out.stdout
    path = str(tmp_path / DATASET)
    assert lines[2] == path, out.stdout
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.h5")
                   if p.parent.name.startswith("sample_"))
    assert files == [DATASET]
    with h5py.File(path, "r", locking=False) as f:
        assert sorted(f) == ENTRIES
        points = 0
        for name in ENTRIES:
            entry = f[name]
            assert decode(entry["writer/status"][()]) == "SUCCEEDED", name
            assert "end_time" in entry, name
            for dset in entry["measurement"].values():
                if isinstance(dset, h5py.Dataset) and dset.ndim >= 1:
                    points += dset.shape[0]
        default = decode(f.attrs["default"])
        assert default in ENTRIES
        camera = f["2.1/instrument/lima_simulator/data"]
        assert camera.is_virtual and camera.shape[0] == 5
    report = validate_file(path)
    assert report.errors == 0 and report.warnings == 0, report.messages
    assert re.fullmatch(rf"    16 entries, {points} points; NeXus check: 0 errors, 0 warnings,"
                        r" default plot /\S+", lines[3]), out.stdout
    assert lines[4].startswith("open with: "), out.stdout
    assert len(lines) == 5, out.stdout

    # the camera's own files beside the dataset file (linked above as a VDS)
    assert sorted(p.name for p in (tmp_path / DATASET).parent.glob("scan0002/*.h5")) == \
        [f"lima_simulator_{i:04d}.h5" for i in range(3)]  # 5 frames, 2 per file


@pytest.mark.timeout(120)
def test_demo_whose_scans_all_fail_says_why_and_exits_1(tmp_path):
    """Every scan refused (not enough disk space for the option given): the summary
    names each failure and its cause, and the exit code is 1."""
    out = subprocess.run([os.path.join(BIN, "nexus-writer"), "demo", "--time-scale", "0",
                          "--required_disk_space", "1000000000"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=100)
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "error:" not in out.stderr, out.stderr[-3000:]
    failed = [line for line in out.stdout.splitlines() if line.startswith("  FAILED scan ")]
    numbers = []
    for line in failed:  # in the order the writer took them (parallel scans: any order)
        m = re.fullmatch(r"  FAILED scan (\d+): scan (\d+) of session 'demo_session': only "
                         r"\d+ MB free in \S+, 1e\+09 MB required \(--required_disk_space\)",
                         line)
        assert m and m.group(1) == m.group(2), line
        numbers.append(int(m.group(1)))
    assert sorted(numbers) == list(range(1, 16)), out.stdout
    assert re.search(r"^15 scans published, written in \d+\.\d s: 15 FAILED$", out.stdout,
                     re.MULTILINE), out.stdout
