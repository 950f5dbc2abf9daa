"""20 scans in 3 sessions published concurrently from threads, each session followed
by its own listener thread, each scan walked in its own thread while it runs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nexus_writer.data import EventType

pytestmark = pytest.mark.timeout(60)

SESSIONS = {"sess_a": 7, "sess_b": 7, "sess_c": 6}
CHANNELS = {"t": ("float64", ()), "spec": ("int32", (16,)), "img": ("uint16", (4, 5)),
            "var": ("float32", (-1,))}


def make_data(rng) -> dict:
    n = int(rng.integers(20, 50))
    out = {}
    for name, (dtype, shape) in CHANNELS.items():
        dt = np.dtype(dtype)
        if name == "var":
            out[name] = [rng.integers(0, 256, size=4 * int(k), dtype=np.uint8).view(dt)
                         for k in rng.integers(0, 9, size=n)]
        else:
            size = n * int(np.prod(shape)) * dt.itemsize
            out[name] = rng.integers(0, 256, size=size, dtype=np.uint8).view(dt).reshape(
                (n,) + shape)
    return out


def test_concurrent_scans_in_three_sessions(store):
    rng = np.random.default_rng(42)
    jobs = [(session, nb, make_data(rng), int(rng.integers(1 << 30)))
            for session, count in SESSIONS.items() for nb in range(1, count + 1)]
    assert len(jobs) == 20
    produced: dict[str, dict[str, dict]] = {s: {} for s in SESSIONS}  # session -> key -> data
    received: dict[str, dict[str, list]] = {s: {} for s in SESSIONS}  # session -> key -> events
    seen: dict[str, list] = {s: [] for s in SESSIONS}
    failures: list = []
    lock = threading.Lock()
    start = threading.Barrier(len(jobs))

    def produce(session, nb, data, seed):
        try:
            prng = np.random.default_rng(seed)
            start.wait(10)
            scan = store.create_scan(session, {"scan_nb": nb, "type": "loopscan"})
            with lock:
                produced[session][scan.key] = data
            scan.start()
            pubs = {name: scan.create_channel(name, dtype, shape)
                    for name, (dtype, shape) in CHANNELS.items()}
            n = len(data["t"])
            i = 0
            while i < n:
                j = min(n, i + int(prng.integers(1, 7)))
                for name, pub in pubs.items():
                    pub.send(list(data[name][i:j]) if name == "var" else data[name][i:j])
                i = j
                time.sleep(float(prng.uniform(0, 0.003)))
            scan.end()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    def walk_scan(session, scan_node):
        try:
            events = list(scan_node.walk_events(with_data=True, timeout=15, block=0.1))
            with lock:
                received[session][scan_node.key] = events
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    walkers: list[threading.Thread] = []

    def listen(session, gen):
        try:
            ended = 0
            for event, scan_node in gen:
                if event is EventType.NEW_NODE:
                    seen[session].append(scan_node.key)
                    t = threading.Thread(target=walk_scan, args=(session, scan_node))
                    t.start()
                    with lock:
                        walkers.append(t)
                elif event is EventType.END_SCAN:
                    ended += 1
                    if ended == SESSIONS[session]:
                        return
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    listeners = []
    for session in SESSIONS:
        gen = store.get_session_node(session).walk_on_new_events(from_next=True, timeout=20,
                                                                 block=0.1)
        listeners.append(threading.Thread(target=listen, args=(session, gen)))
    producers = [threading.Thread(target=produce, args=job) for job in jobs]
    for t in listeners + producers:
        t.start()
    for t in producers + listeners:
        t.join(40)
    for t in list(walkers):
        t.join(40)
    assert not failures, failures
    assert not any(t.is_alive() for t in producers + listeners + walkers)

    for session in SESSIONS:
        assert sorted(seen[session]) == sorted(produced[session])  # exactly its scans
        assert len(seen[session]) == len(set(seen[session])) == SESSIONS[session]
        assert set(received[session]) == set(produced[session])
        for key, events in received[session].items():
            data = produced[session][key]
            assert events[-1][0] is EventType.END_SCAN
            assert events[-1][1].session == session
            assert EventType.ERROR not in [e for e, _, _ in events]
            got: dict[str, list] = {}
            for event, node, ed in events:
                if event is EventType.NEW_DATA_IN_CHANNEL:
                    assert ed.first_index == sum(len(x) for x in got.get(node.name, []))
                    got.setdefault(node.name, []).append(ed.data)
            assert set(got) == set(CHANNELS)
            for name, parts in got.items():
                if name == "var":
                    flat = [p for part in parts for p in part]
                    assert len(flat) == len(data[name])
                    for g, e in zip(flat, data[name]):
                        assert g.dtype == e.dtype and g.tobytes() == e.tobytes()
                else:
                    g = np.concatenate(parts)
                    e = data[name]
                    assert g.dtype == e.dtype and g.shape == e.shape
                    assert g.tobytes() == e.tobytes()
