"""Listener side: replaying scans, following sessions, late listeners, resuming,
timeouts, stop events and the scan's state and info."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from nexus_writer.data import EventType, LimaReference, ScanTimeoutError
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

SESSION = "walk_session"
NEW, DATA, END, ERROR = (EventType.NEW_NODE, EventType.NEW_DATA_IN_CHANNEL, EventType.END_SCAN,
                         EventType.ERROR)


def concat(parts: list, variable: bool = False):
    """Concatenation of the ``EventData.data`` of one node's data events."""
    if variable or not parts or not isinstance(parts[0], np.ndarray):
        return [p for part in parts for p in part]
    return np.concatenate(parts)


def by_node(events) -> dict[str, list]:
    """Node name -> its data events' EventData, in order."""
    out: dict[str, list] = {}
    for event, node, data in events:
        if event is DATA:
            out.setdefault(node.name, []).append(data)
    return out


def assert_contiguous(datas: list, start: int = 0) -> None:
    """Data events of one node follow each other without gap or overlap."""
    index = start
    for d in datas:
        assert d.first_index == index
        index += len(d.data)


def assert_bytes_equal(got, expected) -> None:
    if isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()
    else:
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            if isinstance(e, np.ndarray):
                assert g.dtype == e.dtype and g.tobytes() == e.tobytes() and g.shape == e.shape
            else:
                assert g == e


