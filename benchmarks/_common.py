"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``,
which puts this folder on ``sys.path``)."""

from __future__ import annotations

import platform
import re
from typing import Any, Iterator

import redis

MIB = 2**20
#: glibc malloc thresholds that keep multi-MiB replies from being given back to the
#: OS and page-faulted in again for the next one (see docs/benchmarks.md).
MALLOC_TUNABLES = "glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432"


def sends(case: Any) -> Iterator[tuple[int, int]]:
    """(first point index, points in this send) of each batch of ``case``, in order."""
    first = 0
    while first < case.points:
        n = min(case.batch, case.points - first)
        yield first, n
        first += n


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def flush(r: redis.Redis, own_server: bool) -> None:
    """Empty Redis between runs: the whole server if the script started it."""
    if own_server:
        r.flushall()
    else:
        r.flushdb()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()
