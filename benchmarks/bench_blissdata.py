#!/usr/bin/env python
"""This writer against ESRF's blisswriter 3.0.0 on the same BLISS 2.x (blissdata) scans.

The same scans are published twice through blissdata's producer API into the same
Valkey (RedisJSON + RediSearch, flushed in between), once for each writer, each
writer running in its own process and listening before the first scan:

* ours: ``nexus-writer write SESSION --protocol blissdata`` (this checkout);
* blisswriter: ``blisswriter run URL`` (its ``PollingWritingService``) in its own
  virtual environment (``--bw-venv``, made with ``pip install blisswriter==3.0.0`` when
  missing), wrapped to print each scan's state changes with a timestamp.

Every scan carries stand-in ``h5maps`` (blissdata's h5map model: groups, stream
datasets, soft links) so that blisswriter writes it at all; ours honours them too,
so both write the same layout.  Streams are ``hdf5_fallback`` streams whose
``data_path`` is the dataset the map puts them in.

Cases (``--cases``, default all; ``--scale`` multiplies the points):

  scalars  64 float64 scalar streams x 100 000 points, 500 points per send every 50 ms
  mca      4 uint32 (4096,) streams x 20 000 points, 50 points per send every 50 ms
  short    500 scans of 10 points (3 scalar streams), one point per send, back to back

Figures per case and writer: time from the scan's last point to the writer's final
state (p50 / max over the scans), the time from a point's publication to its
visibility in the file (p50 / p99, read by a separate process polling the file
every 20 ms without HDF5 file locks, first stream of the first scan), end-to-end
throughput (bytes published / time from the first point to the last final state),
peak RSS and CPU time (user + system, start-up included) of the writer process;
then the ratio ours / blisswriter.  Nothing here fails: it prints figures
(``--json FILE`` writes them too).

    .venv/bin/python benchmarks/bench_blissdata.py
    .venv/bin/python benchmarks/bench_blissdata.py --scale 0.1 --cases scalars,short
    BENCH_LOG=debug .venv/bin/python benchmarks/bench_blissdata.py --writers ours

(``BENCH_LOG`` is our writer's ``--log`` level; its log is in the data folder.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from _common import MIB, cpu_model
from blissdata.redis_engine.store import DataStore
from blissdata.streams.hdf5_fallback import Hdf5BackedStream

from nexus_writer.data.saving import FINAL_STATES, reports
from nexus_writer.data.server import BlissdataServer
from nexus_writer.writer.blissdata_source import record_key

SESSION = "bench_session"
ROOT = Path(__file__).resolve().parent.parent

#: Runs inside blisswriter's own environment: its standalone service, each scan's
#: status changes printed as JSON lines (key, state, epoch time).
BW_DRIVER = r"""
import json, sys, threading, time
from blisswriter import scan_writer, writing_service
lock = threading.Lock()
def say(**kw):
    with lock:
        print(json.dumps(dict(kw, t=time.time())), flush=True)
orig = writing_service.BaseWritingService._process_scan
def process(self, scan, status):
    orig_set = status.set_state
    def set_state(state, msg=None):
        orig_set(state, msg)
        say(key=scan.key, state=state.name, msg=msg)
    status.set_state = set_state
    return orig(self, scan, status)
writing_service.BaseWritingService._process_scan = process
service = writing_service.PollingWritingService(redis_url=sys.argv[1])
threading.Thread(target=lambda: (sys.stdin.read(), service.stop()), daemon=True).start()
say(state="LISTENING")
service.run()
service.close()
"""

#: Polls one dataset's length in a file (no HDF5 lock) and prints each change.
READER = r"""
import json, sys, time, h5py, hdf5plugin
path, dset = sys.argv[1], sys.argv[2]
last = -1
while True:
    try:
        with h5py.File(path, "r", locking=False) as f:
            n = f[dset].shape[0] if dset in f else 0
    except Exception:
        n = last
    if n != last and n >= 0:
        print(json.dumps({"t": time.time(), "n": n}), flush=True)
        last = n
    time.sleep(0.02)
