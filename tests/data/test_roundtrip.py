"""Round trip of every numeric dtype through Redis, bit-exact.

Each scan holds 0D, 1D, 2D and variable-length channels of one dtype, filled with
random bytes (so floats include NaNs with payloads, infinities and subnormals) plus
the dtype's extreme values.  Data is read back with ``ChannelNode.get`` (whole and
partial ranges crossing batch boundaries) and with ``walk_events(with_data=True)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nexus_writer.data import ChannelNode, EventType

pytestmark = pytest.mark.timeout(30)

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64"]
FIXED_SHAPES = {"s0d": (), "s1d": (3,), "s2d": (2, 3)}
VARIABLE_SHAPES = {"v1d": (-1,), "v2d": (2, -1)}
NPOINTS = 23
BATCHES = [1, 4, 2, 7, 3, 6]  # cycled: boundaries at 1, 5, 7, 14, 17, 23


def special_values(dt: np.dtype) -> np.ndarray:
    """Extreme and odd values of ``dt``, as an array of ``dt``."""
    if dt.kind == "b":
        return np.array([True, False], dtype=dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        vals = [info.min, info.max, 0, 1] + ([-1] if dt.kind == "i" else [info.max - 1])
        return np.array(vals, dtype=dt)
    info = np.finfo(dt)
    vals = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, info.max, info.min,
                     info.tiny, info.smallest_subnormal, info.eps], dtype=dt)
    # A NaN with a payload (lowest mantissa bit set): must survive bit-exact.
    uint = np.dtype(f"u{dt.itemsize}")
    exp_bits = {2: 0x7C00, 4: 0x7F800000, 8: 0x7FF0000000000000}[dt.itemsize]
    payload_nan = np.array([exp_bits | 1], dtype=uint).view(dt)
    return np.concatenate([vals, payload_nan])


def random_points(dt: np.dtype, shape: tuple[int, ...], n: int, rng) -> np.ndarray:
    """``n`` points of ``shape``: random bytes, the first ones overwritten by specials."""
    size = n * math.prod(shape)
    if dt.kind == "b":
        flat = rng.integers(0, 2, size=size).astype(dt)
    else:
        flat = rng.integers(0, 256, size=size * dt.itemsize, dtype=np.uint8).view(dt).copy()
    specials = special_values(dt)
    k = min(len(specials), size)
    flat[:k] = specials[:k]
    return flat.reshape((n,) + shape)


def random_variable_points(dt: np.dtype, shape: tuple[int, ...], n: int, rng) -> list:
    """``n`` points whose ``-1`` dimensions have random lengths 0..5 (some empty)."""
    points = []
    for i in range(n):
        pshape = tuple(int(rng.integers(0, 6)) if d < 0 else d for d in shape)
        if i == 1:  # always one empty point
            pshape = tuple(0 if d < 0 else d for d in shape)
        points.append(random_points(dt, pshape, 1, rng)[0])
    return points


def batch_bounds(mode: str, n: int) -> list[tuple[int, int]]:
    if mode == "single":
        return [(i, i + 1) for i in range(n)]
    out, i, k = [], 0, 0
    while i < n:
        j = min(n, i + BATCHES[k % len(BATCHES)])
        out.append((i, j))
        i, k = j, k + 1
    return out


def assert_same_fixed(got, expected: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def assert_same_variable(got, expected: list) -> None:
    assert isinstance(got, list)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype
        assert g.shape == e.shape
        assert g.tobytes() == e.tobytes()


def publish_all(store, dtype: str, mode: str, seed: int):
    """One scan with one channel per shape; returns (scan publisher, expected data)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    scan = store.create_scan("rt_session", {"scan_nb": 1, "type": "loopscan"})
    scan.start()
    expected: dict = {}
    pubs = {}
    for name, shape in FIXED_SHAPES.items():
        pubs[name] = scan.create_channel(name, dt, shape)
        expected[name] = random_points(dt, shape, NPOINTS, rng)
    for name, shape in VARIABLE_SHAPES.items():
        pubs[name] = scan.create_channel(name, dt, shape)
        expected[name] = random_variable_points(dt, shape, NPOINTS, rng)
    bounds = batch_bounds(mode, NPOINTS)
    for a, b in bounds:  # interleave the channels' streams
        for name, pub in pubs.items():
            if name in FIXED_SHAPES:
                pub.send(expected[name][a] if mode == "single" else expected[name][a:b])
            else:
                pub.send(expected[name][a] if mode == "single" else list(expected[name][a:b]))
    scan.end()
    return scan, expected, bounds


def check_ranges(node: ChannelNode, expected, bounds) -> None:
    n = len(expected)
    ranges = [(0, -1), (0, n), (0, n + 10), (1, n - 1), (n, -1), (n - 1, n), (3, 3), (5, 2),
              (0, 0), (n + 2, -1)]
    # Ranges starting/ending one point either side of every batch boundary.
    for a, b in bounds[1:]:
        ranges += [(a - 1, b + 1), (a, -1), (a - 1, a + 1), (max(a - 3, 0), min(b + 3, n))]
    for start, stop in ranges:
        got = node.get(start, stop)
        want = expected[start:] if stop < 0 else expected[start:stop]
        if node.definition.variable:
            assert_same_variable(got, list(want))
        else:
            assert_same_fixed(got, want)


