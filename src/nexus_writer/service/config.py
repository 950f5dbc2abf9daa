"""The service's configuration file (TOML): which sessions to write, where, how.

    redis = "redis://localhost:6379"   # default Redis for the sessions
    http = 8790                        # optional: port of the HTTP status endpoint
    log = "info"

    [sessions.test_session]            # one table per session
    keepshape = true                   # any writer option (see NexusSessionWriter --help)

    [sessions.other]
    redis = "redis://otherhost:6379"   # another Redis for this session
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..writer import WriterOptions


@dataclass
class SessionConfig:
    name: str
    redis: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceConfig:
    redis: str | None = None
    http: int | None = None
    log: str = "info"
    sessions: dict[str, SessionConfig] = field(default_factory=dict)

    def redis_of(self, session: SessionConfig) -> str | None:
        return session.redis or self.redis


def load(path: str | Path) -> ServiceConfig:
    """Read and check a config file; raises ValueError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        return ServiceConfig()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from e
    known = set(WriterOptions.names())
    sessions = {}
    for name, table in (data.get("sessions") or {}).items():
        table = dict(table or {})
        redis = table.pop("redis", None)
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"{path}: session {name!r}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")
        WriterOptions(**table)  # checks the values
        sessions[name] = SessionConfig(name, redis, table)
    return ServiceConfig(redis=data.get("redis"), http=data.get("http"),
                         log=str(data.get("log", "info")), sessions=sessions)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump(config: ServiceConfig) -> str:
    """TOML text of ``config`` (what ``service add`` / ``remove`` write back)."""
    lines = []
    for key in ("redis", "http", "log"):
        value = getattr(config, key)
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, session in config.sessions.items():
        lines.append(f'\n[sessions."{name}"]')
        if session.redis:
            lines.append(f"redis = {_toml_value(session.redis)}")
        for key, value in session.options.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def save(config: ServiceConfig, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump(config))
    tmp.replace(path)
