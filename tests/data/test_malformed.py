"""Malformed entries injected with a raw Redis client: the walk reports each one as an
ERROR event (with an EventData description), logs it and goes on with the rest."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from nexus_writer.data import EventData, EventType, ScanNode
from nexus_writer.data import protocol as P
from nexus_writer.errors import MalformedEntryError

pytestmark = pytest.mark.timeout(20)

SESSION = "bad_session"
NEW, DATA, END, ERROR = (EventType.NEW_NODE, EventType.NEW_DATA_IN_CHANNEL, EventType.END_SCAN,
                         EventType.ERROR)


@pytest.fixture
def raw(store):
    """The raw client (the same server; nothing goes through the publisher)."""
    return store.redis


def walk(store, scan, **kw) -> list[tuple]:
    return list(store.get_scan_node(scan.key).walk_events(with_data=True, timeout=10, **kw))


def errors(events) -> list[EventData]:
    return [d for e, _, d in events if e is ERROR]


def values(events, name: str) -> list:
    """Concatenated values of node ``name``'s data events, and their first indices."""
    out, firsts = [], []
    for e, node, d in events:
        if e is DATA and node.name == name:
            out.extend(np.asarray(d.data).tolist() if isinstance(d.data, np.ndarray)
                       else [np.asarray(p).tolist() for p in d.data])
            firsts.append(d.first_index)
    return out, firsts


def inject_data(raw, ch, n: int, fields: dict) -> None:
    """A raw entry where the publisher would put its next ``n`` points."""
    raw.xadd(ch.node.key, fields, id=P.entry_id(ch.count))
    ch.count += n


def test_entry_with_wrong_byte_length(store, raw, caplog):
    scan = store.create_scan(SESSION, {"scan_nb": 1})
    x = scan.create_channel("x", "float64")
    y = scan.create_channel("y", "int16", (2,))
    x.send(np.arange(5.0))
    inject_data(raw, x, 3, {b"n": b"3", b"d": b"\0" * 20})  # 20 bytes for 3 float64
    x.send(np.array([8.0, 9.0]))
    y.send(np.ones((4, 2), dtype=np.int16))
    scan.end()
    with caplog.at_level(logging.ERROR, logger="nexus_writer.data"):
        events = walk(store, scan)
    assert events[-1][0] is END and [e for e, _, _ in events].count(END) == 1
    errs = errors(events)
    assert len(errs) == 2
    bad, gap = errs
    assert bad.first_index == 5 and bad.data is None
    assert "20 bytes for 3 points" in bad.description["error"]
    assert bad.description["stream"] == x.node.key and bad.description["id"] == "5-1"
    assert gap.first_index == 5 and gap.description["missing"] == [5, 8]
    # Following data still delivered.
    assert values(events, "x") == ([0.0, 1.0, 2.0, 3.0, 4.0, 8.0, 9.0], [0, 8])
    assert values(events, "y") == ([[1, 1]] * 4, [0])
    # Each error logged, naming the scan.
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert all("scan 1 of session 'bad_session'" in r.getMessage() for r in logged)
    assert "20 bytes" in logged[0].getMessage()
    # Random access fails loudly on the bad entry only.
    node = next(n for e, n, _ in events if e is NEW and n.name == "x")
    assert node.get(0, 5).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert node.get(8).tolist() == [8.0, 9.0]
    with pytest.raises(MalformedEntryError):
        node.get(4, 6)


@pytest.mark.parametrize("fields, what", [
    ({b"foo": b"bar"}, "point count"),
    ({b"d": b"\0" * 24}, "point count"),
    ({b"n": b"3"}, "without data"),
    ({b"n": b"three", b"d": b"\0" * 24}, "point count"),
    ({b"n": b"-3", b"d": b""}, "negative"),
])
def test_entry_with_missing_or_bad_fields(store, raw, fields, what):
    scan = store.create_scan(SESSION, {"scan_nb": 2})
    x = scan.create_channel("x", "float64")
    x.send([0.0, 1.0])
    inject_data(raw, x, 3, fields)
    x.send([5.0])
    scan.end()
    events = walk(store, scan)
    errs = errors(events)
    assert what in errs[0].description["error"]
    assert errs[0].first_index == 2
    assert errs[-1].description["missing"] == [2, 5]
    assert values(events, "x") == ([0.0, 1.0, 5.0], [0, 5])
    assert events[-1][0] is END