@pytest.mark.parametrize("mode", ["single", "batch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_get(store, dtype, mode):
    scan, expected, bounds = publish_all(store, dtype, mode, seed=DTYPES.index(dtype))
    nodes = {n.name: n for n in store.get_scan_node(scan.key).nodes()}
    assert list(nodes) == list(FIXED_SHAPES) + list(VARIABLE_SHAPES)
    for name, node in nodes.items():
        assert isinstance(node, ChannelNode)
        assert node.dtype == np.dtype(dtype)
        assert node.shape == {**FIXED_SHAPES, **VARIABLE_SHAPES}[name]
        assert node.count() == NPOINTS
        check_ranges(node, expected[name], bounds)


@pytest.mark.parametrize("mode", ["single", "batch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_walk(store, dtype, mode):
    scan, expected, bounds = publish_all(store, dtype, mode, seed=100 + DTYPES.index(dtype))
    got: dict[str, list] = {}
    firsts: dict[str, list[int]] = {}
    events = list(store.get_scan_node(scan.key).walk_events(with_data=True, timeout=10))
    assert [e for e, _, _ in events].count(EventType.ERROR) == 0
    assert events[-1][0] is EventType.END_SCAN
    for event, node, data in events:
        if event is EventType.NEW_DATA_IN_CHANNEL:
            assert data.first_index == sum(len(x) for x in got.get(node.name, []))
            got.setdefault(node.name, []).append(data.data)
            firsts.setdefault(node.name, []).append(data.first_index)
    assert set(got) == set(expected)
    for name, parts in got.items():
        # Each entry is one batch as sent.
        assert firsts[name] == [a for a, _ in bounds]
        if name in FIXED_SHAPES:
            assert_same_fixed(np.concatenate(parts), expected[name])
        else:
            assert_same_variable([p for part in parts for p in part], expected[name])


def test_variable_batch_as_2d_array(store):
    """A variable-length channel also takes a batch as one array of equal-length points."""
    scan = store.create_scan("rt_session", {"scan_nb": 2})
    ch = scan.create_channel("spectrum", "uint16", (-1,))
    a = np.arange(12, dtype=np.uint16).reshape(3, 4)
    b = np.arange(10, dtype=np.uint16).reshape(5, 2)
    ch.send(a)
    ch.send(b)
    ch.send(np.array([7, 8, 9], dtype=np.uint16))  # one point
    scan.end()
    node = store.get_scan_node(scan.key).nodes()[0]
    got = node.get()
    assert [p.shape for p in got] == [(4,)] * 3 + [(2,)] * 5 + [(3,)]
    assert_same_variable(got, list(a) + list(b) + [np.array([7, 8, 9], dtype=np.uint16)])


def test_non_native_byte_order_is_converted(store):
    """Same dtype in the other byte order: accepted, stored as declared, values equal."""
    scan = store.create_scan("rt_session", {"scan_nb": 3})
    ch = scan.create_channel("x", "<i4")
    data = np.array([1, -2, 2**31 - 1], dtype=">i4")
    ch.send(data)
    scan.end()
    got = store.get_scan_node(scan.key).nodes()[0].get()
    assert got.dtype == np.dtype("<i4")
    assert got.tolist() == [1, -2, 2**31 - 1]


def test_python_numbers_round_trip(store):
    """Python numbers and nested lists are converted to the channel's dtype."""
    scan = store.create_scan("rt_session", {"scan_nb": 4})
    f = scan.create_channel("f", "float32")
    i = scan.create_channel("i", "uint64", (2,))
    b = scan.create_channel("b", "bool")
    f.send(0.1)
    f.send([1, 2.5, float("nan")])
    i.send([2**64 - 1, 0])
    i.send([[1, 2], [3, 4]])
    b.send(True)
    b.send([0, 1, False])
    scan.end()
    nodes = {n.name: n for n in store.get_scan_node(scan.key).nodes()}
    assert_same_fixed(nodes["f"].get(), np.array([0.1, 1, 2.5, np.nan], dtype=np.float32))
    assert_same_fixed(nodes["i"].get(), np.array([[2**64 - 1, 0], [1, 2], [3, 4]],
                                                 dtype=np.uint64))
    assert_same_fixed(nodes["b"].get(), np.array([True, False, True, False]))


def test_empty_channel(store):
    scan = store.create_scan("rt_session", {"scan_nb": 5})
    scan.create_channel("nothing", "float64", (4,))
    scan.create_channel("vnothing", "int8", (-1,))
    scan.end()
    nodes = {n.name: n for n in store.get_scan_node(scan.key).nodes()}
    assert_same_fixed(nodes["nothing"].get(), np.empty((0, 4)))
    assert nodes["vnothing"].get() == []
    assert nodes["nothing"].count() == 0
    events = list(store.get_scan_node(scan.key).walk_events(with_data=True, timeout=5))
    assert [e for e, _, _ in events] == [EventType.NEW_NODE, EventType.NEW_NODE,
                                         EventType.END_SCAN]
