"""Live: another process reads the file while the scan runs.  Every point the writer
recorded as durable (``saving_progress``, after each flush: docs/protocol.md) is in the
file, bit-exact, never more than was published, with status RUNNING and no
``end_time``; camera frames appear through the VDS while the scan runs; at the end
SUCCEEDED with ``end_time``.

The producer publishes step by step and waits for the writer's state between steps:
the test holds no timing figure (speed belongs to the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nexus_writer.data.saving import SavingReporter
from tests.waiting import wait_for

from .helpers import check_scan, manual_scan_info, wait_written

STEPS, POINTS, FRAMES = 4, 5, 2  # per step: 5 points of each counter, one camera file
FRAME = (16, 24)

#: Reads the entry once per line on stdin, answers one JSON line.  The file is read
#: without a lock and without SWMR: a read that catches a flush half-way is retried.
READER = r"""
import json, sys, time
import h5py, hdf5plugin, numpy as np
path, entry = sys.argv[1], sys.argv[2]
for _ in sys.stdin:
    for torn in range(200):
        try:
            with h5py.File(path, "r", locking=False) as f:
                e = f[entry]
                c = e["instrument/cam/data"]
                out = {"status": e["writer/status"][()].decode(), "end_time": "end_time" in e,
                       "diode": np.asarray(e["measurement/diode"][()]).tobytes().hex(),
                       "frames": c.shape[0],
                       "pixels": [int(c[i][0, 0]) for i in range(c.shape[0])], "torn": torn}
            break
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            out = {"error": repr(exc), "torn": torn}
            time.sleep(0.01)
    print(json.dumps(out), flush=True)
"""


class Reader:
    """The reader process: :meth:`read` is one read of the entry, as another program
    would do it."""

    def __init__(self, path: str, entry: str):
        self.proc = subprocess.Popen([sys.executable, "-c", READER, path, entry],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd="/")

    def read(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("read\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the reader died (exit code {self.proc.poll()})"
        sample = json.loads(line)
        assert "error" not in sample, f"no consistent read in 200 tries: {sample}"
        sample["diode"] = np.frombuffer(bytes.fromhex(sample["diode"]), dtype=np.float64)
        return sample

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def _camera_file(path: Path, first: int, n: int) -> None:
    """A camera's file of ``n`` frames, frame ``i`` filled with the value ``i``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack([np.full(FRAME, i, dtype=np.uint16) for i in range(first, first + n)])
    with h5py.File(path, "w") as f:
        f.create_dataset("entry_0000/measurement/data", data=frames)


def test_live_reader_sees_durable_points_during_scan(store, data_dir, writer_factory):
    writer = writer_factory(flush_period=0.2)
    filename = str(data_dir / "live.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "dim": 0, "unit": "s"},
                "ctrl:diode": {"device": "diode", "dim": 0, "unit": ""},
                "cam:image": {"device": "cam", "dim": 2, "unit": ""}}
    pub = store.create_scan("test_session", manual_scan_info(
        "test_session", 1, filename, channels, npoints=STEPS * POINTS))
    timer = pub.create_channel("timer:elapsed_time", "float64", (), "s", device="timer")
    diode = pub.create_channel("ctrl:diode", "float64", (), "", device="diode")
    template = str(data_dir / "scan0001" / "cam_{file_index:04d}.h5")
    camera = pub.create_lima_channel("cam:image", "uint16", FRAME, template,
                                     "/entry_0000/measurement/data", "hdf5", FRAMES,
                                     device="cam")
    pub.start()
    assert pub.writer_ready(timeout=10).state == "READY"
    progress = SavingReporter(store, pub.key).saved_progress
    values = np.random.default_rng(5).normal(0, 100, STEPS * POINTS)
    reader = Reader(filename, "1.1")
    grew = []
    try:
        for step in range(1, STEPS + 1):
            points, frames = step * POINTS, step * FRAMES
            timer.send(np.arange(points - POINTS, points) * 0.1)
            diode.send(values[points - POINTS:points])
            _camera_file(Path(template.format(file_index=step - 1)), frames - FRAMES, FRAMES)
            camera.send(frames - 1)
            durable = wait_for(
                lambda p=points: (got := progress()).get("ctrl:diode", 0) >= p and got,
                30, f"the writer's durable progress of {points} diode points",
                lambda: f"progress: {progress()}")
            seen = reader.read()
            # every durable point is readable, bit-exact, and nothing beyond the published
            assert len(seen["diode"]) >= durable["ctrl:diode"] == points, seen
            assert seen["diode"].tobytes() == values[:len(seen["diode"])].tobytes()
            assert seen["status"] == "RUNNING" and not seen["end_time"], seen
            grew.append(len(seen["diode"]))
            # the camera's frames appear while the scan runs, each the right frame
            seen = wait_for(lambda f=frames: (s := reader.read())["frames"] >= f and s, 30,
                            f"{frames} camera frames visible to the reader")
            assert seen["frames"] == frames and seen["pixels"] == list(range(frames)), seen
            assert seen["status"] == "RUNNING" and not seen["end_time"], seen
        assert grew == [s * POINTS for s in range(1, STEPS + 1)]
        pub.end("SUCCESS")
        assert pub.wait_saved(timeout=30).state == "SUCCEEDED"
        final = reader.read()
    finally:
        reader.close()
    assert final["status"] == "SUCCEEDED" and final["end_time"], final
    assert final["diode"].tobytes() == values.tobytes()
    assert final["pixels"] == list(range(STEPS * FRAMES))
    [sw] = wait_written(writer, [pub])
    check_scan(store, sw, camera="vds")
