"""The service's configuration file (TOML): which sessions to write, where, how.

    redis = "redis://localhost:6379"   # default Redis for the sessions
    http = 8790                        # optional: port of the HTTP status endpoint
    log = "info"

    [sessions.test_session]            # one table per session
    keepshape = true                   # any writer option (see NexusSessionWriter --help)

    [sessions.other]
    redis = "redis://otherhost:6379"   # another Redis for this session
    protocol = "blissdata"             # BLISS 2.x (default "auto": what the Redis speaks)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..data.urls import redact_url
from ..writer import WriterOptions
from ..writer.blissdata_source import PROTOCOLS


@dataclass
class SessionConfig:
    name: str
    redis: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: ``auto``, ``native`` or ``blissdata`` (the writer's ``--protocol``); None: auto.
    protocol: str | None = None


@dataclass
class ServiceConfig:
    redis: str | None = None
    http: int | None = None
    log: str = "info"
    sessions: dict[str, SessionConfig] = field(default_factory=dict)

    def redis_of(self, session: SessionConfig) -> str | None:
        return session.redis or self.redis


#: Top-level keys of the config file.
TOP_LEVEL = ("redis", "http", "log", "sessions")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _check_option(where: str, name: str, value: Any, default: Any) -> None:
    """The value of a writer option has the type of its default (ints for floats)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        expected = "true or false"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    else:
        ok = isinstance(value, type(default))
        expected = f"a {type(default).__name__}"
    if not ok:
        raise ValueError(f"{where}: option {name} must be {expected}, not {value!r}")


def load(path: str | Path) -> ServiceConfig:
    """Read and check a config file (a missing file is an empty config).

    Raises ValueError naming the file, the session and the problem: invalid TOML,
    an unknown key or writer option, a value of the wrong type or out of range.
    """
    path = Path(path)
    if not path.exists():
        return ServiceConfig()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from e
    unknown = set(data) - set(TOP_LEVEL)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; known: {list(TOP_LEVEL)} "
                         "(writer options go in a [sessions.NAME] table)")
    redis = data.get("redis")
    if redis is not None and not isinstance(redis, str):
        raise ValueError(f"{path}: redis must be a URL string, not {redis!r}")
    http = data.get("http")
    if http is not None and (isinstance(http, bool) or not isinstance(http, int)
                             or not 0 <= http <= 65535):
        raise ValueError(f"{path}: http must be a port number (0-65535), not {http!r}")
    log = str(data.get("log", "info"))
    if log.lower() not in LOG_LEVELS:
        raise ValueError(f"{path}: log must be one of {LOG_LEVELS}, not {log!r}")
    tables = data.get("sessions") or {}
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: sessions must be tables ([sessions.NAME]), not {tables!r}")
    defaults = {f.name: f.default for f in fields(WriterOptions)}
    sessions = {}
    for name, table in tables.items():
        where = f"{path}: session {name!r}"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table ([sessions.{name}]), not {table!r}")
        table = dict(table)
        session_redis = table.pop("redis", None)
        if session_redis is not None and not isinstance(session_redis, str):
            raise ValueError(f"{where}: redis must be a URL string, not {session_redis!r}")
        protocol = table.pop("protocol", None)
        if protocol is not None and protocol not in PROTOCOLS:
            raise ValueError(f"{where}: protocol must be one of {PROTOCOLS}, not {protocol!r}")
        unknown = set(table) - set(defaults)
        if unknown:
            raise ValueError(f"{where}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(defaults)}, redis and protocol")
        for key, value in table.items():
            _check_option(where, key, value, defaults[key])
        try:
            WriterOptions(**table)  # checks the values
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
        sessions[name] = SessionConfig(name, session_redis, table, protocol)
    return ServiceConfig(redis=redis, http=http, log=log, sessions=sessions)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def dump(config: ServiceConfig) -> str:
    """TOML text of ``config`` (what ``service add`` / ``remove`` write back);
    :func:`load` of it gives ``config`` back."""
    lines = []
    for key in ("redis", "http", "log"):
        value = getattr(config, key)
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, session in config.sessions.items():
        lines.append(f"\n[sessions.{_toml_value(name)}]")
        if session.redis:
            lines.append(f"redis = {_toml_value(session.redis)}")
        if session.protocol:
            lines.append(f"protocol = {_toml_value(session.protocol)}")
        for key, value in session.options.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def save(config: ServiceConfig, path: str | Path) -> None:
    """Write ``config`` to ``path`` atomically (a running service never reads half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = dump(config)
    tmp.write_text(text)
    if redact_url(text) != text:  # a Redis password: for the owner's eyes only
        tmp.chmod(0o600)
    tmp.replace(path)