"""


@dataclass
class Case:
    name: str
    scans: int
    streams: list[tuple[str, str, tuple[int, ...]]]  # name, dtype, point shape
    points: int
    batch: int
    period: float

    def nbytes(self) -> int:
        per_point = sum(np.dtype(d).itemsize * int(np.prod(s)) for _, d, s in self.streams)
        return per_point * self.points * self.scans


def cases(scale: float) -> dict[str, Case]:
    return {
        "scalars": Case("scalars", 1, [(f"c{i:02d}:value", "float64", ()) for i in range(64)],
                        max(1000, int(100_000 * scale)), 500, 0.05),
        "mca": Case("mca", 1, [(f"mca{i}:spectrum", "uint32", (4096,)) for i in range(4)],
                    max(100, int(20_000 * scale)), 50, 0.05),
        "short": Case("short", max(10, int(500 * scale)),
                      [("timer:elapsed_time", "float64", ()), ("diode:value", "float64", ()),
                       ("diode2:value", "float64", ())], 10, 1, 0.0),
    }


# -- the producer ------------------------------------------------------------------
def _device(stream: str) -> str:
    return stream.split(":")[0]


def h5map(number: int, filename: str, case: Case, title: str) -> dict[str, Any]:
    """A stand-in layout in blissdata's h5map model, as BLISS's mapping module makes."""
    entry = f"{number}.1"
    instrument: dict[str, Any] = {}
    measurement: dict[str, Any] = {}
    for name, _, _ in case.streams:
        dev = _device(name)
        instrument[dev] = {"type": "group", "attributes": {"NX_class": "NXdetector"},
                           "children": {"data": {"type": "stream", "stream": name}}}
        measurement[dev] = {"type": "soft_link",
                            "target_path": f"/{entry}/instrument/{dev}/data"}
    first = _device(case.streams[0][0])
    plot = {"type": "group",
            "attributes": {"NX_class": "NXdata", "signal": "data"},
            "children": {"data": {"type": "soft_link",
                                  "target_path": f"/{entry}/instrument/{first}/data"}}}
    return {filename: {"type": "group", "attributes": {
        "NX_class": "NXroot", "creator": "stand-in h5map generator (benchmark)",
        "default": entry}, "children": {entry: {
            "type": "group", "attributes": {"NX_class": "NXentry", "default": "plot0D"},
            "children": {"title": title,
                         "instrument": {"type": "group",
                                        "attributes": {"NX_class": "NXinstrument"},
                                        "children": instrument},
                         "measurement": {"type": "group",
                                         "attributes": {"NX_class": "NXcollection"},
                                         "children": measurement},
                         "plot0D": plot}}}}}


def scan_info(number: int, filename: str, case: Case) -> dict[str, Any]:
    title = f"loopscan {case.points} 0.01"
    scalars = [n for n, _, s in case.streams if not s]
    spectra = [n for n, _, s in case.streams if s]
    return {
        "type": "loopscan", "save": True, "npoints": case.points, "count_time": 0.01,
        "title": title, "session_name": SESSION, "user_name": "bench",
        "data_writer": "external", "data_policy": "None", "publisher": "bliss",
        "publisher_version": "2.4.0", "scan_nb": number, "name": f"{number}_loopscan",
        "filename": filename, "start_time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "acquisition_chain": {"timer": {"master": {"scalars": [], "spectra": [],
                                                   "images": []},
                                        "scalars": scalars, "spectra": spectra,
                                        "images": []}},
        "channels": {n: {"display_name": _device(n), "dim": len(s)}
                     for n, _, s in case.streams},
        "h5maps": h5map(number, filename, case, title),
    }


@dataclass
class Published:
    key: str
    first_send: float
    last_send: float
    sent_at: list[tuple[int, float]]  # (points published in the first stream, time)


def publish(url: str, case: Case, number: int, filename: str) -> Published:
    ds = DataStore(url)
    identity = {"name": "loopscan", "number": number, "data_policy": "None",
                "session": SESSION, "path": filename}
    info = scan_info(number, filename, case)
    scan = ds.create_scan(identity, info=info)
    writers = []
    for name, dtype, shape in case.streams:
        definition = Hdf5BackedStream.make_definition(
            name, filename, f"{number}.1/instrument/{_device(name)}/data", dtype, shape)
        writers.append(scan.create_stream(definition))
    scan.prepare()
    scan.start()
    rng = np.random.default_rng(number)
    blocks = {name: (rng.random((case.batch, *shape)) * 1000).astype(dtype)
              for name, dtype, shape in case.streams}
    sent_at: list[tuple[int, float]] = []
    first = time.time()
    done = 0
    next_at = time.monotonic()
    while done < case.points:
        n = min(case.batch, case.points - done)
        for w, (name, _, _) in zip(writers, case.streams):
            w.send(blocks[name][:n] if n > 1 or case.batch > 1 else blocks[name][0])
        done += n
        sent_at.append((done, time.time()))
        if case.period:
            next_at += case.period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    last = time.time()
    for w in writers:
        w.seal()
    scan.stop()
    scan.info = dict(info, end_time=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                     end_reason="SUCCESS")
    scan.close()
    return Published(scan.key, first, last, sent_at)


# -- the writers ---------------------------------------------------------------------
def proc_cpu_s(pid: int) -> float | None:
    """CPU time (user + system) the process used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


