"""``FileWriterPool.read``: readers of the writer process (the web page) get a
consistent view of a file, and never keep a writer from opening it afterwards."""

from __future__ import annotations

import threading

import h5py
import numpy as np

from .helpers import wait_written


def test_read_between_scans_and_during_one(sim_session, writer_factory, data_dir):
    writer = writer_factory()
    first = sim_session.loopscan(4, 0.1, "diode")
    wait_written(writer, [first])
    path = sim_session.scan_saving.filename
    # no writer holds the file: read read-only, closed again before a writer opens it
    assert writer.pool.read(path, lambda f: f["1.1/measurement/diode"].shape) == (4,)
    sim_session.time_scale = 1.0
    second = sim_session.loopscan(40, 0.05, "diode", run=False)
    thread = threading.Thread(target=second.run)
    thread.start()
    seen = []
    try:
        while thread.is_alive():
            w = next((w for w in writer.scans() if w.source.key == second.key), None)
            if w is not None and w.entries and w.state.name == "RUNNING":
                # in the file thread: the entry and its points as the writer has them
                seen.append(writer.pool.read(
                    path, lambda f: len(f["2.1/measurement/diode"]) if "2.1/measurement/diode"
                    in f else -1))
            thread.join(0.05)
    finally:
        thread.join(30)
    [done] = wait_written(writer, [second])
    assert done.state.name == "SUCCEEDED", done.saving.reason  # the reads kept nothing open
    running = [n for n in seen if n >= 0]
    assert running and running == sorted(running) and running[-1] <= 40
    with h5py.File(path, "r", locking=False) as f:
        diode = next(n for n in second.node.nodes() if n.name.endswith(":diode")).get()
        assert np.array_equal(f["2.1/measurement/diode"][()], diode)
