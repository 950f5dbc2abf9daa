"""One writer per session and per file (issue 9.1): a second writer on a session is
refused or stands by and takes over; no two processes ever write one dataset file.

Without the lease, two writers took every scan twice and corrupted the file."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from nexus_writer.data.lease import LeaseHeldError, lease_holder
from nexus_writer.data.saving import reports
from nexus_writer.writer import SessionWriter

from .test_crash import SESSION, _wait_progress, assert_saved_whole


def _states(store, key: str) -> list[str]:
    return [r.state for r in reports(store, key)]


def test_second_writer_on_a_session_is_refused(redis_url, writer_factory):
    first = writer_factory()
    with pytest.raises(LeaseHeldError) as info:
        SessionWriter(SESSION, redis_url).start()
    assert f"pid {os.getpid()}" in str(info.value)
    assert f"host {socket.gethostname()}" in str(info.value)
    assert first.status()["lease"] == "held"


def test_second_writer_command_exits_with_the_holder_named(redis_url, writer_factory):
    writer_factory()
    proc = subprocess.run(
        [sys.executable, "-m", "nexus_writer.cli.main", "write", SESSION, "--redis", redis_url,
         "--no-live"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"written by another writer (host {socket.gethostname()}, pid {os.getpid()}" \
        in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(120)
def test_standby_takes_over_a_killed_writer_and_each_scan_is_written_once(
        sim_session, store, redis_url, writer_process, caplog):
    caplog.set_level(logging.INFO, logger="nexus_writer")
    active = writer_process().start(store)
    assert active.proc is not None
    active_pid = active.proc.pid
    standby = SessionWriter(SESSION, redis_url, standby=True, flush_period=0.1).start()
    try:
        assert standby.status()["lease"] == "standby"
        first = sim_session.loopscan(5, 0.01, "diode", "simu1")
        assert_saved_whole(store, [first])
        assert standby.scans() == [], "the standby wrote a scan of the active writer"
        assert _states(store, first.key) == ["READY", "RUNNING", "SUCCEEDED"]

        sim_session.time_scale = 1.0
        second = sim_session.loopscan(120, 0.005, "diode", "simu1", run=False)
        thread = second.run_in_thread()
        deadline = time.monotonic() + 20
        while second.key is None:
            assert time.monotonic() < deadline, "the scan never started"
            time.sleep(0.01)
        _wait_progress(store, second.key, 20)
        active.kill()
        thread.join(60)
        assert_saved_whole(store, [second])
        assert standby.status()["lease"] == "held"
        assert lease_holder(store, SESSION).pid == os.getpid()
        states = _states(store, second.key)
        assert states.count("SUCCEEDED") == 1 and states[-1] == "SUCCEEDED", states
        logged = caplog.text
        assert f"standing by: the session is written by another writer (host " \
            f"{socket.gethostname()}, pid {active_pid}" in logged
        assert "taking over" in logged
    finally:
        standby.stop(timeout=30)
    assert lease_holder(store, SESSION) is None, "a clean stop gives the session back"


def test_a_file_another_writer_process_writes_is_refused(sim_session, store, writer_factory):
    """Independently of the lease (two sessions configured alike, two hosts): the
    dataset file is never opened by a second writer process."""
    filename = sim_session.scan_saving.filename
    os.makedirs(os.path.dirname(filename), exist_ok=True)
    code = ("import sys,time; from nexus_writer.writer.filelock import WriterFileLock; "
            f"l=WriterFileLock({filename!r}); l.acquire(); print('held', flush=True); "
            "sys.stdin.readline(); l.release(); print('released', flush=True)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        writer_factory()
        refused = sim_session.loopscan(3, 0.01, "diode")
        saved = refused.wait_saved(30)
        assert saved.state == "FAILED", saved
        assert f"being written by another writer process (host {socket.gethostname()}, " \
            f"pid {holder.pid}" in saved.reason
        assert not os.path.exists(filename), "the refused writer touched the file"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        accepted = sim_session.loopscan(3, 0.01, "diode")
        assert accepted.wait_saved(30).state == "SUCCEEDED"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
