"""Every scan type written SUCCEEDED, every channel equal to what Redis holds, bit-exact."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nexus_writer.nexus.validate import validate_file
from nexus_writer.sim import run_some_scans
from nexus_writer.writer import ScanState

from .helpers import check_scan, decode, nx_class, wait_written


def test_some_scans_all_written_bit_exact(sim_session, writer_factory, store):
    writer = writer_factory()
    scans = run_some_scans(sim_session, extra=True)
    assert len(scans) == 15
    written = wait_written(writer, scans)
    assert len(written) == len(scans)
    for sw in written:
        check_scan(store, sw)
        assert sw.problems == [], f"{sw.label}: {sw.problems}"
    filename = sim_session.scan_saving.filename
    report = validate_file(filename)
    assert (report.errors, report.warnings) == (0, 0), report.messages
    assert report.ok and report.default_plot is not None
    with h5py.File(filename, "r", locking=False) as f:
        # one entry per top master, none else
        expected = {f"{s.scan_number}.1" for s in scans} | {f"{scans[3].scan_number}.2"}
        assert set(f) == expected
        # the seed's scans, as a user finds them
        d2scan = f[f"{scans[0].scan_number}.1"]
        assert decode(d2scan["title"][()]) == "d2scan roby -1 1 robz -0.5 0.5 10 0.1"
        assert d2scan["instrument/roby/value"].attrs["units"] == "mm"
        assert decode(d2scan.attrs["default"]) == "plotselect"
        assert decode(d2scan["plotselect"].attrs["signal"]) == "sim_ct_gauss"
        assert decode(d2scan["comments/comment_01/data"][()]) == \
            "Gaussian peak in the middle of the scan range"
        assert nx_class(d2scan["sample"]) == "NXsample"
        assert nx_class(d2scan["instrument/source"]) == "NXsource"
        for snap in ("positioners", "positioners_start", "positioners_end",
                     "positioners_dial_start", "positioners_dial_end"):
            group = d2scan["instrument"][snap]
            assert nx_class(group) == "NXcollection"
            assert group["roby"].attrs["units"] == "mm"
        # snapshots come from the final scan_info
        positioners = scans[0].node.info["positioners"]
        for snap in ("positioners_start", "positioners_end", "positioners_dial_end"):
            for motor, value in positioners[snap].items():
                assert d2scan["instrument"][snap][motor][()] == value
        mca = f[f"{scans[2].scan_number}.1/instrument/simu1_det0"]
        assert nx_class(mca) == "NXdetector" and mca["data"].shape == (6, 1024)
        assert nx_class(mca["statistics"]) == "NXcollection"
        assert mca["statistics/realtime_det0"].shape == (6,)
        aborted = f[f"{scans[7].scan_number}.1"]
        assert decode(aborted["writer/end_reason"][()]) == "USER_ABORT"
        assert decode(aborted["writer/status"][()]) == "SUCCEEDED"
        samples = f[f"{scans[8].scan_number}.1/instrument/diode9/data"]
        assert samples.ndim == 2 and np.isnan(samples[()]).any()


def _run(session, kind):
    if kind == "ct":
        return [session.ct(0.1, "diode", "simu1", "diode9")]
    if kind == "dscan":
        return [session.dscan("roby", -1, 1, 7, 0.1, "diode", "sim_ct_gauss")]
    if kind == "a2scan":
        return [session.a2scan("roby", 0, 1, "robz", 2, 3, 5, 0.1, "diode", "simu1")]
    if kind == "amesh":
        return [session.amesh("roby", 0, 1, 3, "robz", 0, 1, 2, 0.1, "diode", "simu1",
                              "diode9", "lima_simulator")]
    if kind == "sequence":
        with session.sequence(title="a sequence") as seq:
            seq.add_and_run(session.loopscan(3, 0.1, "diode", run=False))
            seq.add_and_run(session.ascan("roby", 0, 1, 2, 0.1, "diode2", run=False))
        return [seq] + seq.children
    raise ValueError(kind)


@pytest.mark.parametrize("kind,keepshape", [("ct", False), ("dscan", False), ("a2scan", False),
                                            ("amesh", False), ("amesh", True),
                                            ("sequence", False)])
def test_scan_type_written_bit_exact(sim_session, writer_factory, store, kind, keepshape):
    writer = writer_factory(keepshape=keepshape)
    scans = _run(sim_session, kind)
    written = wait_written(writer, scans)
    for sw in written:
        check_scan(store, sw, keepshape=keepshape)
    report = validate_file(sim_session.scan_saving.filename)
    assert report.ok, (report.summary(), report.messages)
    first = written[0]
    with h5py.File(first.filename, "r", locking=False) as f:
        entry = f[first.entries[0]]
        if kind == "ct":
            assert entry["instrument/diode/data"].shape == (1,)
        elif kind == "amesh":
            shape = (3, 4) if keepshape else (12,)
            assert entry["instrument/diode/data"].shape == shape
            assert entry["instrument/simu1_det0/data"].shape == shape + (1024,)
            assert entry["instrument/roby/value"].shape == shape
            # the grid view: (slow, fast) whatever the storage, with motor coordinates
            plot = entry["plot0D"]
            signal = plot[decode(plot.attrs["signal"])]
            assert signal.shape == (3, 4)
            assert decode(list(plot.attrs["axes"])) == ["robz", "roby"]
            np.testing.assert_allclose(plot["roby"][()], np.linspace(0, 1, 4))
            np.testing.assert_allclose(plot["robz"][()], np.linspace(0, 1, 3))
            # a counter is what a user wants to see, not the timer
            assert decode(plot.attrs["signal"]) == "diode"
            flat = entry["instrument/diode/data"][()].reshape(-1)
            assert signal[()].reshape(-1).tobytes() == flat.tobytes()
        elif kind in ("dscan", "a2scan"):
            plot = entry[decode(entry.attrs["default"])]
            assert decode(plot.attrs["signal"]) == "diode"
            assert decode(list(plot.attrs["axes"])) == ["roby"]
        elif kind == "sequence":
            assert written[0].state == ScanState.SUCCEEDED
            assert sorted(entry["subscans"]) == [f"scan_{s.scan_number}" for s in scans[1:]]


def test_finished_scans_forgotten_beyond_a_limit(sim_session, writer_factory, monkeypatch):
    """A session runs for weeks: a writer keeps the last KEEP_FINISHED finished scans in
    memory; an older scan's outcome is still answered, from Redis."""
    from nexus_writer.writer import session

    monkeypatch.setattr(session, "KEEP_FINISHED", 2)
    writer = writer_factory()
    scans = []
    for _ in range(5):  # one after the other: each finished before the next is taken
        scans.append(sim_session.ct(0.1, "diode"))
        wait_written(writer, scans[-1:])
    kept = [w.source.key for w in writer.scans()]
    # forgotten as new scans come: the fifth kept the two last finished before it
    assert kept == [s.key for s in scans[2:]], kept
    status = writer.scan_status(scans[0].key)
    assert status is not None and status["state"] == "SUCCEEDED", status
