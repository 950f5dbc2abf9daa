"""``NexusWriterService``: one session-writer process per configured session.

Separate processes, so one session's crash or slowness cannot stop another; a
writer that dies is restarted (with backoff) and resumes the scans it had in
progress.  SIGHUP (or ``nexus-writer service add|remove``) reloads the config.

The supervisor never blocks on one writer: stopping a writer (removed from the
config, reconfigured, or at shutdown) is a sequence of steps advanced by the main
loop, so the other sessions stay supervised while a writer finishes its scans.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..data.urls import URL_ENV, credentials, redact, redact_url, resolve_url
from ..errors import NexusWriterError
from ..writer.filelock import LockHeld, claim_lock_file
from . import config as cfg

logger = logging.getLogger(__name__)

#: Restart delays after unexpected exits, seconds (the last one repeats).
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
#: A writer that ran this long was no crash loop: its next exit starts the backoff
#: anew.  A writer that cannot start (bad option, Redis refused) exits within about
#: 2 s; one killed while it worked must come back at once, not after the 30 s that
#: kills in a row would otherwise reach (the soak benchmark measured such outages).
STABLE_AFTER = 5.0
#: Seconds a stopping writer gets to finish its scans (SIGINT), then to abort them
#: (second SIGINT) before SIGKILL.
FINISH_TIMEOUT = 30.0
ABORT_TIMEOUT = 10.0


class ServiceRunningError(NexusWriterError, RuntimeError):
    """Another service already runs with this config file."""


def pidfile_of(config_path: str | Path) -> Path:
    """The pid file of the service running ``config_path`` (locked while it runs)."""
    return Path(str(config_path) + ".pid")


@functools.lru_cache(maxsize=1)
def _writer_flags() -> dict[str, tuple[str, bool, Any]]:
    """Option name -> (command-line flag, is a switch, the value the switch sets),
    from the ``write`` command's own parser, so that the names of the config file
    always match its flags (``inactivity_timeout`` is ``--inactivity-timeout``,
    ``master_files = false`` is ``--no-master-files``)."""
    import argparse

    from ..cli.main import add_writer_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_writer_arguments(parser)
    flags = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public accessor
        if action.option_strings:
            switch = action.nargs == 0
            flags[action.dest] = (action.option_strings[0], switch, action.const)
    return flags


def writer_command(session: cfg.SessionConfig, log: str, web: bool = False) -> list[str]:
    """The command line of one session writer; ``web``: it serves its page on a free
    loopback port (the service's page reads the files through it).  No Redis URL in
    it: every local user can read a command line (``ps``); the URL goes in the
    writer's environment (:func:`writer_env`).

    Raises ValueError for an option the ``write`` command does not have.
    """
    # --standby: a session another writer serves (a manual one, a service on another
    # host) is waited for, not fought over or restarted in a loop
    cmd = [sys.executable, "-m", "nexus_writer.cli.main", "write", session.name, "--no-live",
           "--standby", "--log", log]
    if session.protocol:
        cmd += ["--protocol", session.protocol]
    flags = _writer_flags()
    for key, value in session.options.items():
        if key not in flags:
            raise ValueError(f"session {session.name!r}: the writer has no option {key!r}")
        flag, switch, sets = flags[key]
        if switch:
            if bool(value) == sets:
                cmd.append(flag)
        else:
            cmd += [flag, str(value)]
    if web:
        cmd += ["--http", "127.0.0.1:0"]
    return cmd


def writer_env(redis: str | None) -> dict[str, str]:
    """The environment of a session writer: the service's, with ``REDIS_URL`` (password
    included) when a URL is configured.  A process's environment is readable by its
    owner only (``/proc/PID/environ`` is mode 0400)."""
    env = dict(os.environ)
    if redis:
        env[URL_ENV] = redis
    return env


class SessionProcess:
    """A supervised session-writer process.

    ``after``: a previous writer of the same session that must have exited before
    this one starts (two writers on one session would both write its scans).
    """

    def __init__(self, session: cfg.SessionConfig, redis: str | None, log: str,
                 after: "SessionProcess | None" = None, web: bool = False):
        self.session = session
        self.redis = redis
        self.log = log
        self.command = writer_command(session, log, web)
        self.after = after
        self.process: subprocess.Popen | None = None
        #: Restarts since the service started (a counter: never goes down).
        self.restarts = 0
        self._failures = 0  # consecutive short runs, for the backoff
        self.started = 0.0
        self.next_start = 0.0
        self.last_exit: int | None = None
        self.stopping = False
        self._stop_step = 0  # 1: finishing scans, 2: aborting them, 3: killed
        self._stop_deadline = 0.0

    @property
    def name(self) -> str:
        return self.session.name

    def start(self) -> None:
        try:
            # Own process group: a Ctrl-C at the service's terminal reaches only the
            # service, which then stops each writer once (a second SIGINT would make
            # the writer abort its scans).
            self.process = subprocess.Popen(self.command, start_new_session=True,
                                            env=writer_env(self.redis))
        except OSError as e:
            logger.error("session %s: cannot start the writer (%s): %s", self.name,
                         self.command[0], e)
            self._schedule_restart()
            return
        self.started = time.monotonic()
        logger.info("session %s: writer started (pid %d)", self.name, self.process.pid)

    def _schedule_restart(self) -> None:
        delay = BACKOFF[min(self._failures, len(BACKOFF) - 1)]
        self._failures += 1
        self.next_start = time.monotonic() + delay

    def poll(self) -> None:
        """Start the writer when due, restart it if it died, advance a stop."""
        if self.stopping:
            self._advance_stop()
            return
        if self.process is None:
            if self.after is not None:
                if not self.after.stopped:
                    return
                self.after = None
            if time.monotonic() >= self.next_start:
                self.start()
            return
        code = self.process.poll()
        if code is None:
            if time.monotonic() - self.started > STABLE_AFTER:
                self._failures = 0
            return
        self.last_exit = code
        self.restarts += 1
        self._schedule_restart()
        logger.error("session %s: writer (pid %d) exited with %s; restarting in %.1f s",
                     self.name, self.process.pid, code, self.next_start - time.monotonic())
        self.process = None

    def begin_stop(self, timeout: float = FINISH_TIMEOUT) -> None:
        """SIGINT: the writer stops listening and finishes its scans; :meth:`poll`
        aborts them after ``timeout`` s and kills the writer after ABORT_TIMEOUT more."""
        if self.stopping:
            return
        self.stopping = True
        p = self.process
        if p is None or p.poll() is not None:
            return
        self._signal(signal.SIGINT)
        self._stop_step = 1
        self._stop_deadline = time.monotonic() + timeout

    def abort(self) -> None:
        """Second SIGINT now: the writer aborts its scans in progress."""
        if self._stop_step == 1 and not self.stopped:
            self._stop_deadline = 0.0
            self._advance_stop()

    def _signal(self, sig: int) -> None:
        assert self.process is not None
        try:
            self.process.send_signal(sig)
        except OSError:  # exited meanwhile
            pass

    def _advance_stop(self) -> None:
        p = self.process
        if p is None or self._stop_step == 0:
            return
        if p.poll() is not None:
            if self._stop_step < 4:
                logger.info("session %s: writer (pid %d) stopped (exit %s)", self.name, p.pid,
                            p.returncode)
                self.last_exit = p.returncode
                self._stop_step = 4
            return
        if time.monotonic() < self._stop_deadline:
            return
        if self._stop_step == 1:
            logger.warning("session %s: writer (pid %d) still finishing scans; aborting them",
                           self.name, p.pid)
            self._signal(signal.SIGINT)
            self._stop_step = 2
            self._stop_deadline = time.monotonic() + ABORT_TIMEOUT
        elif self._stop_step == 2:
            logger.error("session %s: writer (pid %d) does not stop; killing it", self.name,
                         p.pid)
            self._signal(signal.SIGKILL)
            self._stop_step = 3

    @property
    def stopped(self) -> bool:
        """Stop requested and the process gone (its exit then recorded and logged)."""
        if not self.stopping:
            return False
        if self.process is None:
            return True
        if self.process.poll() is None:
            return False
        self._advance_stop()
        return True

    def stop(self, timeout: float = FINISH_TIMEOUT) -> None:
        """:meth:`begin_stop` and wait until the writer has exited."""
        self.begin_stop(timeout)
        while not self.stopped:
            self._advance_stop()
            time.sleep(0.05)

    def info(self) -> dict[str, Any]:
        p = self.process
        return {"session": self.name, "pid": p.pid if p else None,
                "alive": bool(p and p.poll() is None), "restarts": self.restarts,
                "last_exit": self.last_exit, "stopping": self.stopping,
                "redis": redact_url(self.redis) if self.redis else None}


class Supervisor:
    """Runs the configured session writers until stopped."""

    def __init__(self, config_path: str | Path, redis: str | None = None,
                 log: str | None = None, http_port: int | str | None = None,
                 data_roots: list[str] | None = None, password_file: str | None = None):
        self.config_path = Path(config_path)
        self.redis = redis
        #: Read at each (re)load: a changed password restarts the writers.
        self.password_file = password_file
        self.log = log
        #: The web page's port, or "HOST:PORT" (see nexus_writer.web.parse_address).
        self.http_port = http_port
        self.data_roots = data_roots or []
        self.processes: dict[str, SessionProcess] = {}
        #: Writers being stopped (removed or reconfigured sessions).
        self.retiring: list[SessionProcess] = []
        self._reload = threading.Event()
        self._stop = threading.Event()
        self._stop_requests = 0
        self._http: Any = None
        self._pid_fd: int | None = None
        self.config = cfg.ServiceConfig()

    @property
    def pidfile(self) -> Path:
        return pidfile_of(self.config_path)

    def reload(self) -> None:
        """Apply the config file: start new sessions, stop removed ones, restart changed.

        A config that does not load (or names a writer option that does not exist)
        is refused as a whole, logged, and the running writers go on.
        """
        try:
            new = cfg.load(self.config_path)
            log = self.log or new.log
            web = self.http_port is not None or new.http is not None
            commands = {name: writer_command(s, log, web) for name, s in new.sessions.items()}
            urls = {name: self._url_of(new, s) for name, s in new.sessions.items()}
        except ValueError as e:
            logger.error("config not (re)loaded: %s", e)
            return
        self.config = new
        for name in list(self.processes):
            if name not in new.sessions:
                logger.info("session %s: removed from the config, stopping its writer", name)
                self._retire(self.processes.pop(name))
        for name, session in new.sessions.items():
            current = self.processes.get(name)
            if current is not None and (current.command != commands[name]
                                        or current.redis != urls[name]):
                logger.info("session %s: configuration changed, restarting its writer", name)
                self._retire(self.processes.pop(name))
                current = None
            if current is None:
                previous = next((p for p in self.retiring if p.name == name), None)
                self.processes[name] = SessionProcess(session, urls[name], log,
                                                      after=previous, web=web)

    def _url_of(self, config: cfg.ServiceConfig, session: cfg.SessionConfig) -> str | None:
        """A session's Redis URL, with the password of ``password_file`` (None: the
        writer's default, ``$REDIS_URL`` inherited)."""
        url = self.redis or config.redis_of(session)
        if self.password_file:
            return resolve_url(url, self.password_file)
        return url

    def _retire(self, process: SessionProcess) -> None:
        process.begin_stop()
        self.retiring.append(process)

    def request_reload(self, *_: Any) -> None:
        self._reload.set()

    def request_stop(self, *_: Any) -> None:
        """First request: stop, letting writers finish their scans; second: abort them."""
        self._stop_requests += 1
        self._stop.set()

    def _lock_pidfile(self) -> None:
        """Write our pid into the pid file and hold a lock on it while running, so
        that ``service add`` signals only a live service, and a second service on the
        same config is refused."""
        try:
            self._pid_fd = claim_lock_file(self.pidfile, str(os.getpid()))
        except LockHeld as e:
            raise ServiceRunningError(f"a service already runs with {self.config_path} "
                                      f"(pid {e.holder or '?'}, pid file {self.pidfile})"
                                      ) from None

    def _unlock_pidfile(self) -> None:
        if self._pid_fd is not None:
            self.pidfile.unlink(missing_ok=True)
            os.close(self._pid_fd)
            self._pid_fd = None

    def _tick(self) -> None:
        for process in list(self.processes.values()):
            process.poll()
        for process in self.retiring:
            process.poll()
        self.retiring = [p for p in self.retiring if not p.stopped]

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM; SIGHUP reloads the config.

        Raises ServiceRunningError if a service already runs with this config,
        OSError if the HTTP port is taken.
        """
        # Handlers first: a SIGHUP from ``service add`` must never find the default
        # action (terminate) once the pid file names us.
        signal.signal(signal.SIGHUP, self.request_reload)
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self._lock_pidfile()
        try:
            self.reload()
            port = self.http_port if self.http_port is not None else self.config.http
            if port is not None:
                from .http import StatusServer

                self._http = StatusServer(self, port, roots=self.data_roots).start()
                logger.info("status on %sstatus and /metrics; web page on %s",
                            self._http.url, self._http.url)
            logger.info("NexusWriterService (pid %d): %d session(s) from %s", os.getpid(),
                        len(self.processes), self.config_path)
            while not self._stop.wait(0.25):
                if self._reload.is_set():
                    self._reload.clear()
                    logger.info("reloading %s", self.config_path)
                    self.reload()
                self._tick()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        """Stop every writer in parallel (they finish their scans; a second stop
        request aborts them)."""
        everyone = list(self.processes.values()) + self.retiring
        for process in everyone:
            process.begin_stop()
        if everyone:
            logger.info("stopping %d writer(s); they finish their scans in progress "
                        "(signal again to abort them)", len(everyone))
        while not all(p.stopped for p in everyone):
            if self._stop_requests >= 2:
                for process in everyone:
                    process.abort()
            for process in everyone:
                process.poll()
            time.sleep(0.05)
        self.retiring = []
        if self._http is not None:
            self._http.stop()
            self._http = None
        self._unlock_pidfile()

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
                entry["error"] = redact(str(e), *credentials(process.redis or ""))
            out["sessions"][name] = entry
        return out


def signal_service(config_path: str | Path) -> bool:
    """Ask the service running ``config_path`` to reload it (SIGHUP to the pid of its
    pid file); False when no service runs (no pid file, or a stale one nobody locks)."""
    try:
        fd = os.open(pidfile_of(config_path), os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it: left by a service that was killed
        except BlockingIOError:
            pass
        pid = int(os.read(fd, 32).decode().strip())
        os.kill(pid, signal.SIGHUP)
        return True
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)
