#!/usr/bin/env python
"""Throughput, latency and memory of the NeXus writer (``nexus_writer.writer``).

Drain cases (``--cases``, default all):

  a  64 scalar float64 channels x 100 000 points, 1000 points per send
  b  4 MCA channels of 4096 int32 x 20 000 points, 100 points per send
  c  one 1024x1024 uint16 image channel x 500 frames (1 GiB), 1 frame per send
  d  10 000 camera frame references over 100 real HDF5 camera files (100 frames of
     32x32 uint16 each), announced with ``lima.send(last_index_saved=k)`` every
     10 frames: the writer builds a virtual dataset (VDS) over the camera files

For each case the whole scan is published first (no writer running), then a
``SessionWriter(from_next=False)`` is started and the *drain* is timed: from
``SessionWriter.start()`` to the scan's state SUCCEEDED (and, beside it, to the
file closed).  In the same run, on the same bytes, the physical limits:

* XRANGE: raw redis-py ``XRANGE`` of the same streams, stream after stream, in
  replies of about ``--xrange-mib`` MiB (default 4; at least 1 entry, at most 1024);
* h5py: raw h5py writes of the same arrays into a fresh file, datasets created as
  the writer creates them (``nexus.datasets.chunk_shape`` / ``compression_args``:
  bitshuffle-LZ4 for 1D/2D points, nothing for scalars; same fill value, resizable
  first axis), file closed in the timing.  ``h5py batch``: one resize + write per
  published batch, channels interleaved in publication order; ``h5py merged``:
  consecutive batches of a channel concatenated into writes of up to 16 MiB (the
  writer's ``MERGE_BYTES``); ``h5py none``: merged, uncompressed.  Case d: one
  ``create_virtual_dataset`` over all the references.

Ratios: drain / (XRANGE + h5py) (serial reading then writing) and
drain / max(XRANGE, h5py) (perfect overlap of the two), h5py = min(batch, merged).
Each case is published once; the drain (output file removed in between), XRANGE
and h5py runs are repeated ``--repeat`` times and the best of each is kept.

Extra measurements (``--cases`` names ``latency`` and ``memory``):

* latency: a writer runs before the scans; a producer publishes ``--latency-points``
  points of ``--latency-channels`` scalar channels at a steady pace (batches of
  ``--latency-batch`` every ``--latency-period`` s) and ends the scan; time from
  ``scan.end()`` to state SUCCEEDED (and to the file closed), ``--latency-repeat``
  scans, p50 / p99 / max;
* memory: peak RSS of a fresh writer process draining case a at N and 4 N points
  (VmHWM reset through /proc/self/clear_refs, so the figure is the peak above the
  RSS the process had with everything imported and the writer connected).

Redis is flushed between cases (FLUSHALL on the benchmark's own server, FLUSHDB of
the URL's database with ``--redis``: do not point it at a database you need).
Nothing here fails: it prints figures (``--json FILE`` writes them too).

    .venv/bin/python benchmarks/bench_writer.py
    .venv/bin/python benchmarks/bench_writer.py --scale 0.1 --cases a,b,latency
    .venv/bin/python benchmarks/bench_writer.py --cases a,b --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import math
import os
import platform
import pstats
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import h5py
import hdf5plugin
import numpy as np
import redis

import nexus_writer
from nexus_writer.data import DataStore
from nexus_writer.data.server import RedisServer
from nexus_writer.nexus.datasets import chunk_shape, compression_args, fill_value
from nexus_writer.writer import SessionWriter
from nexus_writer.writer.filewriter import MERGE_BYTES

from _common import MALLOC_TUNABLES, MIB, cpu_model, flush, sends, status_kib

#: glibc malloc settings of ``--tuned-malloc`` (as benchmarks/bench_data_api.py uses):
#: multi-MiB replies reuse freed memory instead of page-faulting fresh mmaps in.
HDF5_DATA_PATH = "/entry_0000/measurement/data"
SESSION = "bench_writer"


# -- cases ------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    label: str
    kind: str  # "channel" or "lima"
    nchannels: int
    shape: tuple[int, ...]
    dtype: str
    points: int
    batch: int  # points per send (lima: frames per last_index_saved step)
    frames_per_file: int = 0

    @property
    def point_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def scan_nbytes(self) -> int:
        """Payload bytes through Redis (lima: the frames' bytes, which stay on disk)."""
        return self.points * self.nchannels * self.point_nbytes

    @property
    def values(self) -> int:
        """Scalar values: points x channels x values per point."""
        return self.points * self.nchannels * int(np.prod(self.shape, dtype=np.int64))

    def scaled(self, scale: float) -> "Case":
        if self.kind == "lima":  # whole files: scale their number
            files = max(1, round(self.points // self.frames_per_file * scale))
            return replace(self, points=files * self.frames_per_file)
        return replace(self, points=max(self.batch, int(round(self.points * scale))))


CASES = {
    "a": Case("a", "64 scalar f8 channels", "channel", 64, (), "float64", 100_000, 1000),
    "b": Case("b", "4 MCA 4096 i4", "channel", 4, (4096,), "int32", 20_000, 100),
    "c": Case("c", "1 image 1024x1024 u2", "channel", 1, (1024, 1024), "uint16", 500, 1),
    "d": Case("d", "camera refs, 100 files", "lima", 1, (32, 32), "uint16", 10_000, 10,
              frames_per_file=100),
}
EXTRA = ("latency", "memory")


# -- data -------------------------------------------------------------------------
class Pool:
    """A few distinct batches of plausible data, reused round-robin.

    Floats are uniform noise (scalars are not compressed anyway); spectra are
    Poisson counts on a background with a few peaks; images Poisson noise around
    100 counts with a bright spot: what bitshuffle-LZ4 sees at a beamline.
    """

    def __init__(self, case: Case, size: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        dt = np.dtype(case.dtype)
        shape = (case.batch,) + case.shape
        arrays = []
        for i in range(size):
            if dt.kind == "f":
                a = rng.random(shape, dtype=dt)
            elif len(case.shape) == 1:
                x = np.arange(case.shape[0])
                lam = 5.0 + sum(h * np.exp(-0.5 * ((x - c) / w) ** 2)
                                for c, w, h in ((800, 12, 400), (1700, 20, 900), (3100, 15, 250)))
                a = rng.poisson(lam * (1 + 0.1 * i), size=shape).astype(dt)
            else:
                rows, cols = case.shape
                yy, xx = np.ogrid[:rows, :cols]
                spot = 3000 * np.exp(-(((yy - rows / 2 - 20 * i) ** 2 + (xx - cols / 2) ** 2)
                                       / (2 * (rows / 30) ** 2)))
                a = rng.poisson(100 + spot, size=shape).astype(dt)
            arrays.append(a)
        self.arrays = arrays

    def get(self, k: int, n: int) -> np.ndarray:
        a = self.arrays[k % len(self.arrays)]
        return a if n == len(a) else a[:n]


def channel_names(case: Case) -> list[tuple[str, dict]]:
    """(node name, node info) of each channel: BLISS-like names and devices."""
    if case.name == "a" or case.shape == ():
        out = [("timer:elapsed_time", {"device": "timer", "display_name": "elapsed_time"})]
        out += [(f"diode{i}:diode{i}", {"device": f"diode{i}", "display_name": f"diode{i}"})
                for i in range(1, case.nchannels)]
        return out[:case.nchannels]
    if len(case.shape) == 1:
        return [(f"mca1:spectrum_det{i}", {"device": "mca1", "display_name": f"spectrum_det{i}"})
                for i in range(case.nchannels)]
    return [(f"cam{i}:image", {"device": f"cam{i}", "display_name": "image"})
            for i in range(case.nchannels)]


def scan_info(case: Case, scan_nb: int, filename: str, names: list[str]) -> dict:
    key = {0: "scalars", 1: "spectra", 2: "images"}[len(case.shape)]
    master = [n for n in names if n == "timer:elapsed_time"]
    chain = {"timer": {"master": {"scalars": master, "spectra": [], "images": []},
                       "scalars": [], "spectra": [], "images": []}}
    chain["timer"][key] = [n for n in names if n not in master]
    return {
        "scan_nb": scan_nb, "type": "timescan", "title": f"bench case {case.name}",
        "npoints": case.points, "filename": filename, "acquisition_chain": chain,
        "channels": {n: {"device": n.split(":")[0], "dim": len(case.shape)} for n in names},
        "start_time": now(),
    }


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat()


# -- publishing -------------------------------------------------------------------
def publish_channels(url: str, case: Case, pool: Pool, session: str, scan_nb: int,
                     filename: str) -> tuple[float, list[str], str]:
    """Publish the whole scan; (seconds, stream keys of the channels in order, scan key)."""
    store = DataStore(url)
    try:
        chans = channel_names(case)
        scan = store.create_scan(session, scan_info(case, scan_nb, filename,
                                                    [n for n, _ in chans]))
        pubs = [scan.create_channel(name, case.dtype, case.shape, top_master="timer", **info)
                for name, info in chans]
        scan.start()
        t0 = time.perf_counter()
        k = 0
        for _, n in sends(case):
            for p in pubs:
                p.send(pool.get(k, n) if case.batch > 1 else pool.get(k, 1)[0])
                k += 1
        elapsed = time.perf_counter() - t0
        scan.update_info({"end_time": now()})
        scan.end()
        return elapsed, [p.node.key for p in pubs], scan.key
    finally:
        store.close()


def make_camera_files(case: Case, directory: str) -> tuple[str, list[np.ndarray]]:
    """The camera's own files (not timed): 100 frames each; pixel (0, 0) = frame number."""
    os.makedirs(directory, exist_ok=True)
    template = os.path.join(directory, "lima_simulator_{file_index:04d}.h5")
    rng = np.random.default_rng(1)
    nfiles = case.points // case.frames_per_file
    firsts = []
    for i in range(nfiles):
        frames = rng.poisson(100, (case.frames_per_file,) + case.shape).astype(case.dtype)
        frames[:, 0, 0] = np.arange(i * case.frames_per_file, (i + 1) * case.frames_per_file)
        with h5py.File(template.format(file_index=i), "w") as f:
            f.create_dataset(HDF5_DATA_PATH, data=frames)
        firsts.append(frames[0])
    return template, firsts


def publish_lima(url: str, case: Case, session: str, scan_nb: int, filename: str,
                 template: str) -> tuple[float, list[str], str]:
    store = DataStore(url)
    try:
        name = "lima_simulator:image"
        scan = store.create_scan(session, scan_info(case, scan_nb, filename, [name]))
        lima = scan.create_lima_channel(name, case.dtype, case.shape, template, HDF5_DATA_PATH,
                                        "hdf5", case.frames_per_file, top_master="timer",
                                        device="lima_simulator", display_name="image")
        scan.start()
        t0 = time.perf_counter()
        for first, n in sends(case):
            lima.send(last_index_saved=first + n - 1)
        elapsed = time.perf_counter() - t0
        scan.update_info({"end_time": now()})
        scan.end()
        return elapsed, [lima.node.key], scan.key
    finally:
        store.close()


# -- the writer's drain -----------------------------------------------------------
def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, idle: float = 0.85, window: float = 2.0, times: int = 2) -> float:
    """Wait until the machine is idle (other jobs share it); returns the seconds waited."""
    t0 = time.monotonic()
    ok = 0
    ncpu = os.cpu_count() or 1
    while time.monotonic() - t0 < max_wait:
        b0 = busy_cpu()
        time.sleep(window)
        ok = ok + 1 if (busy_cpu() - b0) / (window * ncpu) <= 1 - idle else 0
        if ok >= times:
            break
    return time.monotonic() - t0


def process_cpu() -> float:
    t = os.times()
    return t.user + t.system


def drain(url: str, session: str, options: dict, timeout: float,
          r: redis.Redis) -> dict[str, Any]:
    """Start a writer on the published scan; seconds to SUCCEEDED and to file closed."""
    gc.collect()
    cpu0, rcpu0, busy0 = process_cpu(), redis_cpu(r), busy_cpu()
    flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    writer = SessionWriter(session, url, from_next=False, **options).start()
    t_done = t_closed = None
    try:
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            scans = writer.scans()
            if scans:
                sw = scans[0]
                if t_done is None and sw.state.final:
                    t_done = time.perf_counter()
                if sw.finished is not None:
                    t_closed = time.perf_counter()
                    break
            time.sleep(0.001)
        cpu1, rcpu1, busy1 = process_cpu(), redis_cpu(r), busy_cpu()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
        scans = writer.scans()
        if not scans:
            return {"error": "the writer saw no scan"}
        sw = scans[0]
        stats = sw.stats()
        paths = {name: c.path for name, c in (sw.plan.by_name.items() if sw.plan else ())}
    finally:
        writer.stop(timeout=60)
    out = {"state": sw.state.name, "reason": sw.saving.reason, "file": sw.filename,
           "paths": paths, "channels": stats["channels"], "problems": stats["problems"],
           "writer_cpu": cpu1 - cpu0, "redis_cpu": rcpu1 - rcpu0, "minor_faults": faults,
           # CPU the rest of the machine used meanwhile: other jobs disturb the figures
           "foreign_cpu": (busy1 - busy0) - (cpu1 - cpu0) - (rcpu1 - rcpu0)}
    if t_done is None:
        out["error"] = f"not finished after {timeout:g} s (state {sw.state.name})"
        return out
    out["seconds"] = t_done - t0
    out["closed_seconds"] = (t_closed or time.perf_counter()) - t0
    return out


def forget_saving(r: redis.Redis, scan_key: str) -> None:
    """Make a written scan look never written, to drain it again: a writer skips a scan
    with a final saving report and resumes one with recorded progress."""
    r.delete(f"{scan_key}:saving")
    r.hdel(scan_key, "saving_state", "saving_reason", "saving_progress", "acknowledged")


# -- physical limits ---------------------------------------------------------------
def raw_xrange(url: str, keys: list[str], entry_nbytes: int,
               reply_bytes: int) -> tuple[float, int]:
    """XRANGE each stream in turn, replies of about ``reply_bytes`` (at least one entry,
    at most 1024); (seconds, entries read)."""
    r = redis.Redis.from_url(url)
    count = max(1, min(1024, reply_bytes // max(1, entry_nbytes)))
    entries_read = 0
    try:
        gc.collect()
        t0 = time.perf_counter()
        for key in keys:
            low = "-"
            while True:
                entries = r.xrange(key, min=low, max="+", count=count)
                entries_read += len(entries)
                if len(entries) < count:
                    break
                low = "(" + entries[-1][0].decode()
            entries = None
        return time.perf_counter() - t0, entries_read
    finally:
        r.close()


def raw_h5py(case: Case, pool: Pool, path: str, compression: str,
             merge_bytes: int = 0) -> tuple[float, int]:
    """Write the published arrays as the writer lays them out; (seconds, file bytes).

    ``merge_bytes`` 0: one resize + write per published batch, channels interleaved
    in publication order.  Else consecutive batches of a channel are concatenated
    into writes of at most that many bytes (the writer's ``MERGE_BYTES``), channels
    interleaved block by block: the fewest writes the writer could make.
    """
    dt = np.dtype(case.dtype)
    batches = list(sends(case))
    per_write = 1
    if merge_bytes:
        per_write = max(1, merge_bytes // max(1, case.batch * case.point_nbytes))
    sync()
    t0 = time.perf_counter()
    with h5py.File(path, "w", locking=False) as f:
        dsets = []
        for i in range(case.nchannels):
            dsets.append(f.create_dataset(
                f"ch{i}", shape=(0,) + case.shape, maxshape=(None,) + case.shape, dtype=dt,
                chunks=chunk_shape(dt, case.shape, case.points), fillvalue=fill_value(dt),
                **compression_args(dt, case.shape, compression)))
        nch = case.nchannels
        for b0 in range(0, len(batches), per_write):
            block = batches[b0:b0 + per_write]
            first = block[0][0]
            end = block[-1][0] + block[-1][1]
            for i, d in enumerate(dsets):
                parts = [pool.get((b0 + j) * nch + i, n) for j, (_, n) in enumerate(block)]
                d.resize(end, axis=0)
                d[first:end] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return time.perf_counter() - t0, os.path.getsize(path)


def raw_vds(case: Case, template: str, path: str) -> float:
    """One virtual dataset over all the camera files, as the writer's final one."""
    t0 = time.perf_counter()
    layout = h5py.VirtualLayout(shape=(case.points,) + case.shape, dtype=case.dtype)
    per = case.frames_per_file
    for i in range(case.points // per):
        src = h5py.VirtualSource(os.path.relpath(template.format(file_index=i),
                                                 os.path.dirname(path)),
                                 HDF5_DATA_PATH, shape=(per,) + case.shape, dtype=case.dtype)
        layout[i * per:(i + 1) * per] = src[0:per]
    with h5py.File(path, "w", locking=False) as f:
        f.create_virtual_dataset("data", layout, fillvalue=0)
    return time.perf_counter() - t0


# -- checks -------------------------------------------------------------------------
def check_channels(case: Case, pool: Pool, result: dict) -> str:
    """Shape and last batch of every channel in the writer's file."""
    if result.get("state") != "SUCCEEDED":
        return f"state {result.get('state')}: {result.get('reason')}"
    last = list(sends(case))[-1]
    nsends = len(list(sends(case)))
    with h5py.File(result["file"], "r", locking=False) as f:
        for i, (name, _) in enumerate(channel_names(case)):
            d = f[result["paths"][name]]
            if d.shape != (case.points,) + case.shape:
                return f"{name}: shape {d.shape}"
            k = (nsends - 1) * case.nchannels + i
            expected = pool.get(k, last[1]) if case.batch > 1 else pool.get(k, 1)
            if not np.array_equal(d[last[0]:], expected):
                return f"{name}: last batch differs"
    return "ok"


def check_vds(case: Case, result: dict, firsts: list[np.ndarray]) -> str:
    if result.get("state") != "SUCCEEDED":
        return f"state {result.get('state')}: {result.get('reason')}"
    with h5py.File(result["file"], "r", locking=False) as f:
        d = f[result["paths"]["lima_simulator:image"]]
        if not d.is_virtual or d.shape != (case.points,) + case.shape:
            return f"not a VDS of {case.points} frames: {d.shape}"
        for i in sorted({0, len(firsts) // 2, len(firsts) - 1}):
            frame = d[i * case.frames_per_file]
            if not np.array_equal(frame, firsts[i]):
                return f"frame {i * case.frames_per_file} differs from the camera file"
        last = d[case.points - 1]
        if int(last[0, 0]) != case.points - 1:
            return "last frame differs"
    return "ok"


# -- profiling (monkeypatched: the package is not edited) ----------------------------
class ThreadProfiles:
    """cProfile of the scan thread and of the file thread, one profile each."""

    def __init__(self) -> None:
        from nexus_writer.writer import filewriter, scan

        self.targets = [(scan.ScanWriter, "run", "scan"), (filewriter.FileWriter, "_run", "file")]
        self.profiles: dict[str, list[cProfile.Profile]] = {"scan": [], "file": []}
        self.saved: list[tuple[type, str, Callable]] = []

    def __enter__(self) -> "ThreadProfiles":
        for cls, attr, label in self.targets:
            original = getattr(cls, attr)
            self.saved.append((cls, attr, original))

            def wrapped(obj, *a, __orig=original, __label=label, **kw):  # noqa: ANN001, ANN202
                prof = cProfile.Profile()
                self.profiles[__label].append(prof)
                return prof.runcall(__orig, obj, *a, **kw)

            setattr(cls, attr, wrapped)
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, attr, original in self.saved:
            setattr(cls, attr, original)

    def dump(self, directory: str, case: str, top: int) -> None:
        os.makedirs(directory, exist_ok=True)
        for label, profs in self.profiles.items():
            if not profs:
                continue
            path = os.path.join(directory, f"case_{case}_{label}.prof")
            stats = pstats.Stats(profs[0])
            for p in profs[1:]:
                stats.add(p)
            stats.dump_stats(path)
            print(f"\n--- profile case {case}, {label} thread ({path}), by tottime")
            stats.sort_stats("tottime").print_stats(top)


# -- one drain case -------------------------------------------------------------------
def sync() -> None:
    """Dirty pages of earlier phases to disk first (not timed): less writeback noise."""
    os.sync()


def best(values: list[float]) -> float | None:
    return min(values) if values else None


def run_case(url: str, r: redis.Redis, own: bool, case: Case, args: argparse.Namespace,
             workdir: str) -> dict[str, Any]:
    """Publish once; drain and XRANGE ``--repeat`` times (the output file removed in
    between), then the h5py runs; best of each kept."""
    flush(r, own)
    cdir = os.path.join(workdir, f"case_{case.name}")
    os.makedirs(cdir)
    session = f"{SESSION}_{case.name}"
    filename = os.path.join(cdir, "dataset.h5")
    res: dict[str, Any] = {"case": case.name, "label": case.label, "points": case.points,
                           "channels": case.nchannels, "shape": list(case.shape),
                           "dtype": case.dtype, "batch": case.batch,
                           "payload_mb": case.scan_nbytes / 1e6, "runs": []}
    options = {"flush_period": args.flush_period, "compression": args.compression}
    pool = None
    firsts: list[np.ndarray] = []
    if case.kind == "lima":
        template, firsts = make_camera_files(case, os.path.join(cdir, "scan0001"))
        res["publish_s"], keys, scan_key = publish_lima(url, case, session, 1, filename,
                                                        template)
        entry_nbytes = 64
    else:
        pool = Pool(case)
        res["publish_s"], keys, scan_key = publish_channels(url, case, pool, session, 1,
                                                            filename)
        entry_nbytes = case.batch * case.point_nbytes
    res["redis_used_mib"] = r.info("memory")["used_memory"] / MIB
    res["entries"] = sum(r.xlen(k) for k in keys)
    checks = []
    for rep in range(args.repeat):
        if os.path.exists(filename):
            os.remove(filename)
        forget_saving(r, scan_key)
        sync()
        if args.profile and rep == 0:
            profiles = ThreadProfiles()
            with profiles:
                d = drain(url, session, options, args.timeout, r)
            profiles.dump(args.profile, case.name, args.profile_top)
            d["profiled"] = True
        else:
            d = drain(url, session, options, args.timeout, r)
        if "error" in d:
            print(f"  case {case.name}: drain error: {d['error']}", file=sys.stderr)
            checks.append(d["error"])
        else:
            checks.append(check_vds(case, d, firsts) if case.kind == "lima"
                          else check_channels(case, pool, d))
            d["file_mb"] = os.path.getsize(d["file"]) / 1e6
        sync()
        d["xrange_s"], n = raw_xrange(url, keys, entry_nbytes, int(args.xrange_mib * MIB))
        if n != res["entries"]:
            checks.append(f"XRANGE read {n}/{res['entries']} entries")
        res["runs"].append({k: v for k, v in d.items() if k not in ("paths", "channels")})
        print(f"  drain {fmt(d.get('seconds'))} s (closed {fmt(d.get('closed_seconds'))} s, "
              f"CPU: writer {fmt(d.get('writer_cpu'))} s, redis {fmt(d.get('redis_cpu'))} s, "
              f"other jobs {fmt(d.get('foreign_cpu'))} s), XRANGE {d['xrange_s']:.2f} s, "
              f"{checks[-1]}", flush=True)
    res["check"] = "ok" if all(c == "ok" for c in checks) else "; ".join(sorted(set(checks)))
    flush(r, own)  # the Redis memory back before the HDF5 runs
    h5: dict[str, list[float]] = {"h5py_batch_s": [], "h5py_merged_s": [], "h5py_none_s": []}
    for rep in range(args.repeat):
        if case.kind == "lima":
            sync()
            h5["h5py_batch_s"].append(raw_vds(case, template, os.path.join(cdir, "raw_vds.h5")))
            continue
        path = os.path.join(cdir, "raw.h5")
        for key, comp, merge in (("h5py_batch_s", args.compression, 0),
                                 ("h5py_merged_s", args.compression, MERGE_BYTES),
                                 ("h5py_none_s", "none", MERGE_BYTES)):
            if key == "h5py_none_s" and not case.shape:
                continue  # scalars are not compressed: the same as merged
            seconds, size = raw_h5py(case, pool, path, comp, merge)
            h5[key].append(seconds)
            if key == "h5py_merged_s":
                res["h5py_file_mb"] = size / 1e6
            os.remove(path)
    for key, values in h5.items():
        res[key] = best(values)
    res["h5py_s"] = best(h5["h5py_batch_s"] + h5["h5py_merged_s"])
    timed = [x for x in res["runs"] if "seconds" in x and not x.get("profiled")]
    res["xrange_s"] = best([x["xrange_s"] for x in res["runs"]])
    if timed:
        fastest = min(timed, key=lambda x: x["seconds"])
        res["drain_s"] = drain_s = fastest["seconds"]
        res["closed_s"] = fastest["closed_seconds"]
        res["drain_median_s"] = statistics.median(x["seconds"] for x in timed)
        res["writer_cpu_s"] = fastest["writer_cpu"]
        res["redis_cpu_s"] = fastest["redis_cpu"]
        res["foreign_cpu_s"] = fastest["foreign_cpu"]
        res["file_mb"] = fastest.get("file_mb")
        res["ratio_sum"] = drain_s / (res["xrange_s"] + res["h5py_s"])
        res["ratio_max"] = drain_s / max(res["xrange_s"], res["h5py_s"])
        res["points_per_s"] = case.points / drain_s
        if case.kind != "lima":
            res["mb_per_s"] = case.scan_nbytes / drain_s / 1e6
            if not case.shape:  # scalar values per second: the target of case a
                res["values_per_s"] = case.values / drain_s
    if not args.keep:
        shutil.rmtree(cdir, ignore_errors=True)
    return res


# -- latency ----------------------------------------------------------------------------
def run_latency(url: str, r: redis.Redis, own: bool, args: argparse.Namespace,
                workdir: str) -> dict[str, Any]:
    flush(r, own)
    ldir = os.path.join(workdir, "latency")
    os.makedirs(ldir)
    filename = os.path.join(ldir, "dataset.h5")
    session = f"{SESSION}_latency"
    case = Case("latency", "latency", "channel", args.latency_channels, (), "float64",
                args.latency_points, args.latency_batch)
    pool = Pool(case)
    chans = channel_names(case)
    options = {"flush_period": args.flush_period, "compression": args.compression}
    writer = SessionWriter(session, url, from_next=True, **options).start()
    store = DataStore(url)
    done: list[float] = []
    closed: list[float] = []
    lags: list[int] = []
    behind: list[float] = []
    states: list[str] = []
    try:
        for rep in range(args.latency_repeat):
            scan = store.create_scan(session, scan_info(case, rep + 1, filename,
                                                        [n for n, _ in chans]))
            pubs = [scan.create_channel(name, case.dtype, case.shape, top_master="timer", **info)
                    for name, info in chans]
            scan.start()
            period = args.latency_period
            t_next = time.perf_counter()
            k = 0
            late = 0.0
            for _, n in sends(case):
                for p in pubs:
                    p.send(pool.get(k, n))
                    k += 1
                t_next += period
                delay = t_next - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    late = max(late, -delay)
            sw = None
            while sw is None:
                sw = writer.writers.get(scan.key)
                if sw is None:
                    time.sleep(0.001)
            # how far the writer is behind the producer when the scan ends
            written = min((t.written for t in sw.targets.values()), default=0)
            lags.append(case.points - written)
            behind.append(late)
            t0 = time.perf_counter()
            scan.end()
            t_done = None
            deadline = t0 + args.timeout
            while time.perf_counter() < deadline:
                if t_done is None and sw.state.final:
                    t_done = time.perf_counter()
                if sw.finished is not None:
                    break
                time.sleep(0.0002)
            t_closed = time.perf_counter()
            states.append(sw.state.name)
            if t_done is not None:
                done.append(t_done - t0)
                closed.append(t_closed - t0)
    finally:
        writer.stop(timeout=30)
        store.close()
        if not args.keep:
            shutil.rmtree(ldir, ignore_errors=True)

    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        s = sorted(values)
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]

    return {"repeat": args.latency_repeat, "points": case.points, "channels": case.nchannels,
            "batch": case.batch, "period_s": args.latency_period, "states": states,
            "p50_ms": pct(done, 0.5) * 1e3, "p99_ms": pct(done, 0.99) * 1e3,
            "max_ms": max(done, default=float("nan")) * 1e3,
            "closed_p50_ms": pct(closed, 0.5) * 1e3, "closed_p99_ms": pct(closed, 0.99) * 1e3,
            "points_behind_at_end_max": max(lags, default=0),
            "producer_late_max_ms": max(behind, default=0.0) * 1e3,
            "all_ms": [round(x * 1e3, 2) for x in done]}


# -- writer memory, in a fresh process ------------------------------------------------------
def mem_child(url: str, session: str, options: dict, timeout: float) -> None:
    """Child process: drain ``session`` and print its peak RSS (one JSON line)."""
    gc.collect()
    writer = SessionWriter(session, url, from_next=True, **options).start()  # warm up
    writer.stop()
    gc.collect()
    base = status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # a second opinion, in case VmHWM cannot be reset
        while not stop.wait(0.02):
            samples.append(status_kib("VmRSS") or 0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    cpu0 = process_cpu()
    writer = SessionWriter(session, url, from_next=False, **options).start()
    state = "?"
    while time.perf_counter() - t0 < timeout:
        scans = writer.scans()
        if scans and scans[0].finished is not None:
            state = scans[0].state.name
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    cpu = process_cpu() - cpu0
    writer.stop(timeout=30)
    stop.set()
    sampler.join()
    peak = status_kib("VmHWM") if hwm_reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"state": state, "seconds": seconds, "cpu": cpu, "rss_before_mib": (base or 0) / 1024,
                      "peak_rss_delta_mib": (peak - (base or 0)) / 1024,
                      "sampled_peak_delta_mib": (max(samples, default=0) - (base or 0)) / 1024,
                      "hwm_reset": hwm_reset}))


def run_memory(url: str, r: redis.Redis, own: bool, args: argparse.Namespace,
               workdir: str) -> dict[str, Any]:
    base = CASES["a"].scaled(args.scale)
    out: dict[str, Any] = {"case": "a", "runs": []}
    options = {"flush_period": args.flush_period, "compression": args.compression}
    for mult in (1, 4):
        flush(r, own)
        case = replace(base, points=base.points * mult)
        mdir = os.path.join(workdir, f"memory_{mult}")
        os.makedirs(mdir)
        session = f"{SESSION}_mem_{mult}"
        pool = Pool(case)
        publish_channels(url, case, pool, session, 1, os.path.join(mdir, "dataset.h5"))
        pool = None
        redis_mib = r.info("memory")["used_memory"] / MIB
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--_mem-child", "--redis", url,
             "--_session", session, "--flush-period", str(args.flush_period),
             "--compression", args.compression, "--timeout", str(args.timeout)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            run = {"error": proc.stderr.strip()[-2000:]}
        else:
            run = json.loads(proc.stdout.strip().splitlines()[-1])
        run.update({"points": case.points, "payload_mb": case.scan_nbytes / 1e6,
                    "redis_used_mib": redis_mib})
        out["runs"].append(run)
        if not args.keep:
            shutil.rmtree(mdir, ignore_errors=True)
    flush(r, own)
    return out


# -- report -----------------------------------------------------------------------------------
def machine_info(r: redis.Redis) -> dict[str, Any]:
    import hiredis

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": hdf5plugin.version,
        "redis_server": r.info("server").get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": hiredis.__version__,
        "package": os.path.dirname(nexus_writer.__file__),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "git": _git_rev(),
    }


def _git_rev() -> str:
    try:
        here = os.path.dirname(os.path.abspath(nexus_writer.__file__))
        rev = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=False).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def fmt(x: Any, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def print_results(results: list[dict], latency: dict | None, memory: dict | None,
                  machine: dict, args: argparse.Namespace) -> None:
    print()
    print(f"# bench_writer  {machine['date']}  scale {args.scale}  "
          f"{machine['nproc']} CPU ({machine['cpu']}), Python {machine['python']}, "
          f"h5py {machine['h5py']} / HDF5 {machine['hdf5']}, hdf5plugin {machine['hdf5plugin']}, "
          f"redis-server {machine['redis_server']}, package {machine['git']}"
          + (f", GLIBC_TUNABLES={machine['glibc_tunables']}" if machine["glibc_tunables"] else ""))
    if results:
        head = ("case", "points", "MB", "publish", "drain", "closed", "XRANGE", "h5py batch",
                "h5py merged", "h5py none", "d/(X+h)", "d/max", "Mval/s", "MB/s", "check")
        rows = []
        for res in results:
            rows.append((
                f"{res['case']} {res['label']}", str(res["points"]), fmt(res["payload_mb"], ".0f"),
                fmt(res.get("publish_s")), fmt(res.get("drain_s")), fmt(res.get("closed_s")),
                fmt(res.get("xrange_s")), fmt(res.get("h5py_batch_s")),
                fmt(res.get("h5py_merged_s")), fmt(res.get("h5py_none_s")),
                fmt(res.get("ratio_sum")), fmt(res.get("ratio_max")),
                fmt((res.get("values_per_s") or float("nan")) / 1e6),
                fmt(res.get("mb_per_s"), ".0f"), res.get("check", "")))
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print(f"seconds, best of {args.repeat}; drain = writer start -> SUCCEEDED, closed = -> "
              "file closed; ratios use h5py = min(batch, merged)")
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        for res in results:
            print(f"  {res['case']}: {res['entries']} entries, Redis {res['redis_used_mib']:.0f} MiB,"
                  f" file {fmt(res.get('file_mb'), '.0f')} MB (raw h5py "
                  f"{fmt(res.get('h5py_file_mb'), '.0f')} MB); drain median "
                  f"{fmt(res.get('drain_median_s'))} s; CPU during the fastest drain: writer "
                  f"process {fmt(res.get('writer_cpu_s'))} s, redis-server "
                  f"{fmt(res.get('redis_cpu_s'))} s, other jobs {fmt(res.get('foreign_cpu_s'))} s")
        print("targets:")
        for res in results:
            if res["case"] == "a" and res.get("values_per_s"):
                v = res["values_per_s"]
                print(f"  a: >= 1M scalar values/s: {v / 1e6:.1f} M/s -> "
                      f"{'met' if v >= 1e6 else 'NOT met'}")
            elif res["case"] in ("b", "c") and res.get("ratio_sum"):
                ok = res["ratio_sum"] <= 1.1
                print(f"  {res['case']}: drain <= 1.1 x (XRANGE + h5py): {res['ratio_sum']:.2f} -> "
                      f"{'met' if ok else 'NOT met'}; aim drain ~ max(XRANGE, h5py): "
                      f"{res['ratio_max']:.2f}")
    if latency:
        print(f"\nlatency scan.end() -> SUCCEEDED, {latency['repeat']} scans of "
              f"{latency['points']} points x {latency['channels']} channels, "
              f"{latency['batch']} points every {latency['period_s'] * 1e3:g} ms: "
              f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms, "
              f"max {latency['max_ms']:.1f} ms; to file closed p50 {latency['closed_p50_ms']:.1f} "
              f"ms, p99 {latency['closed_p99_ms']:.1f} ms; writer behind at end <= "
              f"{latency['points_behind_at_end_max']} points; states {set(latency['states'])}")
    if memory:
        runs = [x for x in memory["runs"] if "error" not in x]
        if len(runs) == 2 and runs[0]["peak_rss_delta_mib"] > 0:
            growth = runs[1]["peak_rss_delta_mib"] / runs[0]["peak_rss_delta_mib"]
            print(f"memory: peak RSS above baseline x{growth:.2f} for x4 points "
                  f"({'flat' if growth <= 1.25 else 'NOT flat'})")
        for run in memory["runs"]:
            if "error" in run:
                print(f"memory {run['points']} points: error {run['error']}")
                continue
            print(f"memory case a {run['points']} points ({run['payload_mb']:.0f} MB): "
                  f"peak RSS +{run['peak_rss_delta_mib']:.1f} MiB above "
                  f"{run['rss_before_mib']:.0f} MiB (sampled +{run['sampled_peak_delta_mib']:.1f}),"
                  f" drain {run['seconds']:.2f} s, {run['state']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the points of every case (and the memory case) by this")
    p.add_argument("--cases", default="a,b,c,d,latency,memory",
                   help="comma-separated: a, b, c, d, latency, memory (default all)")
    p.add_argument("--redis", help="Redis URL (default: start a redis-server of our own)")
    p.add_argument("--dir", help="where files go (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the files written")
    p.add_argument("--repeat", type=int, default=3,
                   help="drain, XRANGE and h5py runs per case, best kept (default 3)")
    p.add_argument("--batch", default="", help="points per send, e.g. a=100,b=10")
    p.add_argument("--channels", default="", help="number of channels, e.g. a=256")
    p.add_argument("--xrange-mib", type=float, default=4.0,
                   help="reply size of the raw XRANGE reads (default 4 MiB)")
    p.add_argument("--tuned-malloc", action="store_true",
                   help=f"re-run under GLIBC_TUNABLES={MALLOC_TUNABLES}")
    p.add_argument("--flush-period", type=float, default=1.0, help="writer option")
    p.add_argument("--compression", default="bitshuffle", help="writer option")
    p.add_argument("--timeout", type=float, default=600.0, help="per drain, seconds")
    p.add_argument("--latency-repeat", type=int, default=10)
    p.add_argument("--latency-points", type=int, default=1000)
    p.add_argument("--latency-channels", type=int, default=16)
    p.add_argument("--latency-batch", type=int, default=10)
    p.add_argument("--latency-period", type=float, default=0.01,
                   help="seconds between batches (default 10 ms: 1000 points in 1 s)")
    p.add_argument("--profile", metavar="DIR",
                   help="cProfile the scan and file threads of each drain (slower drains)")
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each case, wait up to S s for the machine to be idle")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--_mem-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_session", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tuned_malloc and os.environ.get("GLIBC_TUNABLES") != MALLOC_TUNABLES:
        env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)]
                  + (sys.argv[1:] if argv is None else list(argv)), env)
    # SIGTERM ends the run through the finally blocks (our redis-server stopped, files gone)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args._mem_child:
        mem_child(args.redis, args._session, {"flush_period": args.flush_period,
                                              "compression": args.compression}, args.timeout)
        return 0
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CASES and c not in EXTRA]
    if unknown:
        print(f"unknown case(s) {unknown}; choose from {list(CASES) + list(EXTRA)}",
              file=sys.stderr)
        return 2
    batches = dict(item.split("=") for item in args.batch.split(",") if item)
    nchannels = dict(item.split("=") for item in args.channels.split(",") if item)
    server = None
    url = args.redis
    if url is None:
        server = RedisServer().start()
        url = server.url
    r = redis.Redis.from_url(url)
    workdir = args.dir or tempfile.mkdtemp(prefix="bench-writer-")
    os.makedirs(workdir, exist_ok=True)
    results: list[dict] = []
    latency = memory = None
    t_start = time.perf_counter()
    try:
        machine = machine_info(r)
        for name in wanted:
            if args.wait_quiet:
                waited = wait_quiet(args.wait_quiet)
                print(f"(waited {waited:.0f} s for a quiet machine)", flush=True)
            if name in CASES:
                case = CASES[name]
                if name in batches:
                    case = replace(case, batch=int(batches[name]))
                if name in nchannels:
                    n = int(nchannels[name])
                    case = replace(case, nchannels=n, label=re.sub(r"^\d+", str(n), case.label))
                case = case.scaled(args.scale)
                print(f"case {name}: {case.label}, {case.points} points ...", flush=True)
                res = run_case(url, r, server is not None, case, args, workdir)
                print(f"  best: drain {fmt(res.get('drain_s'))} s, XRANGE {fmt(res['xrange_s'])} s,"
                      f" h5py {fmt(res['h5py_s'])} s, {res['check']}", flush=True)
                results.append(res)
            elif name == "latency":
                print("latency ...", flush=True)
                latency = run_latency(url, r, server is not None, args, workdir)
            elif name == "memory":
                print("memory ...", flush=True)
                memory = run_memory(url, r, server is not None, args, workdir)
        print_results(results, latency, memory, machine, args)
        print(f"\ntotal {time.perf_counter() - t_start:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine, "args": vars(args), "cases": results,
                           "latency": latency, "memory": memory}, f, indent=1, default=str)
    finally:
        flush(r, server is not None)
        r.close()
        if server is not None:
            server.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
