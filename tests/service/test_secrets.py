"""The Redis password never shows: not in the command lines of the service's writers
(``ps``), its logs, ``/status`` and ``/metrics``, the status documents stored in Redis,
``nexus-writer status`` (table and ``--json``), nor the session writer's banner and log.
Against a real redis-server started with ``--requirepass`` and an ACL user."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import redis

from nexus_writer.cli.main import main
from nexus_writer.data.saving import writer_key
from nexus_writer.data.status import status_key
from nexus_writer.sim import SimSession
from tests.conftest import ACL_PASSWORD, ACL_USER, REDIS_PASSWORD

from .helpers import ServiceProcess, check_saved, wait_for

pytestmark = pytest.mark.timeout(90)


def cmdline(pid: int) -> str:
    """What ``ps`` shows every local user."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def assert_no_secret(text: str, where: str) -> None:
    for secret in (REDIS_PASSWORD, ACL_PASSWORD, ACL_USER):
        assert secret not in text, f"{secret!r} in {where}:\n{text[-3000:]}"


def test_service_never_shows_the_password(tmp_path, secured_url, data_dir, capsys,
                                          monkeypatch):
    directory = tmp_path / "service"
    directory.mkdir()
    service = ServiceProcess(directory, secured_url, {"s1": {"flush_period": 0.2}})
    try:
        service.start()
        # the config holds the password: readable by its owner only
        assert service.config.stat().st_mode & 0o077 == 0
        pid = service.wait_writer("s1")
        assert service.process is not None
        writers = children(service.process.pid)
        assert pid in writers
        for child in writers:
            assert_no_secret(cmdline(child), f"the command line of writer {child}")
        session = SimSession("s1", redis_url=secured_url, base_path=data_dir, time_scale=0)
        try:
            scan = session.loopscan(5, 0.1, "diode")
            assert scan.wait_saved(30).state == "SUCCEEDED", service.logs()
            check_saved(service.store, scan.key)
        finally:
            session.close()

        def listed() -> dict | None:
            doc = (service.status()["sessions"]["s1"].get("writer") or {})
            return doc if doc.get("scans") else None

        doc = wait_for(listed, 10, "the scan listed in /status", service.logs)
        assert doc["url"] == f"redis://***@127.0.0.1:{doc['url'].rsplit(':', 1)[1]}"
        assert_no_secret(service.get("/status")[1], "/status")
        assert service.status()["sessions"]["s1"]["process"]["redis"].startswith("redis://***@")
        assert_no_secret(service.get("/metrics")[1], "/metrics")

        # what the writer stores in Redis: its status document and its presence
        client = redis.Redis.from_url(secured_url)
        try:
            stored = client.get(status_key("s1"))
            presence = client.hgetall(writer_key("s1"))
        finally:
            client.close()
        assert stored and presence
        assert_no_secret(stored.decode(), "the status document in Redis")
        assert_no_secret(repr(presence), "the writer's presence in Redis")

        # nexus-writer status: from REDIS_URL, and with a password file and an ACL user
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.setenv("REDIS_URL", secured_url)
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)["s1"]["scans"][0]["state"] == "SUCCEEDED"
        assert_no_secret(out.out + out.err, "nexus-writer status --json")
        port = secured_url.rsplit(":", 1)[1]
        pw_file = tmp_path / "redis.pw"
        pw_file.write_text(ACL_PASSWORD + "\n")
        monkeypatch.delenv("REDIS_URL")
        assert main(["status", "--redis", f"redis://{ACL_USER}@127.0.0.1:{port}",
                     "--redis-password-file", str(pw_file)]) == 0
        out = capsys.readouterr()
        assert "SUCCEEDED" in out.out and f"redis://***@127.0.0.1:{port}" in out.out
        assert_no_secret(out.out + out.err, "the nexus-writer status table")
        assert main(["service", "list", "--config", str(service.config)]) == 0
        assert_no_secret(capsys.readouterr().out, "nexus-writer service list")

        # the status page and metrics: for local users only (docs/security.md), on
        # 127.0.0.1 and not on any other address (127.0.0.2 is loopback too)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", service.port), timeout=5).close()

        assert service.stop() == 0
    finally:
        service.close()
    assert_no_secret(service.logs(), "the service's log and output")


def test_session_writer_banner_and_log(tmp_path, secured_url):
    """``NexusSessionWriter`` with ``REDIS_URL``: its banner and log show the masked URL;
    a wrong password is refused with the reason, without the password."""
    env = dict(os.environ, REDIS_URL=secured_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus_writer.cli.main", "write", "s9", "--no-live",
         "--log", "debug"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        client = redis.Redis.from_url(secured_url)
        try:
            wait_for(lambda: client.exists(writer_key("s9")), 20, "the writer's presence")
        finally:
            client.close()
        assert_no_secret(cmdline(proc.pid), "the writer's command line")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "on redis://***@127.0.0.1:" in err
    assert_no_secret(out + err, "the writer's banner and log")

    wrong = secured_url.replace(REDIS_PASSWORD, "wrong-" + REDIS_PASSWORD[::-1])
    done = subprocess.run(
        [sys.executable, "-m", "nexus_writer.cli.main", "write", "s9", "--no-live",
         "--redis", wrong], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "wrong password or ACL user" in done.stderr
    assert "visible to every local user" in done.stderr  # the URL was on the command line
    assert "wrong-" not in done.stderr
    assert_no_secret(done.stdout + done.stderr, "the refusal")