class Writer:
    name = ""

    def start(self, url: str, log: Path) -> None: ...

    def final_times(self, keys: list[str], timeout: float) -> dict[str, float]: ...

    def stop(self) -> None: ...

    proc: subprocess.Popen | None = None


class Ours(Writer):
    name = "ours"

    def start(self, url: str, log: Path) -> None:
        self.url = url
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nexus_writer.cli.main", "write", SESSION, "--protocol",
             "blissdata", "--redis", url, "--no-live", "--log",
             os.environ.get("BENCH_LOG", "warning")],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        from nexus_writer.data import DataStore as NativeStore
        from nexus_writer.data.saving import writer_present

        self._store = NativeStore(url)
        deadline = time.monotonic() + 60
        while writer_present(self._store, SESSION) is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"our writer did not start; see {log}")
            time.sleep(0.05)

    def final_times(self, keys: list[str], timeout: float) -> dict[str, float]:
        out: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        client = self._store.redis
        while len(out) < len(keys) and time.monotonic() < deadline:
            for key in keys:
                if key in out:
                    continue
                for r_id, fields in client.xrange(f"{record_key(key)}:saving"):
                    if fields.get(b"state", b"").decode() in FINAL_STATES:
                        out[key] = int(r_id.split(b"-")[0]) / 1000.0
            time.sleep(0.01)
        states = {k: [r.state for r in reports(self._store, record_key(k))][-1:]
                  for k in keys[:3]}
        if len(out) < len(keys):
            print(f"  ours: {len(keys) - len(out)} scans without a final state; e.g. {states}")
        return out

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # as Ctrl-C; SIGINT is ignored in a background job
        self.proc.wait(120)
        self._log.close()
        self._store.close()


