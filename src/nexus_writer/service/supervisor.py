"""``NexusWriterService``: one session-writer process per configured session.

Separate processes, so one session's crash or slowness cannot stop another; a
writer that dies is restarted (with backoff) and resumes the scans it had in
progress.  SIGHUP (or ``nexus-writer service add|remove``) reloads the config.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import config as cfg

logger = logging.getLogger(__name__)

#: Restart delays after unexpected exits, seconds (the last one repeats).
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def writer_command(session: cfg.SessionConfig, redis: str | None, log: str) -> list[str]:
    """The command line of one session writer."""
    cmd = [sys.executable, "-m", "nexus_writer.cli.main", "write", session.name, "--no-live",
           "--log", log]
    if redis:
        cmd += ["--redis", redis]
    for key, value in session.options.items():
        flag = "--" + key
        if isinstance(value, bool):
            if value:
                cmd.append(flag)
        else:
            cmd += [flag, str(value)]
    return cmd


class SessionProcess:
    """A supervised session-writer process."""

    def __init__(self, session: cfg.SessionConfig, redis: str | None, log: str):
        self.session = session
        self.redis = redis
        self.log = log
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.started = 0.0
        self.next_start = 0.0
        self.last_exit: int | None = None
        self.stopping = False

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def command(self) -> list[str]:
        return writer_command(self.session, self.redis, self.log)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.started = time.monotonic()
        logger.info("session %s: writer started (pid %d)", self.name, self.process.pid)

    def poll(self) -> None:
        """Restart the writer if it died."""
        if self.stopping:
            return
        if self.process is None:
            if time.monotonic() >= self.next_start:
                self.start()
            return
        code = self.process.poll()
        if code is None:
            if time.monotonic() - self.started > 60:
                self.restarts = 0  # ran a while: the next crash starts the backoff anew
            return
        self.last_exit = code
        delay = BACKOFF[min(self.restarts, len(BACKOFF) - 1)]
        self.restarts += 1
        logger.error("session %s: writer (pid %d) exited with %s; restarting in %.1f s",
                     self.name, self.process.pid, code, delay)
        self.process = None
        self.next_start = time.monotonic() + delay

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (the writer finishes its scans), then SIGTERM/SIGKILL after ``timeout``."""
        self.stopping = True
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)  # second Ctrl-C: abort scans in progress
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        logger.info("session %s: writer stopped", self.name)

    def info(self) -> dict[str, Any]:
        p = self.process
        return {"session": self.name, "pid": p.pid if p else None,
                "alive": bool(p and p.poll() is None), "restarts": self.restarts,
                "last_exit": self.last_exit, "redis": self.redis}


class Supervisor:
    """Runs the configured session writers until stopped."""

    def __init__(self, config_path: str | Path, redis: str | None = None,
                 log: str | None = None, http_port: int | None = None):
        self.config_path = Path(config_path)
        self.redis = redis
        self.log = log
        self.http_port = http_port
        self.processes: dict[str, SessionProcess] = {}
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._http: Any = None
        self.config = cfg.ServiceConfig()

    @property
    def pidfile(self) -> Path:
        return self.config_path.with_suffix(self.config_path.suffix + ".pid")

    def reload(self) -> None:
        """Apply the config file: start new sessions, stop removed ones, restart changed."""
        try:
            new = cfg.load(self.config_path)
        except ValueError as e:
            logger.error("config not reloaded: %s", e)
            return
        self.config = new
        log = self.log or new.log
        for name in list(self.processes):
            if name not in new.sessions:
                logger.info("session %s: removed from the config", name)
                self.processes.pop(name).stop()
        for name, session in new.sessions.items():
            redis = self.redis or new.redis_of(session)
            current = self.processes.get(name)
            if current is not None and current.command != writer_command(session, redis, log):
                logger.info("session %s: configuration changed, restarting its writer", name)
                current.stop()
                current = None
            if current is None:
                self.processes[name] = SessionProcess(session, redis, log)

    def request_reload(self, *_: Any) -> None:
        self._reload.set()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM; SIGHUP reloads the config."""
        self.pidfile.write_text(str(os.getpid()))
        signal.signal(signal.SIGHUP, self.request_reload)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.reload()
        port = self.http_port if self.http_port is not None else self.config.http
        if port is not None:
            from .http import StatusServer

            self._http = StatusServer(self, port).start()
            logger.info("status on http://127.0.0.1:%d/status and /metrics", self._http.port)
        logger.info("NexusWriterService: %d session(s) from %s", len(self.processes),
                    self.config_path)
        try:
            while not self._stop.wait(0.25):
                if self._reload.is_set():
                    self._reload.clear()
                    logger.info("reloading %s", self.config_path)
                    self.reload()
                for process in list(self.processes.values()):
                    process.poll()
        finally:
            for process in self.processes.values():
                process.stop()
            if self._http is not None:
                self._http.stop()
            self.pidfile.unlink(missing_ok=True)
        return 0

    def status(self) -> dict[str, Any]:
        """Process info plus each writer's status document from Redis."""
        from ..data import DataStore
        from ..data.status import read_status

        out: dict[str, Any] = {"service": {"pid": os.getpid(), "config": str(self.config_path)},
                               "sessions": {}}
        for name, process in list(self.processes.items()):
            entry: dict[str, Any] = {"process": process.info()}
            try:
                store = DataStore(process.redis)
                try:
                    entry["writer"] = read_status(store, name).get(name)
                finally:
                    store.close()
            except Exception as e:  # noqa: BLE001 - status must answer even when Redis is away
                entry["error"] = str(e)
            out["sessions"][name] = entry
        return out


def signal_service(config_path: str | Path) -> bool:
    """Ask a running service to reload its config (SIGHUP via its pid file)."""
    pidfile = Path(str(config_path) + ".pid")
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGHUP)
        return True
    except (OSError, ValueError):
        return False
