"""Registration and lookup against a real Tango database (``pytango-db``: the sqlite
database device server, from PyPI): ``nexus-writer tango register`` with blisswriter's
defaults, the device found as BLISS 2.4 finds it (class ``BlissWriter``, property
``session``), ``nexus-writer tango run default`` serving it, and a scan saved."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from tango import Database, DevFailed, DeviceProxy, DevState

from nexus_writer.cli.main import main
from nexus_writer.cli.tango_cli import tango_host
from nexus_writer.tango.register import find_session_writer
from nexus_writer.writer import ScanState

from ..writer.helpers import check_scan
from ..writer.test_crash import as_written
from .conftest import Bliss

pytest.importorskip("databaseds")

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def tango_db(monkeypatch):
    """A Tango database (in memory) on a free port; ``$TANGO_HOST`` points to it."""
    from databaseds.fixtures import run_pytango_db

    # its command (PyDatabaseds) is installed beside this interpreter
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    database = run_pytango_db()
    yield next(database)
    database.close()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nexus_writer.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_register_find_run_and_save(tango_db, redis_url, sim_session, store, tmp_path):
    host, port = tango_host(tango_db)
    done = run_cli("tango", "register", "--redis", redis_url, "--session", "test_session",
                   "--tango-host", tango_db)
    assert done.returncode == 0, done.stderr
    name = "id00/blisswriter/test_session"  # blisswriter's defaults: member = session
    assert name in done.stdout
    db = Database(host, port)
    assert list(db.get_device_name("BlissWriter/default", "BlissWriter")) == [name]
    props = db.get_device_property(name, ["redis_url", "session"])
    assert list(props["redis_url"]) == [redis_url] and list(props["session"]) == ["test_session"]
    assert find_session_writer("test_session", host=host, port=port) == name
    assert find_session_writer("another_session", host=host, port=port) is None

    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "nexus_writer.cli.main", "tango", "run",
                               "default", "--tango-host", tango_db, "--log-level", "INFO"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        device = DeviceProxy(f"tango://{tango_db}/{name}")
        deadline = time.monotonic() + 30
        while True:
            try:
                if device.state() == DevState.ON:
                    break
            except DevFailed:
                pass  # not exported yet
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the registered device never came ON"
            time.sleep(0.05)
        scan = sim_session.loopscan(5, 0.01, "diode", run=False)
        thread = scan.run_in_thread()
        while scan.key is None:
            time.sleep(0.01)
        assert device.SaveScan(scan.key) is True
        thread.join(30)
        assert Bliss(device, scan.key).finished() == DevState.OFF
        check_scan(store, as_written(store, scan.key, ScanState.SUCCEEDED))
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def test_register_defaults_and_refusals(tango_db, redis_url, capsys):
    """Without --session: member 'default', no session property; --follow needs a
    session; a password in the URL is not printed."""
    host, port = tango_host(tango_db)
    url = redis_url.replace("redis://", "redis://nxw:s3cret@")
    assert main(["tango", "register", "--redis", url]) == 0
    out = capsys.readouterr().out
    assert "id00/blisswriter/default" in out and "redis://***@" in out
    assert "s3cret" not in out and "nxw:" not in out  # neither password nor ACL user
    db = Database(host, port)
    assert list(db.get_device_property("id00/blisswriter/default", ["session"])["session"]) == []
    assert main(["tango", "register", "--redis", url, "--follow"]) == 2
    assert "--follow needs --session" in capsys.readouterr().err
    assert main(["tango", "register", "--redis", url, "--session", "s", "--follow",
                 "--domain", "bl1", "--family", "writers", "--member", "w1"]) == 0
    props = db.get_device_property("bl1/writers/w1", ["session", "follow_session"])
    assert list(props["session"]) == ["s"] and list(props["follow_session"]) == ["true"]


@pytest.mark.parametrize("value", ["nohost", "host:", "host:port", ":10000"])
def test_tango_host_is_checked(value):
    with pytest.raises(ValueError, match="--tango-host"):
        tango_host(value)


def test_without_pytango_the_commands_say_what_to_install():
    """pytango is an optional extra: without it, the tango commands exit 2 naming the
    extra (the other commands do not need it)."""
    code = ("import sys; sys.modules['tango'] = None\n"
            "from nexus_writer.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))")
    for args in (["tango", "run", "default"],
                 ["tango", "register", "--redis", "redis://127.0.0.1:1"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "pip install 'nexus-writer[tango]'" in done.stderr, done.stderr
    done = subprocess.run([sys.executable, "-c", code, "validate", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
