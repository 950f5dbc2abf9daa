#!/usr/bin/env python
"""Soak test of ``NexusWriterService``: several sessions scanning at once while
session writers are killed (``kill -9``) at random moments.

The script starts its own redis-server and a ``nexus-writer service run``
subprocess (temporary config, one session per producer, ``--http 0``).  Then:

* ``--sessions`` producers (threads, one :class:`SimSession` each) run ``--scans``
  scans each, back to back, a seeded random mix of loopscans and ascans with
  scalars, an MCA (1024-channel spectra and 7 statistics) and a camera (64x64
  uint16 frames, 10 per HDF5 file, linked by VDS), plus ``ct`` and long scalar
  loopscans; ``--time-scale`` multiplies the count times (0.1 s per point nominal);
* a killer sends SIGKILL ``--kills`` times to the writer of a random session,
  each time after a random number of scans has ended (spread over the run) plus a
  random delay, so most kills land in the middle of scans; the service restarts
  the writer, which resumes what it was writing;
* a sampler reads the RSS of the writer processes (psutil) every 0.2 s.

At the end (all scans ended, the service stopped so every file is closed) every
scan is checked: exactly one final saving report, SUCCEEDED; every point of every
channel in the file bit-exact with what Redis holds (scalars and spectra against
``node.get()``, camera frames read through the VDS against the camera's own files),
``writer/status`` SUCCEEDED in each entry.

Printed figures: scans written, data lost (points missing or different; must be
0), scans not SUCCEEDED, unreadable files, latency from the end of a scan to its
SUCCEEDED report (Redis stream IDs of ``END_SCAN`` and of the report: both on the
Redis clock, exact to the millisecond), p50 / p99 / max over all scans, over the scans
a kill hit (their life overlaps a writer outage) and over the others; writer outage
per kill (kill -> new writer listening); peak RSS of one writer, of all writers and
of the service; writer restarts vs kills.  Exit code 1 when data was lost or a scan
was not SUCCEEDED.  The defaults (3 x 80 scans, 24 kills) take about 2 minutes on 2
cores.

    .venv/bin/python benchmarks/soak.py
    .venv/bin/python benchmarks/soak.py --sessions 3 --scans 20 --kills 12 --seed 2
    .venv/bin/python benchmarks/soak.py --json soak.json --keep /tmp/soak
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - readers of compressed data need the filters registered
import numpy as np
import psutil

from nexus_writer.data import DataStore
from nexus_writer.data.saving import FINAL_STATES, saving_key, writer_present
from nexus_writer.data.server import RedisServer
from nexus_writer.service import config as cfg
from nexus_writer.sim import SimSession
from nexus_writer.writer import WriterOptions
from nexus_writer.writer.plan import ScanPlan
from nexus_writer.writer.source import NodeInfo


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the service ---------------------------------------------------------------------
class Service:
    """``nexus-writer service run`` in a subprocess; its port parsed from its log."""

    def __init__(self, workdir: Path, redis_url: str, sessions: list[str], flush_period: float):
        self.config = workdir / "service.toml"
        self.logfile = workdir / "service.log"
        self.outfile = workdir / "service.out"
        cfg.save(cfg.ServiceConfig(redis=redis_url, sessions={
            s: cfg.SessionConfig(s, None, {"flush_period": flush_period}) for s in sessions}),
            self.config)
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> None:
        with open(self.outfile, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nexus_writer.cli.main", "service", "run", "--config",
                 str(self.config), "--http", "0", "--log", "info", "--logfile",
                 str(self.logfile)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited ({self.process.returncode}); see "
                                   f"{self.outfile}")
            text = self.logfile.read_text() if self.logfile.exists() else ""
            m = re.search(r"http://127\.0\.0\.1:(\d+)/status", text)
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        raise RuntimeError(f"the service did not start within {timeout} s")

    def status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/status"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def kill_if_running(self) -> None:
        """After a failure of the script: no service or writer left behind."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for proc in [psutil.Process(self.process.pid), *children]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.process.wait()

    def stop(self, timeout: float = 120.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
            return self.process.wait()


def listening_pid(service: Service, store: DataStore, session: str) -> int | None:
    """Pid of the session's writer when the service runs it and it beats in Redis."""
    try:
        process = service.status()["sessions"][session]["process"]
    except (OSError, KeyError, ValueError):
        return None
    beat = writer_present(store, session)
    if process.get("alive") and beat and int(beat["pid"]) == process["pid"]:
        return int(process["pid"])
    return None


# -- producers, killer, sampler -----------------------------------------------------
COUNTERS = ("diode", "diode2", "simu1", "lima_simulator")


class Producer(threading.Thread):
    """Runs ``n`` scans of a seeded random mix in one simulated session."""

    def __init__(self, name: str, redis_url: str, base: Path, n: int, time_scale: float,
                 seed: int, ended: "Counter"):
        super().__init__(name=f"producer-{name}", daemon=True)
        self.session = SimSession(name, redis_url=redis_url, base_path=base,
                                  time_scale=time_scale)
        camera = self.session.config.get("lima_simulator")
        camera.saving_frame_per_file = 10
        self.n = n
        self.rng = random.Random(seed)
        self.ended = ended
        self.scans: list[Any] = []
        self.error: BaseException | None = None

    def one_scan(self) -> Any:
        s, rng = self.session, self.rng
        kind = rng.random()
        if kind < 0.45:
            return s.loopscan(rng.randint(20, 150), 0.1, *COUNTERS)
        if kind < 0.8:
            motor = rng.choice(("roby", "robz"))
            return s.ascan(motor, 0, rng.uniform(0.5, 2), rng.randint(19, 99), 0.1, *COUNTERS)
        if kind < 0.9:
            return s.loopscan(rng.randint(300, 1000), 0.01, "diode", "diode2", "diode4")
        return s.ct(0.1, "diode", "simu1", "lima_simulator")

    def run(self) -> None:
        try:
            for _ in range(self.n):
                scan = self.one_scan()
                self.scans.append(scan)
                self.ended.add()
        except BaseException as e:  # noqa: BLE001 - reported by main
            self.error = e
        finally:
            self.ended.producer_done()


class Counter:
    """Scans ended so far, and producers finished, shared by threads."""

    def __init__(self, producers: int):
        self.value = 0
        self.running = producers
        self.cond = threading.Condition()

    def add(self) -> None:
        with self.cond:
            self.value += 1
            self.cond.notify_all()

    def producer_done(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify_all()

    def wait_for(self, n: int) -> bool:
        """Wait until ``n`` scans ended; False if the producers finished before."""
        with self.cond:
            self.cond.wait_for(lambda: self.value >= n or self.running == 0)
            return self.value >= n


class Killer(threading.Thread):
    """``kills`` SIGKILLs of random sessions' writers, after random numbers of ended
    scans plus a random delay (within the scan that follows, most of the time).

    Only a writer that listens is killed (not one still restarting after a previous
    kill); a watcher thread records when its successor listens, so that the latency
    of the scans overlapping the outage can be told apart.  No kill after the
    producers are done."""

    def __init__(self, service: Service, store: DataStore, sessions: list[str], kills: int,
                 total_scans: int, ended: Counter, seed: int, delay: float):
        super().__init__(name="killer", daemon=True)
        self.service, self.store, self.sessions = service, store, sessions
        self.rng = random.Random(seed)
        self.thresholds = sorted(self.rng.randrange(0, max(1, total_scans - len(sessions)))
                                 for _ in range(kills))
        self.ended = ended
        self.delay = delay
        self.done: list[dict[str, Any]] = []
        self.watchers: list[threading.Thread] = []

    def run(self) -> None:
        for threshold in self.thresholds:
            if not self.ended.wait_for(threshold):
                return
            time.sleep(self.rng.uniform(0.0, self.delay))
            pids: dict[str, int] = {}
            deadline = time.monotonic() + 30
            while not pids and time.monotonic() < deadline and self.ended.running:
                for session in self.sessions:
                    pid = listening_pid(self.service, self.store, session)
                    if pid is not None:
                        pids[session] = pid
                if not pids:
                    time.sleep(0.05)
            if not pids or not self.ended.running:
                return
            session = self.rng.choice(sorted(pids))
            try:
                os.kill(pids[session], signal.SIGKILL)
            except ProcessLookupError:
                continue
            kill = {"session": session, "pid": pids[session], "time": time.time(),
                    "back": float("inf"), "after_scans": self.ended.value}
            self.done.append(kill)
            log(f"kill -9 writer of {session} (pid {kill['pid']}), "
                f"{self.ended.value} scans ended")
            watcher = threading.Thread(target=self._watch, args=(kill,), daemon=True)
            watcher.start()
            self.watchers.append(watcher)

    def _watch(self, kill: dict[str, Any]) -> None:
        """Record when a new writer listens to the session again."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pid = listening_pid(self.service, self.store, kill["session"])
            if pid is not None and pid != kill["pid"]:
                kill["back"] = time.time()
                return
            time.sleep(0.05)

    def join_all(self, timeout: float) -> None:
        self.join(timeout)
        for watcher in self.watchers:
            watcher.join(timeout)


class Sampler(threading.Thread):
    """Peak RSS of the service's writer processes (and the service's own)."""

    def __init__(self, service_pid: int, period: float = 0.2):
        super().__init__(name="rss", daemon=True)
        self.service = psutil.Process(service_pid)
        self.period = period
        self.stop = threading.Event()
        self.peak_writer = 0
        self.peak_total = 0
        self.peak_service = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.period):
            try:
                children = self.service.children(recursive=True)
                own = self.service.memory_info().rss
            except psutil.Error:
                continue
            rss = []
            for child in children:
                try:
                    rss.append(child.memory_info().rss)
                except psutil.Error:
                    pass
            if rss:
                self.peak_writer = max(self.peak_writer, max(rss))
                self.peak_total = max(self.peak_total, sum(rss))
            self.peak_service = max(self.peak_service, own)
            self.samples += 1


# -- verification --------------------------------------------------------------------
def id_ms(entry_id: bytes | str) -> int:
    return int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])


def end_ms(store: DataStore, key: str) -> int | None:
    """Redis time of the scan's END_SCAN event."""
    for entry_id, fields in store.redis.xrevrange(f"{key}:events", count=5):
        if fields.get(b"event") == b"END_SCAN":
            return id_ms(entry_id)
    return None


def final_reports(store: DataStore, key: str) -> list[tuple[int, str, str]]:
    """(Redis ms, state, reason) of the final saving reports of a scan."""
    out = []
    for entry_id, fields in store.redis.xrange(saving_key(key)):
        state = fields.get(b"state", b"").decode()
        if state in FINAL_STATES:
            out.append((id_ms(entry_id), state, fields.get(b"reason", b"").decode()))
    return out


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype.newbyteorder("=") != b.dtype.newbyteorder("="):
        return False
    return a.astype(a.dtype.newbyteorder("=")).tobytes() == \
        b.astype(a.dtype.newbyteorder("=")).tobytes()


def camera_frames(refs: list[Any]) -> list[np.ndarray]:
    """The frames of ``refs`` read from the camera's own files."""
    frames: list[np.ndarray] = []
    files: dict[str, h5py.File] = {}
    try:
        for ref in refs:
            f = files.get(ref.file_path)
            if f is None:
                f = files[ref.file_path] = h5py.File(ref.file_path, "r", locking=False)
            frames.append(f[ref.data_path][ref.frame_index])
    finally:
        for f in files.values():
            f.close()
    return frames


def check_scan(store: DataStore, key: str, f: h5py.File | None) -> dict[str, Any]:
    """Points published, lost (missing or different in the file), and problems."""
    scan = store.get_scan_node(key)
    nodes = [n for n in scan.nodes() if n.type != "node_ref_channel"]
    out: dict[str, Any] = {"points": 0, "lost": 0, "problems": []}
    counts = {n.name: n.count() for n in nodes}
    out["points"] = sum(counts.values())
    if f is None:
        out["lost"] = out["points"]
        out["problems"].append("file unreadable")
        return out
    plan = ScanPlan(scan.number, scan.info, WriterOptions())
    for node in nodes:
        d = node.definition
        chan = plan.add(NodeInfo(d.name, d.type, node.dtype, tuple(d.shape), d.unit,
                                 dict(d.info)))
        n = counts[node.name]
        try:
            dset = f[chan.path]
            if node.type == "lima":
                expected = camera_frames(node.get_references())
                data = dset[()]
            else:
                expected = list(np.asarray(node.get()))
                data = dset[()]
        except Exception as e:  # noqa: BLE001 - counted as lost, with the reason
            out["lost"] += n
            out["problems"].append(f"{node.name}: {chan.path}: {type(e).__name__}: {e}")
            continue
        bad = sum(1 for i in range(n) if i >= len(data) or not same_bytes(data[i], expected[i]))
        if bad or len(data) != n:
            out["lost"] += bad
            out["problems"].append(f"{node.name}: {len(data)} points in the file, {n} in "
                                   f"Redis, {bad} missing or different")
    for entry in plan.entries.values():
        try:
            status = f[entry.name]["writer"]["status"][()]
            status = status.decode() if isinstance(status, bytes) else str(status)
        except Exception as e:  # noqa: BLE001
            status = f"unreadable ({e})"
        if status != "SUCCEEDED":
            out["problems"].append(f"{entry.name}/writer/status: {status}")
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


# -- main ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=3, help="producers/sessions (3)")
    parser.add_argument("--scans", type=int, default=80, help="scans per session (80)")
    parser.add_argument("--kills", type=int, default=24, help="writers killed (24)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--time-scale", type=float, default=0.1,
                        help="factor on count times (0.1: 10 ms per nominal 0.1 s point)")
    parser.add_argument("--flush-period", type=float, default=0.5,
                        help="writers' flush period, s (0.5)")
    parser.add_argument("--kill-delay", type=float, default=1.5,
                        help="a kill comes up to this many s after its scan threshold (1.5)")
    parser.add_argument("--save-timeout", type=float, default=180.0,
                        help="wait this long for the last reports (180 s)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = parser.parse_args(argv)

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nxw-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"soak{i + 1}" for i in range(args.sessions)]
    total = args.sessions * args.scans
    started = time.monotonic()
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, "
                   f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python "
                   f"{platform.python_version()}, h5py {h5py.version.version}, "
                   f"HDF5 {h5py.version.hdf5_version}",
        "args": vars(args),
    }
    with RedisServer() as server:
        store = DataStore(server.url)
        service = Service(workdir, server.url, names, args.flush_period)
        service.start()
        try:
            return _run(args, result, started, workdir, names, total, server, store, service)
        finally:
            service.kill_if_running()