def test_count_errors_found_without_data(store, raw):
    """Without data the payload is not decoded, but a bad count is still an error
    (a negative count must not move the position back and replay data)."""
    scan = store.create_scan(SESSION, {"scan_nb": 3})
    x = scan.create_channel("x", "float64")
    x.send([0.0, 1.0])
    inject_data(raw, x, 3, {b"n": b"-3", b"d": b""})
    x.send([5.0, 6.0])
    scan.end()
    it = store.get_scan_node(scan.key).iterator
    events = list(it.walk_events(timeout=10))
    assert [e for e, _ in events] == [NEW, DATA, ERROR, ERROR, DATA, END]
    assert it.position == {"x": 7}


def test_variable_channel_with_bad_shapes(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 4})
    v = scan.create_channel("v", "int32", (-1,))
    v.send([np.arange(3, dtype=np.int32)])
    # Shapes say 2 + 2 values, payload holds 3.
    inject_data(raw, v, 2, {b"n": b"2", b"d": b"\0" * 12,
                            b"s": np.array([[2], [2]], dtype=np.int64).tobytes()})
    # Negative length.
    inject_data(raw, v, 1, {b"n": b"1", b"d": b"", b"s": np.array([[-1]], np.int64).tobytes()})
    # Shapes field of the wrong size.
    inject_data(raw, v, 1, {b"n": b"1", b"d": b"", b"s": b"\0\0\0"})
    v.send([np.arange(2, dtype=np.int32), np.zeros(0, dtype=np.int32)])
    scan.end()
    events = walk(store, scan)
    errs = errors(events)
    bad = [d for d in errs if "missing" not in d.description]
    assert [d.first_index for d in bad] == [1, 3, 4]
    assert "do not match point shapes" in bad[0].description["error"]
    assert "bad point shapes" in bad[2].description["error"]
    assert [d.description["missing"] for d in errs if "missing" in d.description] == [[1, 5]]
    assert values(events, "v") == ([[0, 1, 2], [0, 1], []], [0, 5])
    assert events[-1][0] is END


def test_lima_entry_without_last(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 5})
    cam = scan.create_lima_channel("cam", "uint16", (4, 4), "/d/f{file_index}.h5", "/data",
                                   "hdf5", 2)
    cam.send(1)
    raw.xadd(cam.node.key, {b"oops": b"1"}, id=P.entry_id(2))
    cam.count = 4
    cam.send(5)
    scan.end()
    events = list(store.get_scan_node(scan.key).walk_events(timeout=10))  # even without data
    assert [e for e, _ in events] == [NEW, DATA, ERROR, ERROR, DATA, END]
    events = walk(store, scan)
    errs = errors(events)
    assert "without 'last'" in errs[0].description["error"]
    assert errs[1].description["missing"] == [2, 4]
    refs = [r.frame_index for e, _, d in events if e is DATA for r in d.data]
    assert refs == [0, 1, 0, 1]


@pytest.mark.parametrize("definition", [
    b"{not json",
    b"",
    b"[]",
    json.dumps({"name": "x", "type": "blob", "key": "k"}).encode(),
    json.dumps({"name": "x", "type": "scan", "key": "k"}).encode(),
    json.dumps({"name": "x", "type": "scan_group", "key": "k"}).encode(),
    json.dumps({"name": "x", "type": "channel", "key": "k", "dtype": "nonsense"}).encode(),
    json.dumps({"name": "x", "type": "channel", "key": "k", "dtype": "|O"}).encode(),
    json.dumps({"name": "x", "type": "channel", "key": "k", "dtype": "<U8"}).encode(),
    json.dumps({"name": "x", "type": "channel", "dtype": "<f8"}).encode(),
    json.dumps({"name": "x", "type": "channel", "key": "k", "dtype": "<f8",
                "shape": ["a"]}).encode(),
    None,  # NEW_NODE entry without a definition at all
])
def test_bad_node_definition(store, raw, caplog, definition):
    scan = store.create_scan(SESSION, {"scan_nb": 6})
    a = scan.create_channel("a", "float32")
    fields = {b"event": b"NEW_NODE"}
    if definition is not None:
        fields[b"node"] = definition
    raw.xadd(P.scan_events_key(scan.key), fields)
    b = scan.create_channel("b", "uint8", (2,))
    a.send([1.0, 2.0])
    b.send([[1, 2]])
    scan.end()
    with caplog.at_level(logging.ERROR, logger="nexus_writer.data"):
        events = walk(store, scan)
    kinds = [e for e, _, _ in events]
    assert kinds.count(ERROR) == 1
    err_event = next(t for t in events if t[0] is ERROR)
    assert isinstance(err_event[1], ScanNode)  # the scan: the node could not be made
    assert err_event[2].description["stream"] == P.scan_events_key(scan.key)
    assert [n.name for e, n, _ in events if e is NEW] == ["a", "b"]
    assert values(events, "a")[0] == [1.0, 2.0]
    assert values(events, "b")[0] == [[1, 2]]
    assert kinds[-1] is END
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    # Listing the nodes skips the bad definition too.
    assert [n.name for n in store.get_scan_node(scan.key).nodes()] == ["a", "b"]


