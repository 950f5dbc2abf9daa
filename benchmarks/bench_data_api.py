#!/usr/bin/env python
"""Throughput and listener memory of the data API (``nexus_writer.data``).

Three cases (``--cases``, default all; ``--scale`` multiplies the points):

  a  64 scalar float64 channels x 100 000 points, 1000 points per send
  b  4 MCA channels of 4096 int32 x 20 000 points, 100 points per send
  c  one 1024x1024 uint16 image channel x 200 frames, 1 frame per send

(``--batch a=N`` changes the points per send.)  For each case, in the same run
and on the same redis-server:

* publish: ``ChannelPublisher.send`` (``DataStore.create_scan`` /
  ``create_channel``, channels sent in turn as an acquisition loop would) against
  raw redis-py ``XADD`` of the same entries: same number of streams and of XADD
  calls, same entry IDs, fields and payload bytes (serialised beforehand, so the
  raw figure is the transport alone);
* read: ``ScanNode.iterator.walk_events(with_data=True)`` of the finished scan
  against two raw redis-py readers of the same streams: ``XREAD`` of all of them
  with the COUNTs the walk used (same batching: what the API itself adds), and
  ``XRANGE`` stream after stream in replies of about ``--raw-read-mib`` MiB (a
  plain client's choice: also shows what the walk's batching costs);
* listener memory: a fresh process walks a finished scan of N and of m x N points
  (``--mem-fractions``) and reports its peak RSS above its RSS before the walk
  (VmHWM, reset through /proc/self/clear_refs) and the tracemalloc peak of a
  second walk.

The table shows medians of ``--repeat`` runs (API and raw alternate which goes
first; the JSON also has the best and every run).  "pts/s" counts scan points
(one point = one value of every channel); MB = 1e6 bytes of payload.  Redis is
flushed between runs and cases (FLUSHALL on the benchmark's own server, FLUSHDB
of the URL's database with ``--redis``: do not point it at data you need).

The script re-runs itself under fixed glibc malloc thresholds (``GLIBC_TUNABLES``,
see ``_ensure_malloc_tunables``) unless ``--default-malloc`` is given.

Nothing here fails: it prints figures (and ``--json FILE`` writes them).

    .venv/bin/python benchmarks/bench_data_api.py
    .venv/bin/python benchmarks/bench_data_api.py --scale 0.1 --cases a,c --repeat 1
    .venv/bin/python benchmarks/bench_data_api.py --batch a=100 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

import nexus_writer.data as nxdata
from nexus_writer.data import DataStore, EventType
from nexus_writer.data import protocol as P
from nexus_writer.data import walk as nxwalk
from nexus_writer.data.server import RedisServer

from _common import MALLOC_TUNABLES, MIB, cpu_model, flush, sends, status_kib

TARGET = 0.8
#: glibc malloc settings the benchmark runs under (see _ensure_malloc_tunables).


@dataclass
class Case:
    name: str
    label: str
    nchannels: int
    shape: tuple[int, ...]
    dtype: str
    points: int
    batch: int

    @property
    def point_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def scan_nbytes(self) -> int:
        return self.points * self.nchannels * self.point_nbytes

    def scaled(self, points: int) -> "Case":
        return Case(self.name, self.label, self.nchannels, self.shape, self.dtype, points,
                    self.batch)


CASES = {
    "a": Case("a", "64 scalar f8 ch", 64, (), "float64", 100_000, 1000),
    "b": Case("b", "4 MCA 4096 i4", 4, (4096,), "int32", 20_000, 100),
    "c": Case("c", "1 img 1024^2 u2", 1, (1024, 1024), "uint16", 200, 1),
}

#: Scan sizes of the memory probe, fractions of the case's size: both above one read.
DEFAULT_MEM_FRACTIONS = {"a": (1.0, 4.0), "b": (0.25, 1.0), "c": (0.25, 1.0)}


# -- data ------------------------------------------------------------------------
class Pool:
    """A few distinct batches, reused round-robin so that memory stays small."""

    def __init__(self, case: Case, size: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        dt = np.dtype(case.dtype)
        size = max(1, min(size, (64 * MIB) // max(1, case.batch * case.point_nbytes)))
        shape = (case.batch,) + case.shape
        if dt.kind == "f":
            arrays = [rng.random(shape, dtype=dt) for _ in range(size)]
        else:
            info = np.iinfo(dt)
            arrays = [rng.integers(0, min(info.max, 60000), shape, dtype=dt) for _ in range(size)]
        # batch 1: send one point (its natural shape), as an acquisition loop would
        self.arrays = [a[0] if case.batch == 1 else a for a in arrays]
        self.bytes = [a.tobytes() for a in arrays]

    def __len__(self) -> int:
        return len(self.arrays)


# -- the measured operations -----------------------------------------------------
def publish_api(url: str, case: Case, pool: Pool, scan_nb: int) -> tuple[float, str]:
    """Seconds spent in ``send`` for the whole scan; the scan's key."""
    store = DataStore(url)
    try:
        scan = store.create_scan("bench", {"scan_nb": scan_nb, "name": f"case_{case.name}"})
        channels = [scan.create_channel(f"ch{i}", case.dtype, case.shape)
                    for i in range(case.nchannels)]
        scan.start()
        k = 0
        npool = len(pool)
        arrays = pool.arrays
        t0 = time.perf_counter()
        for _, n in sends(case):
            for ch in channels:
                a = arrays[k % npool]
                ch.send(a if n == case.batch else a[:n])
                k += 1
        elapsed = time.perf_counter() - t0
        scan.end()
        return elapsed, scan.key
    finally:
        store.close()


