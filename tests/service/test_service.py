"""``nexus-writer service run`` in a subprocess, with real session-writer processes on
the test Redis: scans of several sessions written, a writer killed mid-scan and
restarted, sessions added and removed while running, HTTP status and metrics,
``nexus-writer status``, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import h5py
import hdf5plugin  # noqa: F401 - readers of compressed data need the filters registered
import numpy as np
import pytest

from nexus_writer.cli.main import main
from nexus_writer.data.saving import writer_present
from nexus_writer.sim import SimSession
from tests.waiting import wait_for
from tests.writer.helpers import manual_scan_info

from .helpers import check_saved

pytestmark = pytest.mark.timeout(90)

FAST = {"flush_period": 0.2}


def run_scans(session: SimSession, out: list, errors: list) -> None:
    """A few scans with scalars, an MCA and a camera (for a thread)."""
    try:
        out.append(session.loopscan(20, 0.1, "diode", "simu1"))
        out.append(session.ascan("roby", 0, 1, 9, 0.1, "diode", "lima_simulator"))
        out.append(session.ct(0.1, "diode", "diode2", "simu1"))
    except BaseException as e:  # noqa: BLE001 - re-raised by the test
        errors.append(e)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_two_sessions_written_with_status_and_metrics(service_factory, redis_url, data_dir,
                                                      store, capsys, monkeypatch):
    service = service_factory({"s1": FAST, "s2": FAST,
                               # no Redis there: its writer exits, restarted with backoff
                               "broken": {}}, start=False)
    text = service.config.read_text().replace('[sessions."broken"]',
                                              '[sessions."broken"]\nredis = '
                                              '"redis://127.0.0.1:1"')
    service.config.write_text(text)
    service.start()
    pids = {s: service.wait_writer(s) for s in ("s1", "s2")}
    # writers run in their own process group: a Ctrl-C meant for the service does not
    # reach them (they would get SIGINT twice and abort their scans)
    assert service.process is not None
    for pid in pids.values():
        assert os.getsid(pid) != os.getsid(service.process.pid)

    scans: dict[str, list] = {"s1": [], "s2": []}
    errors: list = []
    sessions = [SimSession(name, redis_url=redis_url, base_path=data_dir, time_scale=0)
                for name in scans]
    try:
        threads = [threading.Thread(target=run_scans, args=(s, scans[s.name], errors))
                   for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for name, done in scans.items():
            assert len(done) == 3
            for scan in done:
                report = scan.wait_saved(30)
                assert report.state == "SUCCEEDED", f"{name} {scan}: {report}\n{service.logs()}"
        # read once nothing writes the files any more (HDF5 without SWMR: a read during
        # a write may be torn)
        for done in scans.values():
            for scan in done:
                check_saved(store, scan.key)
    finally:
        for s in sessions:
            s.close()
    files = {scans[s][0].filename for s in scans}
    assert len(files) == 2  # one dataset file per session

    # /status: every session, its process, its writer's scans
    def all_listed():
        status = service.status()
        docs = {n: (e.get("writer") or {}) for n, e in status["sessions"].items()}
        keys = {n: {sc["key"]: sc["state"] for sc in docs[n].get("scans", [])}
                for n in ("s1", "s2")}
        return status if all(keys[n].get(sc.key) == "SUCCEEDED" for n in scans
                             for sc in scans[n]) else None

    status = wait_for(all_listed, 10, "scans listed SUCCEEDED in /status", service.logs)
    assert set(status["sessions"]) == {"s1", "s2", "broken"}
    assert status["service"]["pid"] == service.process.pid
    for name in ("s1", "s2"):
        entry = status["sessions"][name]
        assert entry["process"]["pid"] == pids[name] and entry["process"]["alive"]
        assert entry["process"]["restarts"] == 0
        assert entry["writer"]["pid"] == pids[name]
        scan = entry["writer"]["scans"][0]
        assert scan["file"] == scans[name][0].filename and scan["entries"] == ["1.1"]
        assert all(c["written"] == c["published"] for c in scan["channels"].values())
    broken = wait_for(lambda: (lambda b: b if b["restarts"] >= 2 else None)(
        service.status()["sessions"]["broken"]["process"]), 15,
        "the broken session's writer restarted twice", service.logs)
    assert broken["last_exit"] == 2

    ctype, body = service.get("/metrics")
    assert ctype.startswith("text/plain")
    lines = body.splitlines()
    for name in ("s1", "s2"):
        assert f'nexus_writer_up{{session="{name}"}} 1' in lines
        assert f'nexus_writer_restarts_total{{session="{name}"}} 0' in lines
        assert f'nexus_writer_scans{{session="{name}",state="SUCCEEDED"}} 3' in lines
        assert f'nexus_writer_scans{{session="{name}",state="FAILED"}} 0' in lines
    restarts = [ln for ln in lines
                if ln.startswith('nexus_writer_restarts_total{session="broken"}')]
    assert restarts and int(restarts[0].split()[-1]) >= 2
    points = {ln.split()[0]: int(ln.split()[1]) for ln in lines
              if ln.startswith("nexus_writer_points_written")}
    assert points['nexus_writer_points_written{session="s1"}'] > 0
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as e:
        service.get("/nothing")
    assert e.value.code == 404
    e.value.close()

    # nexus-writer status: JSON and the table
    capsys.readouterr()
    assert main(["status", "--redis", redis_url, "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert set(docs) == {"s1", "s2"}
    assert {sc["key"] for sc in docs["s2"]["scans"]} == {sc.key for sc in scans["s2"]}
    assert main(["status", "s1", "--redis", redis_url, "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"s1"}
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["status", "--redis", redis_url]) == 0
    table = capsys.readouterr().out
    rows = [ln for ln in table.splitlines() if "SUCCEEDED" in ln]
    assert len(rows) == 6, table
    assert any("s1" in r and "loopscan 20 0.1" in r and "20/20 pts" in r for r in rows), table
    assert "sample_0001.h5::1.1" in table
    assert main(["status", "nobody", "--redis", redis_url]) == 1
    assert "no writer is running for session 'nobody'" in capsys.readouterr().err

    assert service.stop() == 0
    assert not (service.config.parent / "service.toml.pid").exists()
    for pid in pids.values():
        assert not alive(pid)
    assert writer_present(store, "s1") is None  # stopped writers say so


def test_killed_writer_restarted_mid_scan(service_factory, redis_url, data_dir, store):
    """kill -9 of a writer while its scan runs: the service restarts it, the new writer
    resumes the scan from what was flushed, the scan ends SUCCEEDED and bit-exact;
    the other session's writer and scan are not disturbed."""
    service = service_factory({"s1": FAST, "s2": FAST})
    pids = {s: service.wait_writer(s) for s in ("s1", "s2")}
    with SimSession("s1", redis_url=redis_url, base_path=data_dir, time_scale=1) as s1, \
            SimSession("s2", redis_url=redis_url, base_path=data_dir, time_scale=1) as s2:
        victim = s1.loopscan(80, 0.05, "diode", "simu1", "lima_simulator", run=False)
        other = s2.loopscan(80, 0.05, "diode", "simu1", run=False)
        threads = [victim.run_in_thread(), other.run_in_thread()]
        wait_for(lambda: victim.key and store.redis.hget(victim.key, "saving_progress"), 20,
                 "a first flush of the scan", service.logs)
        beat = writer_present(store, "s1")
        assert beat is not None and int(beat["pid"]) == pids["s1"]
        os.kill(pids["s1"], signal.SIGKILL)
        assert store.redis.hget(victim.key, "state") == b"STARTED"  # killed mid-scan
        new_pid = service.wait_writer("s1", timeout=20, not_pid=pids["s1"])
        for t in threads:
            t.join(30)
        victim.wait(0)
        other.wait(0)
        for scan in (victim, other):
            report = scan.wait_saved(30)
            assert report.state == "SUCCEEDED", f"{scan}: {report}\n{service.logs()}"
            check_saved(store, scan.key)
    status = service.status()["sessions"]
    assert status["s1"]["process"]["restarts"] == 1
    assert status["s1"]["process"]["last_exit"] == -signal.SIGKILL
    assert status["s1"]["process"]["pid"] == new_pid
    assert status["s2"]["process"]["restarts"] == 0
    assert status["s2"]["process"]["pid"] == pids["s2"] and alive(pids["s2"])
    assert 'nexus_writer_restarts_total{session="s1"} 1' in service.metrics().splitlines()


