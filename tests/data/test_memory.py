"""A listener's memory stays flat in the scan length and bounded by the read budget."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nexus_writer.data import EventType, walk

pytestmark = pytest.mark.timeout(60)


def publish(store, number: int, npoints: int, point_shape: tuple[int, ...], dtype="float64"):
    scan = store.create_scan("mem_session", {"scan_nb": number})
    ch = scan.create_channel("spectrum", dtype, point_shape)
    point = np.zeros(point_shape, dtype=dtype)
    # One entry per point: the worst case for a reader (most entries per byte).
    for i in range(npoints):
        point.flat[0] = i
        ch.send(point)
    scan.end()
    return scan


def walk_peak(store, scan) -> tuple[int, int]:
    """Peak traced memory of a full walk with data, and the points seen."""
    node = store.get_scan_node(scan.key)
    seen = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for event, _, data in node.walk_events(with_data=True, timeout=20):
            if event is EventType.NEW_DATA_IN_CHANNEL:
                assert data.data[0].flat[0] == seen  # points in order, nothing dropped
                seen += len(data.data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, seen


def test_walk_memory_flat_in_scan_length(store):
    n = 1500  # above one read's worth of entries (1024)
    small = publish(store, 1, n, (100,))
    large = publish(store, 2, 4 * n, (100,))
    peak_small, seen_small = walk_peak(store, small)
    peak_large, seen_large = walk_peak(store, large)
    assert (seen_small, seen_large) == (n, 4 * n)
    data_large = 4 * n * 100 * 8  # 4.8 MB: holding it would show
    assert peak_large < 1.5 * peak_small + 256 * 1024, (peak_small, peak_large)
    assert peak_large < data_large / 2, (peak_small, peak_large)


def test_walk_memory_bounded_by_read_budget(store, monkeypatch):
    """Big entries: even the first read must respect the budget (the entry size is not
    known before anything was read)."""
    budget = 1 << 20
    monkeypatch.setattr(walk, "READ_BUDGET", budget)
    point = (256 * 1024,)  # 256 KiB per entry, 10 MiB in all
    scan = publish(store, 3, 40, point, dtype="uint8")
    peak, seen = walk_peak(store, scan)
    assert seen == 40
    assert peak < 3 * budget, peak
