"""Redis URLs and their secrets: where the URL comes from, how it is shown, and what
a failed connection means.

A URL may carry an ACL user and a password (``redis://user:pw@host:port``).  Neither
is ever shown: every log line, status document, error message and command line
gives :func:`redact_url` of it (``redis://***@host:port``).  Child processes get the
URL through the ``REDIS_URL`` environment variable (readable by their owner only),
never through their command line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import redis

#: The URL when none is given and ``REDIS_URL`` is not set.
DEFAULT_URL = "redis://localhost:6379"
#: Environment variable holding the Redis URL (with its password, if any).
URL_ENV = "REDIS_URL"
#: What replaces the user and password of a URL.
MASK = "***"

# scheme://userinfo@ : whatever stands between :// and the last @ before the host
_USERINFO = re.compile(r"\b((?:rediss?|unix|valkeys?)://)([^\s/@'\"]*)@", re.IGNORECASE)


def redact_url(url: str | None) -> str:
    """``url`` with its user and password replaced by ``***`` (unchanged without them)."""
    if not url:
        return str(url or "")
    return _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", str(url))


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every Redis URL's credentials masked, and each of ``secrets``
    (passwords, user names of 3 characters or more) replaced by ``***``."""
    out = redact_url(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            out = out.replace(secret, MASK)
    return out


def credentials(url: str) -> tuple[str | None, str | None]:
    """The (user, password) of ``url``, None where absent."""
    parts = urlsplit(url)
    return parts.username, parts.password


def has_credentials(url: str | None) -> bool:
    return bool(url) and redact_url(url) != url


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (its user, if any, kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username or "", safe="")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The password in ``path`` (its first line, without the line end).

    Raises ValueError naming the file (never its content) when it cannot be read or
    is empty."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"Redis password file {path}: {e.strerror or e}") from e
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ValueError(f"Redis password file {path} is empty")
    return password


def resolve_url(url: str | None = None, password_file: str | os.PathLike[str] | None = None
                ) -> str:
    """The Redis URL to use: ``url``, else ``$REDIS_URL``, else ``redis://localhost:6379``;
    with the password read from ``password_file`` when one is given (it replaces a
    password in the URL; an ACL user in the URL is kept)."""
    resolved = url or os.environ.get(URL_ENV) or DEFAULT_URL
    if password_file:
        resolved = with_password(resolved, read_password_file(password_file))
    return resolved


#: Commands of the RedisJSON / RediSearch modules (blissdata needs both).
_MODULE_COMMANDS = ("json.", "ft.")


def describe_error(error: BaseException, url: str) -> str:
    """What went wrong talking to the Redis at ``url``, and the fix; secrets masked.

    Tells apart: unreachable, wrong password or ACL user, password missing, password
    given to a server without one, modules missing (blissdata), other errors.
    """
    shown = redact_url(url)
    user, password = credentials(url)
    detail = redact(str(error), password, user).rstrip(".")
    low = detail.lower()
    if isinstance(error, redis.AuthenticationError) or "noauth" in low or "wrongpass" in low:
        if "noauth" in low or "authentication required" in low:
            return (f"Redis at {shown} requires a password ({detail}): give it with "
                    "--redis-password-file FILE or in REDIS_URL "
                    "(redis://[user]:PASSWORD@host:port)")
        if "no password is set" in low or "without any password configured" in low:
            return (f"Redis at {shown} has no password but one was given ({detail}): "
                    "remove it from the URL / password file")
        return (f"Redis at {shown} refused the credentials: wrong password or ACL user "
                f"({detail}); check --redis-password-file, the user in the URL, and the "
                "server's requirepass / ACL")
    if isinstance(error, redis.ResponseError) and (
            "unknown command" in low and any(f"'{c}" in low for c in _MODULE_COMMANDS)):
        return (f"Redis at {shown} lacks the RedisJSON / RediSearch modules that "
                f"blissdata needs ({detail}): start it with --loadmodule rejson.so "
                "--loadmodule redisearch.so (or use redis-stack / valkey with them)")
    if isinstance(error, redis.ResponseError) and "noperm" in low:
        return (f"Redis at {shown}: the ACL user may not run what the writer needs "
                f"({detail}); grant it read/write on the keys (e.g. ~* +@all)")
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError, ConnectionError,
                          TimeoutError, OSError)):
        return (f"cannot reach Redis at {shown}: {detail}. Start a redis-server or pass "
                "another URL (--redis URL or the REDIS_URL environment variable).")
    return f"Redis at {shown}: {type(error).__name__}: {detail}"


def check_modules(client: redis.Redis, url: str,
                  modules: tuple[str, ...] = ("ReJSON", "search")) -> None:
    """Raise ConnectionError (saying the fix) when the server at ``url`` lacks one of
    ``modules`` (by default those blissdata needs)."""
    try:
        listed = client.module_list()
    except redis.RedisError as e:
        raise ConnectionError(describe_error(e, url)) from e
    loaded = set()
    for module in listed:
        name = module.get(b"name", module.get("name", b"")) if isinstance(module, dict) else b""
        loaded.add((name.decode() if isinstance(name, bytes) else str(name)).lower())
    missing = [m for m in modules if m.lower() not in loaded]
    if missing:
        raise ConnectionError(
            f"Redis at {redact_url(url)} lacks the module(s) {', '.join(missing)} that "
            "blissdata needs: start it with --loadmodule rejson.so --loadmodule "
            "redisearch.so (or use redis-stack / valkey with them)")
