"""A malformed scan announced on the session never stops the session writer: it is
logged with its key and the next scans are written."""

from __future__ import annotations

import logging

from .helpers import wait_written


def test_scan_with_a_non_integer_number_is_skipped_and_the_session_goes_on(
        sim_session, store, raw, writer_factory, caplog):
    caplog.set_level(logging.ERROR, logger="nexus_writer")
    broken = store.create_scan("test_session", {"scan_nb": 1, "title": "broken"})
    raw.hset(broken.key, "number", "not-a-number")  # what a buggy producer leaves
    writer = writer_factory()
    scan = sim_session.loopscan(3, 0.01, "diode")
    [written] = wait_written(writer, [scan])
    assert written.state.name == "SUCCEEDED"
    assert f"scan {broken.key} not written: malformed scan (ValueError" in caplog.text
    assert broken.key not in {w.source.key for w in writer.scans()}
