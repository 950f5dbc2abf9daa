"""A ``nexus-writer service run`` subprocess to test, and the check that a scan the
service wrote is in its file bit-exact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - readers of compressed data need the filters registered

from nexus_writer.data import DataStore
from nexus_writer.data.saving import reports, writer_present
from nexus_writer.service import config as cfg
from tests.layout import expected_places
from tests.waiting import wait_for
from tests.writer.helpers import assert_camera, assert_channel, decode


class ServiceProcess:
    """``nexus-writer service run --config {tmp}/service.toml --http 0`` in a subprocess.

    The HTTP port is read from the service's log file; :meth:`logs` gives the log and
    the writers' output for assertion messages.
    """

    def __init__(self, directory: Path, redis_url: str, sessions: dict[str, dict[str, Any]]):
        self.directory = Path(directory)
        self.redis_url = redis_url
        self.config = self.directory / "service.toml"
        self.logfile = self.directory / "service.log"
        self.outfile = self.directory / "service.out"
        config = cfg.ServiceConfig(redis=redis_url, sessions={
            name: cfg.SessionConfig(name, None, dict(options)) for name, options in
            sessions.items()})
        cfg.save(config, self.config)
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.store = DataStore(redis_url)

    def start(self, timeout: float = 20.0) -> "ServiceProcess":
        with open(self.outfile, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nexus_writer.cli.main", "service", "run",
                 "--config", str(self.config), "--http", "0", "--log", "info",
                 "--logfile", str(self.logfile)],
                stdout=out, stderr=subprocess.STDOUT,
                # its own process group, so that a test can send it a terminal's Ctrl-C
                # (os.killpg) without hitting pytest
                start_new_session=True)

        def port() -> int | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited ({self.process.returncode}):\n"
                                     + self.logs())
            m = re.search(r"http://127\.0\.0\.1:(\d+)/status", self._read(self.logfile))
            return int(m.group(1)) if m else None

        self.port = wait_for(port, timeout, "the service's HTTP port", self.logs)
        return self

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return (f"--- service log ---\n{self._read(self.logfile)[-6000:]}\n"
                f"--- output ---\n{self._read(self.outfile)[-6000:]}")

    def get(self, path: str) -> tuple[str, str]:
        """(content type, body) of ``GET path`` on the status server."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.headers["Content-Type"], r.read().decode()

    def status(self) -> dict[str, Any]:
        return json.loads(self.get("/status")[1])

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def writer_listening(self, session: str) -> int | None:
        """Pid of the session's writer if the service runs it and it beats in Redis."""
        process = self.status()["sessions"].get(session, {}).get("process") or {}
        beat = writer_present(self.store, session)
        if process.get("alive") and beat and int(beat["pid"]) == process["pid"]:
            return int(process["pid"])
        return None

    def wait_writer(self, session: str, timeout: float = 20.0, not_pid: int | None = None
                    ) -> int:
        """Wait until a writer (another one than ``not_pid``) listens to ``session``."""
        def ready() -> int | None:
            pid = self.writer_listening(session)
            return pid if pid is not None and pid != not_pid else None

        return wait_for(ready, timeout, f"a writer of session {session!r}", self.logs)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the service did not stop within {timeout} s\n"
                                 + self.logs()) from None

    def close(self) -> None:
        """Stop the service if it runs; kill writers it left behind."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except AssertionError:
                pass
        for line in self._read(self.logfile).splitlines():
            m = re.search(r"writer started \(pid (\d+)\)", line)
            if m:
                try:
                    os.kill(int(m.group(1)), signal.SIGKILL)
                except OSError:
                    pass
        self.store.close()


def check_saved(store: DataStore, key: str) -> None:
    """The scan ``key`` was saved SUCCEEDED and its file holds every point published
    in Redis, bit-exact (scalars, spectra, camera frames through the VDS).

    The datasets are looked for where the documented layout puts them
    (:func:`tests.layout.expected_places`), never where the writer's plan says.
    """
    final = [r for r in reports(store, key) if r.state in ("SUCCEEDED", "FAILED", "SKIPPED")]
    scan = store.get_scan_node(key)
    assert final and final[-1].state == "SUCCEEDED", f"{scan.label}: reports {final}"
    assert len(final) == 1, f"{scan.label}: several final reports {final}"
    info = scan.info
    nodes = scan.nodes()
    places = expected_places(info, nodes)
    with h5py.File(info["filename"], "r", locking=False) as f:
        for node in nodes:
            if node.type == "node_ref_channel":
                continue
            path = places[node.name].path
            assert path in f, f"{scan.label}: {node.name} not at {path}"
            link = f[places[node.name].entry]["measurement"].get(places[node.name].measurement,
                                                                 getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == path, \
                f"{scan.label}: measurement/{places[node.name].measurement} -> {path}?"
            if node.type == "lima":
                assert_camera(f[path], node)
            else:
                assert_channel(f[path], node)
        counts = {n.name: n.count() for n in nodes if n.type != "node_ref_channel"}
        chain = info.get("acquisition_chain") or {"": None}
        for k in range(1, len(chain) + 1):
            writer = f[f"{scan.number}.{k}"]["writer"]
            assert decode(writer["status"][()]) == "SUCCEEDED", f"{scan.number}.{k}"
            channels = decode(writer["channels"][()])
            assert channels == sorted(counts)
            assert writer["points_written"][()].tolist() == [counts[c] for c in channels]
            assert writer["points_published"][()].tolist() == [counts[c] for c in channels]