def _run(args: argparse.Namespace, result: dict[str, Any], started: float, workdir: Path,
         names: list[str], total: int, server: RedisServer, store: DataStore,
         service: Service) -> int:
    """The soak proper, with the service running (see the module docstring)."""
    log(f"service pid {service.process.pid} on :{service.port}, Redis {server.url}, "
        f"data in {workdir}")
    for name in names:
        while listening_pid(service, store, name) is None:
            time.sleep(0.1)
    sampler = Sampler(service.process.pid)
    sampler.start()
    ended = Counter(len(names))
    producers = [Producer(name, server.url, workdir / "data", args.scans, args.time_scale,
                          args.seed * 1000 + i, ended) for i, name in enumerate(names)]
    killer = Killer(service, store, names, args.kills, total, ended, args.seed,
                    args.kill_delay)
    t0 = time.monotonic()
    for p in producers:
        p.start()
    killer.start()
    for p in producers:
        p.join()
    produce_s = time.monotonic() - t0
    killer.join_all(120)
    errors = [f"{p.session.name}: {p.error!r}" for p in producers if p.error]
    scans = [(p.session.name, s) for p in producers for s in p.scans]
    log(f"{len(scans)} scans ended in {produce_s:.1f} s; waiting for the last reports")
    deadline = time.monotonic() + args.save_timeout
    for _, scan in scans:
        scan.wait_saved(max(0.1, deadline - time.monotonic()))
    status = service.status()
    sampler.stop.set()
    sampler.join()
    code = service.stop()
    log(f"service stopped (exit {code}); checking {len(scans)} scans against Redis")

    kills_by_session = defaultdict(list)  # (writer down, back) in Redis ms
    for k in killer.done:
        kills_by_session[k["session"]].append((k["time"] * 1000, k["back"] * 1000))
    latencies, hit_latencies, unhit_latencies = [], [], []
    lost = points = 0
    not_ok, problems, duplicates = [], [], []
    by_file: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for session, scan in scans:
        by_file[scan.filename].append((session, scan))
    unreadable = []
    per_scan: list[dict[str, Any]] = []
    for filename, items in by_file.items():
        try:
            f: h5py.File | None = h5py.File(filename, "r", locking=False)
        except Exception as e:  # noqa: BLE001
            f = None
            unreadable.append(f"{filename}: {e}")
        try:
            for session, scan in items:
                finals = final_reports(store, scan.key)
                label = f"{session} scan {scan.scan_number}"
                if not finals or finals[0][1] != "SUCCEEDED":
                    not_ok.append(f"{label}: {finals[0][1:] if finals else 'no report'}")
                if len(finals) > 1:
                    duplicates.append(f"{label}: {[x[1] for x in finals]}")
                end = end_ms(store, scan.key)
                record: dict[str, Any] = {"session": session, "scan": scan.scan_number,
                                          "title": scan.scan_info["title"],
                                          "final": [x[1] for x in finals]}
                if finals and end is not None:
                    latency = (finals[0][0] - end) / 1000
                    latencies.append(latency)
                    created = float(store.redis.hget(scan.key, "created") or 0) * 1000
                    hit = any(down <= finals[0][0] and created <= back
                              for down, back in kills_by_session[session])
                    (hit_latencies if hit else unhit_latencies).append(latency)
                    record.update(latency=latency, hit=hit)
                checked = check_scan(store, scan.key, f)
                record.update(points=checked["points"], lost=checked["lost"])
                per_scan.append(record)
                points += checked["points"]
                lost += checked["lost"]
                if checked["problems"]:
                    problems.append(f"{label} ({checked['lost']}/{checked['points']} points "
                                    f"lost): " + "; ".join(checked["problems"][:4])
                                    + (f"; ... ({len(checked['problems'])} findings)"
                                       if len(checked["problems"]) > 4 else ""))
        finally:
            if f is not None:
                f.close()
    store.close()

    restarts = {n: status["sessions"][n]["process"]["restarts"] for n in names}
    # kill -9 -> the new writer listens: backoff of the service + start of the writer
    outages = [k["back"] - k["time"] for k in killer.done if k["back"] != float("inf")]
    result.update({
        "sessions": len(names), "scans": len(scans), "producer_errors": errors,
        "succeeded": len(scans) - len(not_ok), "not_succeeded": not_ok,
        "duplicate_final_reports": duplicates, "points_checked": points, "points_lost": lost,
        "unreadable_files": unreadable, "problems": problems,
        "kills": len(killer.done), "kills_requested": args.kills,
        "kills_by_session": {n: len(kills_by_session[n]) for n in names},
        "restarts_by_session": restarts,
        "latency_s": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                      "max": max(latencies, default=float("nan")), "n": len(latencies)},
        "latency_hit_s": {"p50": percentile(hit_latencies, 50),
                          "p99": percentile(hit_latencies, 99),
                          "max": max(hit_latencies, default=float("nan")),
                          "n": len(hit_latencies)},
        "latency_unhit_s": {"p50": percentile(unhit_latencies, 50),
                            "p99": percentile(unhit_latencies, 99),
                            "max": max(unhit_latencies, default=float("nan")),
                            "n": len(unhit_latencies)},
        "outage_s": {"p50": percentile(outages, 50),
                     "max": max(outages, default=float("nan")), "n": len(outages)},
        "peak_writer_rss_mib": sampler.peak_writer / 2**20,
        "peak_writers_total_rss_mib": sampler.peak_total / 2**20,
        "peak_service_rss_mib": sampler.peak_service / 2**20,
        "produce_s": produce_s, "wall_s": time.monotonic() - started,
        "service_exit": code,
        "data_mib": sum(p.stat().st_size for p in (workdir / "data").rglob("*") if p.is_file())
        / 2**20,
    })
    ok = not (lost or not_ok or unreadable or errors or duplicates or problems)
    r = result
    print()
    print(f"soak: {r['sessions']} sessions x {args.scans} scans, time scale {args.time_scale:g}, "
          f"seed {args.seed}, flush period {args.flush_period:g} s")
    print(f"  scans written SUCCEEDED: {r['succeeded']}/{r['scans']}  "
          f"(producers {produce_s:.1f} s, wall {r['wall_s']:.1f} s, {r['data_mib']:.0f} MiB "
          "of files incl. camera)")
    print(f"  data lost: {lost} of {points} points; unreadable files: {len(unreadable)}; "
          f"duplicate final reports: {len(duplicates)}")
    print(f"  kills: {r['kills']}/{args.kills} {r['kills_by_session']}; writer restarts "
          f"{restarts}")
    print("  end of scan -> SUCCEEDED report:")
    for title, key in (("all scans", "latency_s"), ("scans no kill hit", "latency_unhit_s"),
                       ("scans a kill hit", "latency_hit_s")):
        lat = r[key]
        print(f"    {title:18s} p50 {lat['p50']:.3f} s, p99 {lat['p99']:.3f} s, "
              f"max {lat['max']:.3f} s (n={lat['n']})")
    out = r["outage_s"]
    print(f"  writer outage per kill (kill -9 -> new writer listening): p50 {out['p50']:.2f} s, "
          f"max {out['max']:.2f} s (n={out['n']})")
    print(f"  peak RSS: one writer {r['peak_writer_rss_mib']:.0f} MiB, all writers "
          f"{r['peak_writers_total_rss_mib']:.0f} MiB, service {r['peak_service_rss_mib']:.0f} MiB")
    for title, items in (("producer errors", errors), ("not SUCCEEDED", not_ok),
                         ("unreadable", unreadable), ("duplicates", duplicates),
                         ("problems", problems)):
        for item in items[:20]:
            print(f"  {title}: {item}")
    print("  RESULT: " + ("OK, nothing lost" if ok else "DATA LOST OR SCANS NOT SAVED"))
    if args.json:
        result["kill_log"] = killer.done
        result["per_scan"] = per_scan
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"  files kept in {workdir}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
