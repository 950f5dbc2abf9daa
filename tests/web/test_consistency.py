"""Readers in another process while a scan is written: reading the file directly
(no SWMR) sometimes meets a flush half-way; reading through the page's server, which
reads in the writer's own file thread, never does.  Both rates are printed (run with
``-s`` to see them) and the server's must be 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from ..writer.helpers import wait_written

FLUSH_PERIOD = float(os.environ.get("NXW_FLUSH_PERIOD", 0.05))

READER = r"""
import json, sys, time, urllib.error, urllib.parse, urllib.request
import h5py, numpy as np
mode, path, entry, base, seconds = sys.argv[1:6]
deadline = time.time() + float(seconds)

def direct():
    with h5py.File(path, "r", locking=False) as f:
        e = f[entry]
        diode = np.asarray(e["measurement/diode"][()])
        if "lima_simulator" in e["instrument"] and "data" not in e["instrument/lima_simulator"]:
            raise RuntimeError("camera group without its data")
        def touch(name, obj):  # what a browser of the file (h5web, silx) reads
            dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                obj.shape
        f.visititems(touch)
        frames = e["instrument/lima_simulator/data"]
        n = frames.shape[0]
        if n and int(frames[n - 1][0, 0]) != n - 1:  # the simulator numbers its frames
            raise RuntimeError(f"frame {n - 1} reads as {int(frames[n - 1][0, 0])}")
        return diode

requests = 0

def get(route, **params):
    global requests
    requests += 1
    url = base + route + "?" + urllib.parse.urlencode(dict(params, file=path))
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()

def served():
    raw = get("h5grove/data/", path=f"/{entry}/measurement/diode", format="bin", dtype="safe")
    meta = json.loads(get("h5grove/meta/", path=f"/{entry}/instrument/lima_simulator"))
    if "data" not in {c["name"] for c in meta["children"]}:
        raise RuntimeError("camera group without its data")
    for name in json.loads(get("h5grove/paths/", path="/")):  # a browser of the file
        json.loads(get("h5grove/meta/", path=name))
    shape = json.loads(get("h5grove/meta/", path=f"/{entry}/instrument/lima_simulator/data"))
    n = shape["shape"][0]
    if n:
        pixel = json.loads(get("h5grove/data/", path=f"/{entry}/instrument/lima_simulator/data",
                               selection=f"{n - 1},0,0"))
        if int(pixel) != n - 1:
            raise RuntimeError(f"frame {n - 1} reads as {pixel}")
    json.loads(get("api/plot", entry=entry))
    return np.frombuffer(raw, dtype=np.float64)

read = direct if mode == "direct" else served
while time.time() < deadline:
    try:
        diode = read()
        print(json.dumps({"ok": True, "diode": diode.tobytes().hex(), "requests": requests}),
              flush=True)
    except urllib.error.HTTPError as e:
        print(json.dumps({"ok": False, "error": f"HTTP {e.code}: {e.read()[:200]!r}"}), flush=True)
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
    time.sleep(0.01)
"""


def _run_readers(web_factory, sim_session, seconds: float):
    writer, server, _ = web_factory(flush_period=FLUSH_PERIOD)
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 5  # the VDS grows over many files, as in test_live
    sim_session.time_scale = 1.0
    first = sim_session.loopscan(1, 0.01, "diode", camera)  # the file and its first entry
    wait_written(writer, [first])
    scan = sim_session.loopscan(300, 0.01, "diode", camera, run=False)
    entry = f"{scan.scan_number}.1"
    path = sim_session.scan_saving.filename
    scan.run_in_thread()
    while scan.key is None or not any(w.source.key == scan.key and w.entries
                                      for w in writer.scans()):
        scan.wait(0.01)
    readers = {mode: subprocess.Popen(
        [sys.executable, "-c", READER, mode, path, entry, server.url, str(seconds)],
        stdout=subprocess.PIPE, text=True, cwd="/") for mode in ("direct", "served")}
    outputs = {mode: p.communicate(timeout=seconds + 60)[0] for mode, p in readers.items()}
    assert scan.wait(60)
    wait_written(writer, [scan])
    diode = next(n for n in scan.node.nodes() if n.name.endswith(":diode")).get()
    results = {}
    for mode, out in outputs.items():
        samples = [json.loads(line) for line in out.splitlines()]
        errors = [s["error"] for s in samples if not s["ok"]]
        wrong = 0
        for s in samples:
            if s["ok"]:
                seen = np.frombuffer(bytes.fromhex(s["diode"]), dtype=np.float64)
                wrong += seen.tobytes() != diode[:len(seen)].tobytes()
        requests = max((s.get("requests", 0) for s in samples), default=0)
        results[mode] = (len(samples), errors, wrong, requests)
    return results


def test_served_reads_never_meet_a_half_flushed_file(web_factory, sim_session):
    seconds = float(os.environ.get("NXW_READ_SECONDS", 4))
    results = _run_readers(web_factory, sim_session, seconds)
    for mode, (n, errors, wrong, requests) in results.items():
        print(f"{mode} reads of the whole file during the scan: {n}, failed {len(errors)} "
              f"({100 * len(errors) / max(1, n):.1f} %), wrong data {wrong}"
              + (f", {requests} HTTP requests" if requests else "")
              + f"; first errors: {errors[:3]}")
    n, errors, wrong, requests = results["served"]
    assert n >= 2 and requests >= 50, f"only {n} reads ({requests} requests) through the server"
    assert errors == [] and wrong == 0, f"{len(errors)} failed reads of {n}: {errors[:5]}"
    n, errors, wrong, _ = results["direct"]
    assert n >= 10 and wrong == 0  # a direct read fails (retried), it never shows wrong data