def test_node_announced_twice(store, raw):
    """A repeated NEW_NODE (e.g. a retried XADD) must not replay the node's data."""
    scan = store.create_scan(SESSION, {"scan_nb": 7})
    a = scan.create_channel("a", "int64")
    a.send([1, 2, 3])
    raw.xadd(P.scan_events_key(scan.key), {b"event": b"NEW_NODE", b"node": a.node.to_json()})
    a.send([4])
    scan.end()
    events = walk(store, scan)
    assert [e for e, _, _ in events].count(ERROR) == 1
    assert "announced twice" in errors(events)[0].description["error"]
    assert values(events, "a") == ([1, 2, 3, 4], [0, 3])


def test_node_stream_pointing_to_the_events_stream(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 8})
    bad = P.NodeDef(name="evil", type="channel", key=P.scan_events_key(scan.key), dtype="<f8")
    raw.xadd(P.scan_events_key(scan.key), {b"event": b"NEW_NODE", b"node": bad.to_json()})
    scan.create_channel("a", "f8").send(1.0)
    scan.end()
    events = walk(store, scan)
    assert [e for e, _, _ in events] == [ERROR, NEW, DATA, END]


def test_deleted_entries_reported_missing(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 9})
    x = scan.create_channel("x", "int32")
    for batch in ([0, 1], [2, 3, 4], [5], [6, 7]):
        x.send(batch)
    raw.xdel(x.node.key, P.entry_id(2), P.entry_id(5))
    scan.end()
    events = walk(store, scan)
    errs = errors(events)
    assert [d.description["missing"] for d in errs] == [[2, 6]]
    assert errs[0].first_index == 2
    assert values(events, "x") == ([0, 1, 6, 7], [0, 6])


def test_missing_tail_reported_at_end(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 10})
    x = scan.create_channel("x", "int32")
    x.send([0, 1, 2])
    x.send([3, 4])
    raw.xdel(x.node.key, P.entry_id(3))
    scan.end()
    events = walk(store, scan)
    assert [e for e, _, _ in events] == [NEW, DATA, ERROR, END]
    err = errors(events)[0]
    assert err.description["missing"] == [3, 5]
    assert "5 points published, 3 received" in err.description["error"]
    assert events[2][1].name == "x"


def test_bad_end_scan_counts_and_unknown_events(store, raw):
    scan = store.create_scan(SESSION, {"scan_nb": 11})
    scan.create_channel("x", "int8").send([1, 2])
    events_key = P.scan_events_key(scan.key)
    raw.xadd(events_key, {b"event": b"SOMETHING_NEW"})  # ignored: future event types
    raw.xadd(events_key, {b"event": b"END_SCAN", b"reason": b"SUCCESS", b"counts": b"{bad"})
    events = walk(store, scan)
    kinds = [e for e, _, _ in events]
    assert sorted(kinds[:-1]) == sorted([NEW, DATA, ERROR]) and kinds[-1] is END
    assert "counts" in errors(events)[0].description["error"]
    assert values(events, "x") == ([1, 2], [0])


def test_session_entry_without_scan_key(store, raw):
    raw.xadd(P.session_stream_key(SESSION), {b"event": b"NEW_NODE"})
    raw.xadd(P.session_stream_key(SESSION), {b"event": b"NEW_NODE", b"scan": b"nxw:scan:gone"})
    store.create_scan(SESSION, {"scan_nb": 12})
    session = store.get_session_node(SESSION)
    got = [(e, n.number) for e, n in session.walk_on_new_events(from_next=False, timeout=0.1,
                                                                 block=0.05)]
    assert got == [(NEW, 12)]