def publish_raw(url: str, case: Case, pool: Pool) -> tuple[float, list[str]]:
    """The same XADDs straight through redis-py, payload bytes prepared beforehand."""
    r = redis.Redis.from_url(url)
    r.ping()  # connected before the clock starts, as the API's store is
    keys = [f"bench:raw:{case.name}:{i}" for i in range(case.nchannels)]
    plan = [(f"{first}-1", str(n).encode(), n) for first, n in sends(case)]
    partial = {n: [b[: n * case.point_nbytes] for b in pool.bytes]
               for _, _, n in plan if n != case.batch}
    payloads = pool.bytes
    npool = len(payloads)
    k = 0
    try:
        t0 = time.perf_counter()
        for entry_id, count, n in plan:
            data = payloads if n == case.batch else partial[n]
            for key in keys:
                r.xadd(key, {b"n": count, b"d": data[k % npool]}, id=entry_id)
                k += 1
        return time.perf_counter() - t0, keys
    finally:
        r.close()


def consume_walk(store: DataStore, key: str, counts: list | None = None) -> tuple[int, int]:
    """Walk a finished scan with data; (channel points, payload bytes) received.

    ``counts``: if given, receives (COUNT, number of data streams) of every XREAD the
    walk makes, for the raw XREAD baseline to read with the same batching.
    """
    client = store.redis
    if counts is not None:
        xread = client.xread
        events_key = P.scan_events_key(key)

        def recording_xread(streams, count=None, block=None, **kw):  # noqa: ANN001, ANN202
            counts.append((count, sum(1 for k in streams if k != events_key)))
            return xread(streams, count=count, block=block, **kw)

        client.xread = recording_xread
    try:
        points = nbytes = 0
        for event, _node, data in store.get_scan_node(key).iterator.walk_events(with_data=True):
            if event is EventType.NEW_DATA_IN_CHANNEL:
                points += len(data.data)
                nbytes += data.data.nbytes
            elif event is EventType.ERROR:
                print(f"  walk error: {data.description}", file=sys.stderr)
        return points, nbytes
    finally:
        if counts is not None:
            del client.xread


def read_api(url: str, key: str) -> tuple[float, int, int, list[int]]:
    """(seconds, channel points, bytes, COUNT of each XREAD that read data streams).

    The listener's connection is made before the clock starts, as for the raw reads.
    """
    counts: list[tuple[int, int]] = []
    store = DataStore(url)
    try:
        t0 = time.perf_counter()
        points, nbytes = consume_walk(store, key, counts)
        elapsed = time.perf_counter() - t0
    finally:
        store.close()
    return elapsed, points, nbytes, [c for c, ndata in counts if ndata and c]


