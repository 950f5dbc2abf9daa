"""Live: another process reads the file while the scan runs and sees the points
published so far, within the flush period (plus a margin for a loaded machine)."""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import threading
import time

import numpy as np

from tests.waiting import wait_for

from .helpers import check_scan, wait_written

FLUSH_PERIOD = 0.2
#: Scheduling slack on a busy 2-core machine; the writer's own bound is the flush period.
MARGIN = 0.8

READER = r"""
import json, os, sys, time
import h5py, numpy as np
path, entry, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
torn = 0  # reads that caught the file in the middle of a flush (not SWMR): retried
while time.time() < deadline:
    t0 = time.time()
    sample = {"t0": t0}
    try:
        with h5py.File(path, "r", locking=False) as f:
            e = f.get(entry)
            if e is not None:
                sample["status"] = e["writer/status"][()].decode()
                sample["end_time"] = "end_time" in e
                d = e.get("measurement/diode")
                sample["diode"] = None if d is None else np.asarray(d[()]).tobytes().hex()
                c = e.get("instrument/lima_simulator/data")
                if c is None and "lima_simulator" in e["instrument"]:
                    raise RuntimeError("camera group without its data: torn read")
                sample["frames"] = "missing" if c is None else c.shape[0]
                if c is not None and c.shape[0]:
                    sample["last_frame_pixel"] = int(c[c.shape[0] - 1][0, 0])
    except FileNotFoundError:
        pass
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        if os.path.exists(path):
            torn += 1
            time.sleep(0.005)
            continue
    sample["t1"] = time.time()
    sample["torn"] = torn
    print(json.dumps(sample), flush=True)
    if sample.get("end_time") and sample.get("status") != "RUNNING":
        break
    time.sleep(0.03)
"""


class PublishedLog:
    """(time, points published) of some nodes, sampled from Redis in a thread."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.times: list[float] = []
        self.counts: list[dict[str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            counts = {n.name: n.count() for n in self.nodes}
            self.times.append(time.time())
            self.counts.append(counts)
            time.sleep(0.01)

    def at(self, t: float, name: str) -> int:
        """Points published at time ``t`` at least (0 before the first sample)."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.counts[i][name] if i >= 0 else 0

    def after(self, t: float, name: str) -> int | None:
        """Points published at time ``t`` at most (None after the last sample)."""
        i = bisect.bisect_left(self.times, t)
        return self.counts[i][name] if i < len(self.times) else None


def test_live_reader_sees_points_during_scan(sim_session, writer_factory, store):
    writer = writer_factory(flush_period=FLUSH_PERIOD)
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 5
    sim_session.time_scale = 1.0
    scan = sim_session.loopscan(60, 0.05, "diode", camera, run=False)
    entry = f"{scan.scan_number}.1"
    reader = subprocess.Popen([sys.executable, "-c", READER, scan.filename, entry, "40"],
                              stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        scan.run_in_thread()
        wait_for(lambda: scan.key is not None and len(scan.node.nodes()) >= 4, 10,
                 "the scan's 4 channels in Redis", interval=0.005)
        nodes = {n.name: n for n in scan.node.nodes()}
        diode_node = nodes["simulation_diode_sampling_controller:diode"]
        log = PublishedLog([diode_node, nodes["lima_simulator:image"]])
        assert scan.wait(30)
        out, _ = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    log.stop.set()
    log.thread.join()
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="vds")
    samples = [json.loads(line) for line in out.splitlines()]
    # a reader without SWMR may catch a flush half-way and must retry; that stays rare
    torn = samples[-1]["torn"]
    assert torn <= len(samples) // 3, f"{torn} torn reads for {len(samples)} good ones"
    published = diode_node.get()
    info = scan.node.info
    ended = info["end_timestamp"]
    started = info["start_timestamp"]
    running = [s for s in samples if "status" in s and s["t1"] < ended]
    assert len(running) >= 10, f"only {len(running)} reads while the scan ran"
    seen = set()
    for s in samples:
        if "status" not in s:
            continue
        diode = np.frombuffer(bytes.fromhex(s["diode"]), dtype=np.float64) if s["diode"] \
            else np.empty(0)
        # never more than published, and exactly what was published (bit-exact)
        most = log.after(s["t1"], diode_node.name)
        assert most is None or len(diode) <= most
        assert diode.tobytes() == published[:len(diode)].tobytes()
        # everything published a flush period ago is there
        assert len(diode) >= log.at(s["t0"] - FLUSH_PERIOD - MARGIN, diode_node.name), s
        frames = s["frames"] if s["frames"] != "missing" else 0
        assert frames >= log.at(s["t0"] - FLUSH_PERIOD - MARGIN, "lima_simulator:image"), s
        if frames:
            assert s["last_frame_pixel"] == frames - 1  # the VDS maps the right frame
        if s["t1"] < ended:
            assert s["status"] == "RUNNING" or (s["status"] == "STARTING"
                                                and s["t0"] < started + FLUSH_PERIOD + MARGIN)
            assert not s["end_time"], "end_time written before the end of the scan"
        if s["end_time"]:
            assert s["status"] == "SUCCEEDED" and len(diode) == 60
        seen.add(len(diode))
    # the reader saw the scan grow, not just its start and its end
    assert len([n for n in seen if 0 < n < 60]) >= 5, sorted(seen)
    assert samples[-1].get("end_time") and samples[-1]["status"] == "SUCCEEDED"
    # the entry appeared soon after the start
    first = next(s for s in samples if "status" in s)
    assert first["t0"] < started + FLUSH_PERIOD + MARGIN + 0.5