def test_add_remove_reload_while_running(service_factory, redis_url, data_dir, store, capsys):
    """``service add`` starts the new session's writer in the running service (SIGHUP
    through the pid file), ``remove`` stops it; a broken edit is refused and changes
    nothing; a changed option restarts that session's writer only."""
    service = service_factory({"s1": FAST})
    pid1 = service.wait_writer("s1")
    conf = ["--config", str(service.config)]

    capsys.readouterr()
    assert main(["service", "add", "s3", *conf]) == 0
    assert "running service reloaded" in capsys.readouterr().out
    pid3 = service.wait_writer("s3")
    with SimSession("s3", redis_url=redis_url, base_path=data_dir, time_scale=0) as s3:
        scan = s3.loopscan(10, 0.1, "diode", "simu1")
        assert scan.wait_saved(30).state == "SUCCEEDED", service.logs()
        check_saved(store, scan.key)

    assert main(["service", "remove", "s3", *conf]) == 0
    wait_for(lambda: not alive(pid3), 20, "the writer of s3 stopped", service.logs)
    wait_for(lambda: "s3" not in service.status()["sessions"], 5, "s3 gone from /status")
    assert writer_present(store, "s3") is None

    # a broken config is refused as a whole; the running writers go on
    good = service.config.read_text()
    service.config.write_text(good + '\n[sessions."s4"]\nkeepshap = true\n')
    service.signal(signal.SIGHUP)
    wait_for(lambda: "config not (re)loaded" in service.logs(), 10, "the refusal logged")
    assert "unknown option(s) ['keepshap']" in service.logs()
    assert set(service.status()["sessions"]) == {"s1"}
    assert service.writer_listening("s1") == pid1

    # another service on the same config is refused, naming the running one
    assert service.process is not None
    second = subprocess.run([sys.executable, "-m", "nexus_writer.cli.main", "service", "run",
                             *conf], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert f"a service already runs with {service.config} (pid {service.process.pid}" \
        in second.stderr
    assert service.writer_listening("s1") == pid1

    # a changed option restarts the writer of that session with it
    service.config.write_text(good.replace("flush_period = 0.2", "flush_period = 0.3"))
    service.signal(signal.SIGHUP)
    new1 = service.wait_writer("s1", timeout=20, not_pid=pid1)
    assert not alive(pid1)
    with open(f"/proc/{new1}/cmdline") as f:
        cmdline = f.read().split("\0")
    assert cmdline[cmdline.index("--flush-period") + 1] == "0.3"
    assert service.status()["sessions"]["s1"]["process"]["restarts"] == 0  # not a crash
    assert service.stop() == 0


def test_ctrl_c_lets_scans_in_progress_finish(service_factory, redis_url, data_dir, store):
    """Ctrl-C at the service's terminal (SIGINT to its process group) while a scan
    runs: the writers, in their own process groups, get one SIGINT from the service
    and finish the scan (SUCCEEDED, complete); the service exits 0 and removes its
    pid file."""
    service = service_factory({"s1": FAST})
    pid = service.wait_writer("s1")
    assert service.process is not None
    with SimSession("s1", redis_url=redis_url, base_path=data_dir, time_scale=1) as s1:
        scan = s1.loopscan(40, 0.05, "diode", "simu1", run=False)
        thread = scan.run_in_thread()
        wait_for(lambda: scan.key and store.redis.hget(scan.key, "saving_state") == b"RUNNING",
                 20, "the scan being written", service.logs)
        os.killpg(service.process.pid, signal.SIGINT)
        thread.join(30)
        scan.wait(0)
        assert scan.wait_saved(30).state == "SUCCEEDED", service.logs()
        check_saved(store, scan.key)
    assert service.stop(timeout=40) == 0
    assert not alive(pid)
    assert not (service.config.parent / "service.toml.pid").exists()


def test_second_stop_request_aborts_scans(service_factory, store):
    """A scan that never ends keeps a stopping service waiting; a second SIGTERM makes
    the writer abort it (FAILED, with the points received in the file) and the
    service exits."""
    service = service_factory({"s1": FAST})
    service.wait_writer("s1")
    info = manual_scan_info("s1", 1, str(service.directory / "never.h5"),
                            {"timer:epoch": {"device": "timer", "dim": 0, "unit": "s"}})
    pub = store.create_scan("s1", info)
    chan = pub.create_channel("timer:epoch", "<f8")
    pub.start()
    chan.send(np.arange(10.0))
    wait_for(lambda: store.redis.hget(pub.key, "saving_state") == b"RUNNING", 20,
             "the scan being written", service.logs)
    service.signal(signal.SIGTERM)
    wait_for(lambda: "stopping 1 writer(s)" in service.logs(), 20,
             "the service stopping its writer", service.logs)
    # the first request lets the scan finish: the service waits, the scan goes on
    assert service.process is not None and service.process.poll() is None, service.logs()
    assert store.redis.hget(pub.key, "saving_state") == b"RUNNING"
    service.signal(signal.SIGTERM)
    assert service.stop(timeout=20) == 0
    report = pub.wait_saved(1)
    assert report.state == "FAILED", report
    assert "before the end of the scan" in report.reason, report
    assert report.detail["channels"] == {"timer:epoch": {"written": 10, "published": None}}
    # the points received are in the file, bit-exact, and the file says why it failed
    with h5py.File(service.directory / "never.h5", "r", locking=False) as f:
        entry = f["1.1"]
        assert entry["writer/status"][()] == b"FAILED"
        assert entry["writer/reason"][()].decode() == report.reason
        epoch = entry["measurement/epoch"]
        assert epoch.dtype == np.dtype("<f8")
        assert epoch[()].tobytes() == np.arange(10.0).tobytes()
        assert entry["instrument/epoch/value"] == epoch
    pub.end()