class Blisswriter(Writer):
    name = "blisswriter"

    def __init__(self, python: str):
        self.python = python
        self.events: list[dict[str, Any]] = []

    def start(self, url: str, log: Path) -> None:
        self._log = open(log, "w")
        self.proc = subprocess.Popen([self.python, "-c", BW_DRIVER, url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._listening = threading.Event()
        self._thread.start()
        if not self._listening.wait(120):
            raise RuntimeError(f"blisswriter did not start; see {log}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("state") == "LISTENING":
                self._listening.set()
            self.events.append(event)

    def final_times(self, keys: list[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = {e["key"]: e["t"] for e in list(self.events)
                    if e.get("state") in ("COMPLETE", "FAILED") and e.get("key") in keys}
            if len(done) == len(keys):
                break
            time.sleep(0.01)
        failed = [e for e in self.events if e.get("state") == "FAILED"]
        if failed:
            print(f"  blisswriter: {len(failed)} FAILED, e.g. {failed[0].get('msg')}")
        return {e["key"]: e["t"] for e in self.events
                if e.get("state") in ("COMPLETE", "FAILED") and e.get("key") in keys}

    def stop(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def blisswriter_python(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} with blisswriter 3.0.0 (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "blisswriter==3.0.0",
                        "redis<8"], check=True)
    return str(python)


# -- one run -------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def run_case(server: BlissdataServer, writer: Writer, case: Case, work: Path) -> dict:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    DataStore(server.url, init_db=True)
    data = work / f"{writer.name}_{case.name}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    writer.start(server.url, work / f"{writer.name}_{case.name}.log")
    filename = str(data / "dataset.h5")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, filename, f"1.1/instrument/{_device(case.streams[0][0])}"
         "/data"], stdout=subprocess.PIPE, text=True)
    seen: list[dict] = []

    def read_seen() -> None:
        assert reader.stdout is not None
        for line in reader.stdout:
            seen.append(json.loads(line))

    seen_thread = threading.Thread(target=read_seen, daemon=True)
    seen_thread.start()
    published: list[Published] = []
    try:
        for number in range(1, case.scans + 1):
            published.append(publish(server.url, case, number, filename))
        finals = writer.final_times([p.key for p in published], timeout=600)
        hwm = proc_hwm_kib(writer.proc.pid) if writer.proc else None
        cpu = proc_cpu_s(writer.proc.pid) if writer.proc else None
        # a writer whose file is unreadable while written shows its points at the end
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (seen and seen[-1]["n"] >= case.points):
            time.sleep(0.05)
    finally:
        reader.terminate()
        reader.wait(10)
        seen_thread.join(5)
        if reader.stdout is not None:
            reader.stdout.close()
        writer.stop()
    # visibility of the first scan's first stream: publication time -> first seen with n
    latencies = []
    for count, t_sent in published[0].sent_at:
        t_seen = next((s["t"] for s in seen if s["n"] >= count), None)
        if t_seen is not None:
            latencies.append(t_seen - t_sent)
    end_to_final = [finals[p.key] - p.last_send for p in published if p.key in finals]
    span = (max(finals.values()) - published[0].first_send) if finals else float("nan")
    return {
        "scans": case.scans, "finished": len(finals),
        "last_point_to_final_p50_s": percentile(end_to_final, 50),
        "last_point_to_final_max_s": max(end_to_final) if end_to_final else float("nan"),
        "visible_p50_s": percentile(latencies, 50) if case.scans == 1 else None,
        "visible_p99_s": percentile(latencies, 99) if case.scans == 1 else None,
        "visible_points": len(latencies),
        "throughput_mib_s": case.nbytes() / MIB / span if span == span else float("nan"),
        "peak_rss_mib": hwm / 1024 if hwm else None,
        "writer_cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="scalars,mca,short")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--writers", default="ours,blisswriter")
    parser.add_argument("--bw-venv", type=Path,
                        default=Path(tempfile.gettempdir()) / "nexus-writer-bench-blisswriter")
    parser.add_argument("--work", type=Path, default=None, help="data folder (temporary)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    all_cases = cases(args.scale)
    selected = [all_cases[c] for c in args.cases.split(",")]
    writers: list[Writer] = []
    for name in args.writers.split(","):
        writers.append(Ours() if name == "ours" else
                       Blisswriter(blisswriter_python(args.bw_venv)))
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-blissdata-"))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; scale {args.scale}; data in {work}")
    results: dict[str, dict[str, dict]] = {}
    with BlissdataServer(maxmemory="16gb") as server:
        for case in selected:
            print(f"\n== {case.name}: {case.scans} scan(s) x {len(case.streams)} streams x "
                  f"{case.points} points ({case.nbytes() / MIB:.0f} MiB)", flush=True)
            for writer in writers:
                r = run_case(server, writer, case, work)
                results.setdefault(case.name, {})[writer.name] = r
                print(f"  {writer.name:12s} " + ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in r.items()), flush=True)
            pair = results[case.name]
            if "ours" in pair and "blisswriter" in pair:
                ratios = {}
                for k, v in pair["ours"].items():
                    w = pair["blisswriter"].get(k)
                    if isinstance(v, float) and isinstance(w, float) and w:
                        ratios[k] = v / w
                print("  ratio ours/blisswriter: " + ", ".join(
                    f"{k}={v:.2f}" for k, v in ratios.items()))
                pair["ratio"] = ratios
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
