"""Aborting scans from another thread, and sequences of scans."""

from __future__ import annotations

import pytest

from nexus_writer.sim import ScanState
from tests.waiting import returns_within, wait_for


def wait_points(scan, n: int, timeout: float = 30.0) -> None:
    def enough() -> bool:
        assert scan.state != ScanState.DONE, "scan ended by itself"
        return scan.key is not None and bool(scan.node.nodes()) \
            and scan.node.nodes()[0].count() >= n

    wait_for(enough, timeout, f"{n} points of the scan in Redis", interval=0.002)


def test_abort_timescan_keeps_points(session):
    scan = session.timescan(0.1, "diode", "diode2", run=False)
    assert scan.scan_info["npoints"] == 0
    scan.run_in_thread()
    wait_points(scan, 5)
    scan.abort()
    assert scan.state == ScanState.DONE
    node = scan.node
    assert node.state == "ENDED" and node.end_reason == "USER_ABORT"
    info = node.info
    assert info["end_reason"] == "USER_ABORT" and info["npoints"] == 0
    counts = {n.name: n.count() for n in node.nodes()}
    assert len(set(counts.values())) == 1, counts
    assert min(counts.values()) >= 5
    assert "end_time" in info


def test_abort_during_a_long_count_is_prompt(session):
    session.time_scale = 1.0
    scan = session.loopscan(3, 3600.0, "diode", run=False)
    scan.run_in_thread()
    wait_for(lambda: scan.key is not None, 30, "the scan published", interval=0.002)
    # the count lasts an hour: returning at all means the abort did not wait for it
    returns_within(scan.abort, 60, "abort() during an hour-long count")
    assert scan.end_reason == "USER_ABORT"
    assert {n.count() for n in scan.node.nodes()} == {0}


def test_abort_before_run(session):
    scan = session.loopscan(3, 0.1, "diode", run=False)
    scan.abort()
    scan.run()
    assert scan.node.end_reason == "USER_ABORT"


def test_abort_multi_top_master(session):
    from nexus_writer.sim import TopMaster

    scan = session.multi_top_master_scan([TopMaster.timer(0, 0.1, "diode"),
                                          TopMaster.timer(0, 0.1, "diode2")], run=False)
    scan.run_in_thread()
    wait_points(scan, 3)
    # both top masters running (each in its own thread) before the abort
    wait_for(lambda: len(nodes := scan.node.nodes()) == 6 and all(n.count() for n in nodes),
             30, "a point of every channel of both top masters",
             lambda: {n.name: n.count() for n in scan.node.nodes()})
    scan.abort()
    assert scan.state == ScanState.DONE and scan.node.end_reason == "USER_ABORT"
    counts = {n.name: n.count() for n in scan.node.nodes()}
    assert all(c >= 1 for c in counts.values()), counts


def test_dscan_returns_after_abort(session):
    roby = session.config.get("roby")
    roby.move(3.0)
    session.time_scale = 1.0
    scan = session.dscan(roby, -1, 1, 100, 0.01, "diode", run=False)
    scan.run_in_thread()
    wait_points(scan, 2)
    scan.abort()
    assert scan.node.end_reason == "USER_ABORT"
    counts = {n.name: n.count() for n in scan.node.nodes()}
    assert 2 <= min(counts.values()) and max(counts.values()) < 101, counts  # cut short
    assert roby.position == 3.0  # and back where it started


def test_sequence_with_children(session):
    with session.sequence(title="my sequence") as seq:
        a = seq.add_and_run(session.loopscan(3, 0.1, "diode", run=False))
        b = seq.add_and_run(session.ascan("roby", 0, 1, 2, 0.1, "diode2", run=False))
    assert [seq.scan_number, a.scan_number, b.scan_number] == [1, 2, 3]
    group = seq.node
    assert group.type == "scan_group" and group.end_reason == "SUCCESS"
    info = group.info
    assert (info["type"], info["title"], info["npoints"]) == ("sequence", "my sequence", 2)
    assert "end_time" in info and info["acquisition_chain"] == {}
    (refs,) = group.nodes()
    assert refs.type == "node_ref_channel"
    assert [child.key for child in refs.get()] == [a.key, b.key]
    for child in (a, b):
        node = child.node
        assert node.type == "scan" and node.parent_key == seq.key
        assert node.info["group"] == seq.key
        assert node.info["parent"]["scan_nb"] == 1
        assert node.end_reason == "SUCCESS"


def test_sequence_run_runs_added_scans(session):
    seq = session.sequence()
    seq.add(session.ct(0.1, "diode", run=False))
    seq.add(session.loopscan(2, 0.1, "diode", run=False))
    seq.run()
    assert [c.state for c in seq.children] == [ScanState.DONE] * 2
    assert len(seq.node.nodes()[0].get()) == 2


def test_child_needs_a_running_sequence(session):
    seq = session.sequence()
    child = seq.add(session.ct(0.1, "diode", run=False))
    with pytest.raises(RuntimeError, match="not running"):
        child.run()


def test_failing_child_fails_the_sequence(session):
    with pytest.raises(ZeroDivisionError):
        with session.sequence() as seq:
            seq.add_and_run(session.ct(0.1, "diode", run=False))
            raise ZeroDivisionError("in the sequence")
    assert seq.node.end_reason == "FAILURE"


def test_sequence_channels_native(session):
    """A sequence's own channels (BLISS ScanSequence ``channels``), native protocol."""
    import numpy as np

    from nexus_writer.sim import ChannelSpec

    specs = [ChannelSpec("seq_step", "seq_step", "float64", ()),
             ChannelSpec("seq_matrix", "seq_matrix", "float32", (2, 3))]
    with session.sequence(channels=specs) as seq:
        seq.emit("seq_step", [1.0])
        seq.emit("seq_matrix", np.arange(6).reshape(1, 2, 3))
        seq.add_and_run(session.loopscan(2, 0.1, "diode", run=False))
        seq.emit("seq_step", [2.0])
    nodes = {n.name: n for n in seq.node.nodes()}
    assert np.array_equal(nodes["seq_step"].get(), [1.0, 2.0])
    matrix = nodes["seq_matrix"].get()
    assert matrix.dtype == np.float32 and np.array_equal(matrix, [np.arange(6).reshape(2, 3)])
    assert nodes["seq_step"].info["device"] == "channels"
    assert seq.scan_info["channels"]["seq_matrix"]["dim"] == 2
