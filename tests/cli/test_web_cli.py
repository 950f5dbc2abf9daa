"""``--http``: the session writer and ``nexus-writer demo`` serve the web page and say
where; a taken port or a bad address is a clear error."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nexus_writer.cli.main", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _wait_url(path, proc, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"web page: (http://127\.0\.0\.1:\d+/)", path.read_text())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {path.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"no web page address printed within {timeout} s: {path.read_text()}")


def test_session_writer_serves_its_page(redis_url, tmp_path, sim_session):
    log = tmp_path / "writer.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(_command("write", "test_session", "--redis", redis_url,
                                         "--no-live", "--http", "0", "--flush-period", "0.2"),
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(), cwd=tmp_path)
    try:
        url = _wait_url(log, proc)
        scan = sim_session.loopscan(3, 0.1, "diode")
        assert scan.wait_saved(30).state == "SUCCEEDED"
        with urllib.request.urlopen(url + "status", timeout=10) as r:
            status = json.loads(r.read())
        writer = status["sessions"]["test_session"]["writer"]
        assert writer["pid"] == proc.pid and writer["web"] == url
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"nexus-writer" in r.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_taken_port_and_bad_address(redis_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(_command("write", "test_session", "--redis", redis_url, "--no-live",
                                      "--http", str(port)), capture_output=True, text=True,
                             env=_env(), timeout=60)
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
    out = subprocess.run(_command("write", "test_session", "--redis", redis_url, "--no-live",
                                  "--http", "host:port"), capture_output=True, text=True,
                         env=_env(), timeout=60)
    assert out.returncode == 2 and "--http: a port" in out.stderr


@pytest.mark.timeout(180)
def test_demo_prints_its_page(tmp_path):
    out = subprocess.run(_command("demo", "--base-path", str(tmp_path / "demo"),
                                  "--time-scale", "0", "--no-live"),
                         capture_output=True, text=True, env=_env(), timeout=170, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert re.search(r"web page: http://127\.0\.0\.1:\d+/", out.stderr), out.stderr