def read_raw_xrange(url: str, keys: list[str], entry_nbytes: int,
                    reply_bytes: int) -> tuple[float, int]:
    """XRANGE each stream in turn, about ``reply_bytes`` per reply; (seconds, bytes)."""
    r = redis.Redis.from_url(url)
    r.ping()  # connected before the clock starts
    count = max(1, min(100_000, reply_bytes // max(1, entry_nbytes)))
    nbytes = 0
    try:
        t0 = time.perf_counter()
        for key in keys:
            low = "-"
            while True:
                entries = r.xrange(key, min=low, max="+", count=count)
                for _, fields in entries:
                    nbytes += len(fields[b"d"])
                if len(entries) < count:
                    break
                low = "(" + entries[-1][0].decode()
                entries = fields = None  # free this reply before receiving the next one
        return time.perf_counter() - t0, nbytes
    finally:
        r.close()


def read_raw_xread(url: str, keys: list[str], counts: list[int]) -> tuple[float, int]:
    """XREAD all the streams at once with the COUNTs the walk used; (seconds, bytes)."""
    r = redis.Redis.from_url(url)
    r.ping()  # connected before the clock starts
    counts = counts or [1024]
    last_ids: dict[Any, Any] = {k: "0-0" for k in keys}
    nbytes = 0
    try:
        t0 = time.perf_counter()
        for i in itertools.count():
            resp = r.xread(last_ids, count=counts[min(i, len(counts) - 1)])
            if not resp:
                break
            for stream, entries in resp:
                last_ids[stream.decode()] = entries[-1][0]
                for _, fields in entries:
                    nbytes += len(fields[b"d"])
            resp = entries = fields = None  # free this reply before receiving the next one
        return time.perf_counter() - t0, nbytes
    finally:
        r.close()


# -- listener memory, in a fresh process -----------------------------------------
def probe_main(url: str, key: str) -> None:
    """Child process: peak memory of walking ``key``; prints one JSON line."""
    import tracemalloc

    # No warm-up walk: the heap it would leave behind would hide the walk's own peak.
    store = DataStore(url)
    gc.collect()
    base = status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    t0 = time.perf_counter()
    points, nbytes = consume_walk(store, key)
    seconds = time.perf_counter() - t0
    peak = status_kib("VmHWM") if hwm_reset else None
    if peak is None:  # fall back on the lifetime peak
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    tracemalloc.start()
    consume_walk(store, key)
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    print(json.dumps({"points": points, "nbytes": nbytes, "seconds": seconds,
                      "rss_before_mib": (base or 0) / 1024,
                      "peak_rss_delta_mib": (peak - (base or 0)) / 1024,
                      "hwm_reset": hwm_reset, "tracemalloc_peak_mib": tm_peak / MIB}))


def probe(url: str, key: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--_probe", url, key],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- driver -----------------------------------------------------------------------
def rate(case: Case, seconds: float) -> dict[str, float]:
    return {"seconds": seconds, "pts_per_s": case.points / seconds,
            "mb_per_s": case.scan_nbytes / seconds / 1e6}


COMPARISONS = (  # (op, API run, raw run, what the raw run does)
    ("publish", "publish_api", "publish_raw", "XADD, same IDs/fields/bytes/calls"),
    ("read", "read_api", "read_raw_xread", "XREAD all streams, walk's COUNTs"),
    ("read", "read_api", "read_raw_xrange", "XRANGE per stream, ~{mib:g} MiB replies"),
)


def run_case(url: str, r: redis.Redis, own: bool, case: Case, args: argparse.Namespace,
             scan_nb: list[int]) -> dict[str, Any]:
    pool = Pool(case)
    entry_nbytes = case.batch * case.point_nbytes
    reply_bytes = int(args.raw_read_mib * MIB)
    runs: dict[str, list[dict]] = {k: [] for k in ("publish_api", "publish_raw", "read_api",
                                                   "read_raw_xread", "read_raw_xrange")}
    walk_counts: list[int] = []
    expected_points = case.points * case.nchannels
    for rep in range(args.repeat):
        # alternate which goes first: a fresh redis-server grows its memory on the first run
        order = ("api", "raw") if rep % 2 == 0 else ("raw", "api")
        for which in order:
            flush(r, own)
            gc.collect()
            if which == "api":
                scan_nb[0] += 1
                secs, key = publish_api(url, case, pool, scan_nb[0])
                runs["publish_api"].append(rate(case, secs))
                secs, points, nbytes, walk_counts = read_api(url, key)
                if points != expected_points or nbytes != case.scan_nbytes:
                    print(f"  WARNING case {case.name}: walk returned {points} points / "
                          f"{nbytes} bytes, expected {expected_points} / {case.scan_nbytes}",
                          file=sys.stderr)
                runs["read_api"].append(dict(rate(case, secs), xread_counts=walk_counts))
            else:
                secs, keys = publish_raw(url, case, pool)
                runs["publish_raw"].append(rate(case, secs))
                reads = (("read_raw_xrange", lambda: read_raw_xrange(url, keys, entry_nbytes,
                                                                      reply_bytes)),
                         ("read_raw_xread", lambda: read_raw_xread(url, keys, walk_counts)))
                for name, fn in (reads if rep % 2 == 0 else reads[::-1]):
                    secs, nbytes = fn()
                    if nbytes != case.scan_nbytes:
                        print(f"  WARNING case {case.name}: {name} read {nbytes} bytes, "
                              f"expected {case.scan_nbytes}", file=sys.stderr)
                    runs[name].append(rate(case, secs))
            flush(r, own)
    median = {k: rate(case, statistics.median(x["seconds"] for x in v)) for k, v in runs.items()}
    best = {k: rate(case, min(x["seconds"] for x in v)) for k, v in runs.items()}
    result: dict[str, Any] = {
        "case": case.name, "label": case.label, "channels": case.nchannels,
        "point_shape": list(case.shape), "dtype": case.dtype, "points": case.points,
        "batch": case.batch, "entry_bytes": entry_nbytes,
        "xadd_calls": case.nchannels * len(list(sends(case))),
        "scan_mb": case.scan_nbytes / 1e6, "runs": runs, "median": median, "best": best,
        "walk_xread_counts": walk_counts,
        "raw_xrange_count": max(1, min(100_000, reply_bytes // entry_nbytes)),
        "ratios": {f"{api}/{raw}": {"median": median[api]["mb_per_s"] / median[raw]["mb_per_s"],
                                    "best": best[api]["mb_per_s"] / best[raw]["mb_per_s"]}
                   for _, api, raw, _ in COMPARISONS},
    }
    if not args.no_memory:
        mem = []
        for frac in args.mem_fractions or DEFAULT_MEM_FRACTIONS[case.name]:
            sub = case.scaled(max(1, int(round(case.points * frac))))
            flush(r, own)
            scan_nb[0] += 1
            _, key = publish_api(url, sub, pool, scan_nb[0])
            m = probe(url, key)
            m.update(fraction=frac, scan_points=sub.points, scan_mb=sub.scan_nbytes / 1e6)
            mem.append(m)
            flush(r, own)
        result["memory"] = mem
    return result


def machine_info(r: redis.Redis) -> dict[str, Any]:
    import hiredis

    info = r.info("server")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": hiredis.__version__,
        "numpy": np.__version__,
        "data_api": os.path.dirname(nxdata.__file__),
        "loadavg_start": _loadavg(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "source": _source_version(os.path.dirname(nxdata.__file__)),
    }


def _source_version(path: str) -> str:
    """Git commit of the data API's checkout, '+dirty' if it has local changes."""
    try:
        head = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "not a git checkout"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _counts_text(counts: list[int]) -> str:
    """[1, 16, 16, 16, 7] -> '1, 16 x3, 7'."""
    out = []
    for value, group in itertools.groupby(counts):
        n = len(list(group))
        out.append(f"{value} x{n}" if n > 1 else str(value))
    return ", ".join(out)


def print_tables(results: list[dict], machine: dict, args: argparse.Namespace) -> None:
    print()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu']}), Python {machine['python']}, "
          f"redis-server {machine['redis_server']}, redis-py {machine['redis_py']}, "
          f"hiredis {machine['hiredis']}, numpy {machine['numpy']}")
    print(f"data API: {machine['data_api']} (git {machine['source']}); load average at start {machine['loadavg_start']}, "
          f"at end {machine['loadavg_end']} (other work on the machine skews the figures)")
    print(f"GLIBC_TUNABLES={machine['glibc_tunables'] or '(glibc defaults)'}")
    print(f"median of {args.repeat} runs (best-of in --json); pts/s = scan points/s, MB = 1e6 B")
    print()
    hdr = (f"{'case':<19} {'op':<7} {'API s':>7} {'API pts/s':>11} {'API MB/s':>9}  "
           f"{'raw baseline':<40} {'raw MB/s':>9} {'API/raw':>8}  target>={TARGET}")
    print(hdr)
    print("-" * len(hdr))
    for res in results:
        m = res["median"]
        name = f"{res['case']} {res['label']}"
        last_op = None
        for op, api_k, raw_k, what in COMPARISONS:
            api, raw = m[api_k], m[raw_k]
            ratio = res["ratios"][f"{api_k}/{raw_k}"]["median"]
            api_cols = (f"{api['seconds']:>7.3f} {api['pts_per_s']:>11,.0f} {api['mb_per_s']:>9.1f}"
                        if op != last_op else f"{'':>7} {'':>11} {'':>9}")
            print(f"{name:<19} {op if op != last_op else '':<7} {api_cols}  "
                  f"{what.format(mib=args.raw_read_mib):<40} {raw['mb_per_s']:>9.1f} {ratio:>8.2f}  "
                  f"{'met' if ratio >= TARGET else 'NOT met'}")
            name, last_op = "", op
    print()
    for res in results:
        print(f"case {res['case']}: {res['batch']} point(s) per send, {res['xadd_calls']} XADDs of "
              f"{res['entry_bytes']:,} B; walk XREAD COUNTs: {_counts_text(res['walk_xread_counts'])}"
              f"; raw XRANGE COUNT {res['raw_xrange_count']}")
    if any("memory" in r for r in results):
        print()
        print("listener memory: a fresh process walks a finished scan (with_data=True)")
        hdr = (f"{'case':<19} {'points':>8} {'scan MB':>8} {'walk s':>7} {'RSS before':>10} "
               f"{'peak RSS +MiB':>13} {'tracemalloc MiB':>15}")
        print(hdr)
        print("-" * len(hdr))
        for res in results:
            name = f"{res['case']} {res['label']}"
            mem = res.get("memory", [])
            for m in mem:
                if "error" in m:
                    print(f"{name:<19} probe failed: {m['error'][-300:]}")
                    continue
                print(f"{name:<19} {m['scan_points']:>8} {m['scan_mb']:>8.1f} {m['seconds']:>7.3f} "
                      f"{m['rss_before_mib']:>10.1f} {m['peak_rss_delta_mib']:>13.1f} "
                      f"{m['tracemalloc_peak_mib']:>15.1f}")
                name = ""
            ok = [m for m in mem if "error" not in m]
            if len(ok) >= 2:
                lo, hi = ok[0], ok[-1]
                rss = hi["peak_rss_delta_mib"] / max(lo["peak_rss_delta_mib"], 1.0)
                traced = hi["tracemalloc_peak_mib"] / max(lo["tracemalloc_peak_mib"], 1.0)
                verdict = "flat" if max(rss, traced) <= 1.25 else "GROWS with scan length"
                budget = getattr(nxwalk, "READ_BUDGET", None)
                if budget and lo["scan_mb"] * 1e6 < budget:
                    verdict += (f" (the smaller scan is below the walk's READ_BUDGET of "
                                f"{budget / MIB:g} MiB: flatness shows on bigger scans)")
                print(f"{'':<19} x{hi['scan_points'] / lo['scan_points']:g} points -> peak RSS "
                      f"x{rss:.2f}, tracemalloc peak x{traced:.2f}: {verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", metavar="URL", help="use this Redis (FLUSHDB'd!) instead of "
                   "starting a redis-server")
    p.add_argument("--cases", default="a,b,c", help="comma-separated among a,b,c (default all)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the points of every case")
    p.add_argument("--batch", action="append", default=[], metavar="CASE=N",
                   help="points per send for a case (defaults a=1000, b=100, c=1)")
    p.add_argument("--repeat", type=int, default=5,
                   help="runs per measurement (default 5); the table shows medians")
    p.add_argument("--raw-read-mib", type=float, default=4.0,
                   help="approximate reply size of the raw XRANGE reads (default 4 MiB)")
    p.add_argument("--mem-fractions", default=None,
                   help="scan sizes of the memory probe, as fractions of each case's size "
                        "(default: a 1,4 -- its full scan is below the walk's 64 MiB read "
                        "budget -- and b, c 0.25,1)")
    p.add_argument("--no-memory", action="store_true", help="skip the listener memory probe")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default malloc thresholds (else the benchmark re-runs "
                        f"itself with GLIBC_TUNABLES={MALLOC_TUNABLES})")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    p.add_argument("--_probe", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mem_fractions is not None:
        args.mem_fractions = [float(x) for x in args.mem_fractions.split(",") if x.strip()]
    return args


def _ensure_malloc_tunables(args: argparse.Namespace) -> None:
    """Re-run this script under MALLOC_TUNABLES unless told not to (or already set).

    With glibc's defaults, freeing a reply of multi-MiB entries often returns its
    memory to the OS and the next reply page-faults it back: that alone changes read
    rates by up to 2x depending on incidental allocation order, API and raw alike.
    Fixed thresholds make API and raw figures comparable (and are what a listener
    process should run with, see docs/benchmarks.md).
    """
    if (args.default_malloc or os.environ.get("GLIBC_TUNABLES")
            or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._probe:
        probe_main(*args._probe)
        return 0
    if argv is None:
        _ensure_malloc_tunables(args)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose among {sorted(CASES)}")
    batches = {}
    for item in args.batch:
        k, _, v = item.partition("=")
        if k not in CASES or not v.isdigit() or int(v) < 1:
            raise SystemExit(f"--batch {item!r}: expected CASE=N with CASE in a,b,c and N >= 1")
        batches[k] = int(v)
    cases = []
    for c in names:
        base = CASES[c]
        points = max(1, int(round(base.points * args.scale)))
        case = base.scaled(points)
        case.batch = min(batches.get(c, base.batch), points)
        cases.append(case)

    server = None
    if args.redis:
        url, own = args.redis, False
    else:
        server = RedisServer().start()
        url, own = server.url, True
    r = redis.Redis.from_url(url)
    try:
        machine = machine_info(r)
        print(f"bench_data_api: redis {url} ({'own redis-server' if own else 'external'}), "
              f"repeat {args.repeat}, scale {args.scale:g}")
        results = []
        scan_nb = [0]
        for case in cases:
            t0 = time.perf_counter()
            print(f"case {case.name} ({case.label}): {case.nchannels} ch x {case.points} points "
                  f"of {case.dtype}{list(case.shape)}, {case.batch} point(s) per send "
                  f"({case.batch * case.point_nbytes} B per XADD), {case.scan_nbytes / 1e6:.1f} MB",
                  flush=True)
            results.append(run_case(url, r, own, case, args, scan_nb))
            print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
        machine["loadavg_end"] = _loadavg()
        print_tables(results, machine, args)
        if args.json:
            doc = {"machine": machine, "argv": sys.argv, "target": TARGET, "cases": results}
            text = json.dumps(doc, indent=2)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
    finally:
        r.close()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