class Scan:
    """A scan with a 0D, a 1D, a variable-length and a lima channel, and its expected data."""

    LIMA = dict(file_template="/data/scan{file_index:03d}.h5", data_path="/entry/data",
                file_format="hdf5", frames_per_file=4)

    def __init__(self, store, number: int = 1, session: str = SESSION, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.pub = store.create_scan(session, {"scan_nb": number, "type": "timescan"})
        self.pub.start()
        self.a = self.pub.create_channel("a", "int32")
        self.b = self.pub.create_channel("b", "float32", (3,), unit="mm")
        self.v = self.pub.create_channel("v", "uint16", (-1,))
        self.cam = self.pub.create_lima_channel("cam", "uint16", (8, 8), **self.LIMA)
        self.expected = {
            "a": rng.integers(-2**31, 2**31, size=40).astype(np.int32),
            "b": rng.normal(size=(42, 3)).astype(np.float32),
            "v": [rng.integers(0, 2**16, size=k).astype(np.uint16) for k in rng.integers(0, 6, 30)],
            "cam": [LimaReference(f"/data/scan{i // 4:03d}.h5", "/entry/data", i % 4, "hdf5")
                    for i in range(30)],
        }
        self.key = self.pub.key
        self.sent = {"a": 0, "b": 0, "v": 0, "cam": 0}

    def publish(self, steps: int | None = None) -> None:
        """Publish ``steps`` more rounds (one batch per channel), or all that is left."""
        done = 0
        while steps is None or done < steps:
            progress = False
            for name, pub, size in (("a", self.a, 5), ("b", self.b, 7), ("v", self.v, 3),
                                    ("cam", self.cam, 4)):
                i, total = self.sent[name], len(self.expected[name])
                if i >= total:
                    continue
                j = min(total, i + size)
                pub.send(j - 1 if name == "cam" else self.expected[name][i:j])
                self.sent[name] = j
                progress = True
            if not progress:
                return
            done += 1

    def check(self, datas: dict[str, list], start: dict[str, int] | None = None) -> None:
        start = start or {}
        assert set(datas) == set(self.expected)
        for name, parts in datas.items():
            assert_contiguous(parts, start.get(name, 0))
            got = concat([d.data for d in parts], variable=name == "v")
            assert_bytes_equal(got, self.expected[name][start.get(name, 0):])


# -- replay ------------------------------------------------------------------------
def test_replay_after_end(store):
    scan = Scan(store)
    scan.publish()
    scan.pub.end()
    node = store.get_scan_node(scan.key)
    it = node.iterator
    events = list(it.walk_events(with_data=True, timeout=10))
    kinds = [e for e, _, _ in events]
    assert ERROR not in kinds
    assert [n.name for e, n, _ in events if e is NEW] == ["a", "b", "v", "cam"]
    assert kinds[-1] is END and kinds.count(END) == 1
    assert events[-1][1] == node and events[-1][2] is None
    seen_new = set()
    for event, n, _ in events:  # a node's NEW_NODE precedes its data
        if event is NEW:
            seen_new.add(n.name)
        elif event is DATA:
            assert n.name in seen_new
    scan.check(by_node(events))
    assert it.published == {"a": 40, "b": 42, "v": 30, "cam": 30}
    assert it.position == it.published
    assert it.end_reason == "SUCCESS"
    nodes = {n.name: n for e, n, _ in events if e is NEW}
    assert nodes["b"].unit == "mm" and nodes["b"].shape == (3,)
    assert nodes["b"].dtype == np.float32 and nodes["cam"].type == "lima"
    # Without data: 2-tuples, same sequence of events.
    plain = list(node.walk_events(timeout=10))
    assert all(len(t) == 2 for t in plain)
    assert [e for e, _ in plain] == kinds


def test_end_scan_after_all_data_of_a_long_scan(store):
    """END_SCAN is read in the first XREAD; the data (several reads' worth) still
    comes before it."""
    s = store.create_scan(SESSION, {"scan_nb": 2})
    chans = [s.create_channel(name, "float64") for name in ("x", "y")]
    n = 2500
    for i in range(n):
        for ch in chans:
            ch.send(float(i))
    s.end()
    events = list(store.get_scan_node(s.key).walk_events(with_data=True, timeout=10))
    assert events[-1][0] is END
    assert [e for e, _, _ in events[:-1]].count(END) == 0
    datas = by_node(events)
    for name in ("x", "y"):
        assert_contiguous(datas[name])
        assert concat([d.data for d in datas[name]]).tolist() == list(map(float, range(n)))


# -- following a session -----------------------------------------------------------
def scan_events(gen) -> list[tuple[EventType, int]]:
    return [(event, node.number) for event, node in gen]


def test_session_replay_from_next_false(store):
    s1 = store.create_scan(SESSION, {"scan_nb": 1})
    s1.end()
    s2 = store.create_scan(SESSION, {"scan_nb": 2})
    store.create_scan("other_session", {"scan_nb": 3}).end()
    s2.end()
    store.create_scan(SESSION, {"scan_nb": 4})  # still running
    session = store.get_session_node(SESSION)
    got = scan_events(session.walk_on_new_events(from_next=False, timeout=0.2, block=0.05))
    assert got == [(NEW, 1), (END, 1), (NEW, 2), (END, 2), (NEW, 4)]


def test_from_next_sees_only_scans_created_after_the_call(store):
    store.create_scan(SESSION, {"scan_nb": 1}).end()
    old = store.create_scan(SESSION, {"scan_nb": 2})  # running
    it = store.get_session_node(SESSION).iterator
    gen = it.walk_on_new_events(from_next=True, timeout=0.3, block=0.05)
    # Created after the call but before the first next(): must be seen.
    new = store.create_scan(SESSION, {"scan_nb": 3})
    new.end()
    old.end()  # the end of an older scan is an event after the call too
    assert scan_events(gen) == [(NEW, 3), (END, 3), (END, 2)]


def test_from_next_in_a_listener_thread(store):
    store.create_scan(SESSION, {"scan_nb": 1}).end()
    session = store.get_session_node(SESSION)
    gen = session.walk_on_new_events(from_next=True, timeout=2, block=0.05)
    got: list = []
    stop_after = threading.Event()

    def listen():
        for event, node in gen:
            got.append((event, node.number))
            if event is END:
                stop_after.set()
                return

    t = threading.Thread(target=listen)
    t.start()
    with store.create_scan(SESSION, {"scan_nb": 5}) as s:
        s.create_channel("x", "f8").send([1.0, 2.0])
    t.join(10)
    assert not t.is_alive()
    assert got == [(NEW, 5), (END, 5)]


def test_since_resumes_after_an_id(store):
    store.create_scan(SESSION, {"scan_nb": 1}).end()
    store.create_scan(SESSION, {"scan_nb": 2}).end()
    it = store.get_session_node(SESSION).iterator
    gen = it.walk_on_new_events(from_next=False, timeout=0.2, block=0.05)
    assert scan_events([next(gen), next(gen), next(gen)]) == [(NEW, 1), (END, 1), (NEW, 2)]
    since = it.last_id
    gen.close()
    store.create_scan(SESSION, {"scan_nb": 3})
    it2 = store.get_session_node(SESSION).iterator
    got = scan_events(it2.walk_on_new_events(since=since, from_next=True, timeout=0.2,
                                             block=0.05))
    assert got == [(END, 2), (NEW, 3)]
    assert it2.last_id > since


def test_filter_by_node_type(store):
    group = store.create_scan(SESSION, {"scan_nb": 1}, node_type="scan_group")
    child = store.create_scan(SESSION, {"scan_nb": 2}, parent=group)
    group.add_child(child)
    child.end()
    group.end()
    session = store.get_session_node(SESSION)

    def walk(flt):
        return scan_events(session.walk_on_new_events(filter=flt, from_next=False,
                                                      timeout=0.1, block=0.05))
    assert walk("scan") == [(NEW, 2), (END, 2)]
    assert walk("scan_group") == [(NEW, 1), (END, 1)]
    both = [(NEW, 1), (NEW, 2), (END, 2), (END, 1)]
    assert walk(None) == both
    assert walk(("scan", "scan_group")) == both


def test_session_walk_stop_event(store):
    stop = threading.Event()
    session = store.get_session_node(SESSION)
    gen = session.walk_on_new_events(from_next=True, block=0.05, stop=stop)
    got: list = []
    t = threading.Thread(target=lambda: got.extend(gen))
    t.start()
    store.create_scan(SESSION, {"scan_nb": 1})
    wait_for(lambda: got, 10, "the new scan's event")
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert [(e, n.number) for e, n in got] == [(NEW, 1)]


# -- late listeners ----------------------------------------------------------------
def test_late_listener_mid_scan_loses_nothing(store):
    scan = Scan(store, seed=3)
    half = threading.Event()
    listener_has_data = threading.Event()
    errors: list = []

    def produce():
        try:
            scan.publish(3)
            half.set()
            # Go on only once the late listener is reading: it must catch up live.
            assert listener_has_data.wait(10)
            for _ in range(20):
                scan.publish(1)
                time.sleep(0.002)
            scan.pub.end()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
            half.set()

    events: list = []
    producer_running_at_first_data: list[bool] = []

    def listen():
        node = store.get_scan_node(scan.key)
        for item in node.walk_events(with_data=True, timeout=10):
            if item[0] is DATA and not producer_running_at_first_data:
                producer_running_at_first_data.append(producer.is_alive())
                listener_has_data.set()
            events.append(item)

    producer = threading.Thread(target=produce)
    producer.start()
    assert half.wait(10)
    listener = threading.Thread(target=listen)
    listener.start()
    producer.join(20)
    listener.join(20)
    assert not errors and not producer.is_alive() and not listener.is_alive()
    assert producer_running_at_first_data == [True]
    assert events[-1][0] is END
    assert ERROR not in [e for e, _, _ in events]
    scan.check(by_node(events))


def test_listener_before_scan_starts(store):
    """A session listener in a thread follows the scan from its creation."""
    session = store.get_session_node(SESSION)
    gen = session.walk_on_new_events(from_next=True, timeout=5, block=0.05)
    events: list = []

    def listen():
        for event, scan_node in gen:
            if event is NEW:
                events.extend(scan_node.walk_events(with_data=True, timeout=10))
                return

    t = threading.Thread(target=listen)
    t.start()
    scan = Scan(store, number=9, seed=4)
    for _ in range(20):
        scan.publish(1)
        time.sleep(0.001)
    scan.pub.end()
    t.join(20)
    assert not t.is_alive()
    scan.check(by_node(events))
    assert events[-1][0] is END


# -- resume from a position --------------------------------------------------------
@pytest.fixture
def ended_scan(store):
    scan = Scan(store, seed=5)
    scan.publish()
    scan.pub.end()
    return scan


@pytest.mark.parametrize("k", [0, 1, 3, 4, 9, 17, 1000])
def test_resume_after_k_data_events(store, ended_scan, k):
    node = store.get_scan_node(ended_scan.key)
    it = node.iterator
    first: list = []
    for item in it.walk_events(with_data=True, timeout=10):
        if item[0] is END:
            break
        first.append(item)
        if sum(e is DATA for e, _, _ in first) >= k:
            break
    position = json.loads(json.dumps(it.position))  # it is saved as JSON
    it2 = node.iterator
    second = list(it2.walk_events(with_data=True, position=position, timeout=10))
    assert second[-1][0] is END and ERROR not in [e for e, _, _ in second]
    # Nodes are announced again.
    assert [n.name for e, n, _ in second if e is NEW] == ["a", "b", "v", "cam"]
    d1, d2 = by_node(first), by_node(second)
    for name in ended_scan.expected:
        parts = d1.get(name, []) + d2.get(name, [])
        assert_contiguous(parts)
        if name in d2:
            assert d2[name][0].first_index == position.get(name, 0)
    ended_scan.check({name: d1.get(name, []) + d2.get(name, [])
                      for name in ended_scan.expected})
    assert it2.position == {"a": 40, "b": 42, "v": 30, "cam": 30}


@pytest.mark.parametrize("position", [
    {"a": 7, "b": 10, "v": 4, "cam": 5},        # inside batches
    {"a": 5, "b": 14, "v": 3, "cam": 8},        # on batch boundaries
    {"a": 39, "b": 1, "v": 29, "cam": 29},      # last point of the last batch
    {"a": 40, "b": 42, "v": 30, "cam": 30},     # everything received
    {"a": 12},                                  # other nodes from 0
])
def test_resume_from_a_given_position(store, ended_scan, position):
    node = store.get_scan_node(ended_scan.key)
    events = list(node.walk_events(with_data=True, position=position, timeout=10))
    assert events[-1][0] is END and ERROR not in [e for e, _, _ in events]
    datas = by_node(events)
    for name, expected in ended_scan.expected.items():
        start = position.get(name, 0)
        parts = datas.get(name, [])
        assert_contiguous(parts, start)
        got = concat([d.data for d in parts], variable=name == "v")
        if start < len(expected):
            assert_bytes_equal(got, expected[start:])
        else:
            assert parts == []


def test_resume_on_a_running_scan(store):
    scan = Scan(store, seed=6)
    scan.publish(2)  # a: 10, b: 14, v: 6, cam: 8
    node = store.get_scan_node(scan.key)
    it = node.iterator
    first: list = []
    for item in it.walk_events(with_data=True, timeout=10):
        first.append(item)
        if it.position == {"a": 10, "b": 14, "v": 6, "cam": 8}:
            break
    position = dict(it.position)
    scan.publish()
    scan.pub.end()
    second = list(node.walk_events(with_data=True, position=position, timeout=10))
    d1, d2 = by_node(first), by_node(second)
    scan.check({name: d1[name] + d2[name] for name in scan.expected})


# -- timeouts, stop, state, info ---------------------------------------------------
def test_walk_on_a_scan_that_never_ends_times_out(store):
    s = store.create_scan(SESSION, {"scan_nb": 1})
    s.create_channel("x", "f8").send([1.0, 2.0, 3.0])
    events: list = []
    t0 = time.monotonic()
    with pytest.raises(ScanTimeoutError, match="scan 1 of session 'walk_session'") as exc:
        for item in store.get_scan_node(s.key).walk_events(with_data=True, timeout=0.3,
                                                            block=0.05):
            events.append(item)
    elapsed = time.monotonic() - t0
    assert isinstance(exc.value, TimeoutError)
    assert elapsed >= 0.3, "gave up before its timeout"
    assert [e for e, _, _ in events] == [NEW, DATA]
    assert events[1][2].data.tolist() == [1.0, 2.0, 3.0]


def test_timeout_counts_inactivity_only(store):
    """Data arriving regularly keeps a walk with a short timeout alive."""
    s = store.create_scan(SESSION, {"scan_nb": 1})
    ch = s.create_channel("x", "i8")

    def produce():
        for i in range(20):
            ch.send(i)
            time.sleep(0.1)  # pacing, far below the walk's timeout
        s.end()

    t = threading.Thread(target=produce)
    t.start()
    t0 = time.monotonic()
    events = list(store.get_scan_node(s.key).walk_events(with_data=True, timeout=1.5,
                                                          block=0.05))
    walked = time.monotonic() - t0
    t.join(5)
    assert events[-1][0] is END
    assert concat([d.data for d in by_node(events)["x"]]).tolist() == list(range(20))
    assert walked > 1.5, "the walk must have lasted longer than its timeout"


def test_stop_event_ends_a_scan_walk(store):
    s = store.create_scan(SESSION, {"scan_nb": 1})
    s.create_channel("x", "f8").send(1.0)
    stop = threading.Event()
    events: list = []
    got_data = threading.Event()

    def listen():
        for item in store.get_scan_node(s.key).walk_events(block=0.05, stop=stop):
            events.append(item)
            if item[0] is DATA:
                got_data.set()

    t = threading.Thread(target=listen)
    t.start()
    assert got_data.wait(5)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert [e for e, _ in events] == [NEW, DATA]  # no END_SCAN: the scan did not end


def test_state_transitions_and_identity(store):
    s = store.create_scan(SESSION, {"scan_nb": 12, "name": "ascan"})
    node = store.get_scan_node(s.key)
    assert node.state == "CREATED" and node.exists()
    s.start()
    assert node.state == "STARTED"
    assert node.end_reason is None
    s.end("USER_ABORT")
    assert node.state == "ENDED"
    assert node.end_reason == "USER_ABORT"
    assert node.info["end_reason"] == "USER_ABORT"
    assert node.number == 12 and node.name == "12_ascan" and node.session == SESSION
    assert node.type == "scan" and node.parent_key is None
    assert node == store.get_scan_node(s.key) and len({node, store.get_scan_node(s.key)}) == 1
    it = node.iterator
    list(it.walk_events(timeout=5))
    assert it.end_reason == "USER_ABORT"


def test_info_reflects_updates_during_the_scan(store):
    s = store.create_scan(SESSION, {"scan_nb": 1, "npoints": 0, "devices": {"d1": {"a": 1}}})
    node = store.get_scan_node(s.key)
    assert node.info["npoints"] == 0
    s.update_info({"npoints": 10, "devices": {"d1": {"b": 2}}})
    assert node.info["npoints"] == 10
    assert node.info["devices"] == {"d1": {"a": 1, "b": 2}}


def test_unknown_scan(store):
    node = store.get_scan_node("nxw:scan:nope")
    assert not node.exists()
    assert node.state == "EXPIRED"
    with pytest.raises(KeyError):
        _ = node.number
    with pytest.raises(KeyError):
        _ = node.info
