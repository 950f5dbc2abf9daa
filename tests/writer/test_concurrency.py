"""Several top masters, scans in parallel into one file, aborted scans, sequences."""

from __future__ import annotations

import threading

import h5py
import numpy as np

from nexus_writer.nexus.validate import validate_file
from nexus_writer.sim import TopMaster
from nexus_writer.writer import ScanState
from tests.waiting import wait_for

from .helpers import check_scan, decode, wait_written


def test_two_top_masters_two_entries(sim_session, writer_factory, store):
    camera = sim_session.config.get("lima_simulator")
    camera.saving_frame_per_file = 2
    writer = writer_factory()
    scan = sim_session.multi_top_master_scan(
        [TopMaster.timer(2, 0.1, "diode"), TopMaster.timer(25, 0.01, camera, "diode2")])
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw, camera="vds")
    assert sw.entries == ["1.1", "1.2"]
    with h5py.File(sw.filename, "r", locking=False) as f:
        first, second = f["1.1"], f["1.2"]
        assert first["measurement/diode"].shape == (2,)
        assert first["measurement/elapsed_time"].shape == (2,)
        assert "diode2" not in first["measurement"] and "diode" not in second["measurement"]
        assert second["measurement/diode2"].shape == (25,)
        assert second["measurement/elapsed_time"].shape == (25,)  # timer2:elapsed_time
        assert second["instrument/lima_simulator/data"].shape == (25, 64, 64)
        assert decode(first["title"][()]) == decode(second["title"][()])
        for entry in (first, second):
            assert decode(entry["writer/status"][()]) == "SUCCEEDED"
    assert validate_file(sw.filename).ok


def test_parallel_scans_into_one_file(sim_session, writer_factory, store):
    writer = writer_factory()
    scans = [sim_session.loopscan(150, 0.01, "diode", "diode9", "simu1", run=False)
             for _ in range(3)]
    threads = [threading.Thread(target=s.run) for s in scans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    written = wait_written(writer, scans)
    for sw in written:
        check_scan(store, sw)
    filename = sim_session.scan_saving.filename
    assert {sw.filename for sw in written} == {filename}
    with h5py.File(filename, "r", locking=False) as f:
        assert sorted(f) == ["1.1", "2.1", "3.1"]
        # different seeds, different data: nothing of one scan went to another
        spectra = [f[f"{n}.1/instrument/simu1_det0/data"][()] for n in (1, 2, 3)]
        assert not np.array_equal(spectra[0], spectra[1])
        assert not np.array_equal(spectra[1], spectra[2])
    report = validate_file(filename)
    assert report.ok, report.messages


def test_parallel_scans_into_two_files(sim_session, writer_factory, store):
    writer = writer_factory()
    first = sim_session.loopscan(200, 0.01, "diode", run=False)
    sim_session.scan_saving.newdataset(2)
    second = sim_session.loopscan(200, 0.01, "diode", run=False)
    threads = [threading.Thread(target=s.run) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = wait_written(writer, [first, second])
    check_scan(store, a)
    check_scan(store, b)
    assert a.filename != b.filename
    assert a.filename.endswith("sample_0001.h5") and b.filename.endswith("sample_0002.h5")


def test_timescan_of_unknown_length_aborted(sim_session, writer_factory, store):
    writer = writer_factory()
    scan = sim_session.timescan(0.1, "diode", "diode2", run=False)
    assert scan.npoints == 0
    scan.run_in_thread()
    wait_for(lambda: scan.key is not None and scan.node.nodes()
             and min(n.count() for n in scan.node.nodes()) >= 50, 30,
             "50 points of every channel of the timescan", interval=0.01)
    scan.abort()
    [sw] = wait_written(writer, [scan])
    check_scan(store, sw)  # every published point, bit-exact
    published = {n.name: n.count() for n in scan.node.nodes()}
    assert min(published.values()) >= 50
    with h5py.File(sw.filename, "r", locking=False) as f:
        entry = f[sw.entries[0]]
        assert decode(entry["writer/end_reason"][()]) == "USER_ABORT"
        assert decode(entry["writer/status"][()]) == "SUCCEEDED"
        diode = "simulation_diode_sampling_controller:diode"
        assert entry["measurement/diode"].shape == (published[diode],)
        assert entry["measurement/diode"].maxshape == (None,)
        # a short scan of unknown length does not take a megabyte per counter
        assert entry["instrument/diode/data"].id.get_storage_size() <= 128 << 10


def test_sequence_links_children(sim_session, writer_factory, store):
    writer = writer_factory()
    with sim_session.sequence(title="three children") as seq:
        for n in (2, 3, 4):
            seq.add_and_run(sim_session.loopscan(n, 0.1, "diode", run=False))
    written = wait_written(writer, [seq] + seq.children)
    for sw in written:
        check_scan(store, sw)
    with h5py.File(written[0].filename, "r", locking=False) as f:
        entry = f[f"{seq.scan_number}.1"]
        assert decode(entry["title"][()]) == "three children"
        subscans = entry["subscans"]
        for child, n in zip(seq.children, (2, 3, 4), strict=True):
            linked = subscans[f"scan_{child.scan_number}"]
            assert decode(linked["title"][()]) == f"loopscan {n} 0.1"
            assert linked["measurement/diode"].shape == (n,)
    assert [w.state for w in written] == [ScanState.SUCCEEDED] * 4


def test_sequence_written_after_the_fact(sim_session, writer_factory, store):
    """A writer that starts after a sequence and its children ended (retained scans):
    the sequence and its children end together, and the links are all there."""
    with sim_session.sequence(title="before the writer") as seq:
        for _ in range(3):
            seq.add_and_run(sim_session.ct(0.1, "diode", run=False))
    writer = writer_factory(from_next=False)
    written = wait_written(writer, [seq] + seq.children)
    for sw in written:
        check_scan(store, sw)
    with h5py.File(written[0].filename, "r", locking=False) as f:
        assert sorted(f[f"{seq.scan_number}.1/subscans"]) == \
            sorted(f"scan_{c.scan_number}" for c in seq.children)
