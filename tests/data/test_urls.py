"""Redis URLs with secrets: masked wherever shown, read from ``REDIS_URL`` or a password
file, ACL users; connection errors that say which problem it is, against real
redis-servers started with ``--requirepass`` and an ACL user."""

from __future__ import annotations

import pytest
import redis

from nexus_writer.data import DataStore
from nexus_writer.data.server import RedisServer, free_port
from nexus_writer.data.urls import (check_modules, redact, redact_url, resolve_url,
                                    with_password)

from tests.conftest import ACL_PASSWORD, ACL_USER
from tests.conftest import REDIS_PASSWORD as PASSWORD


@pytest.fixture
def secured(secured_redis, secured_url):
    return secured_redis


def url_of(server: RedisServer, userinfo: str) -> str:
    return f"redis://{userinfo}@127.0.0.1:{server.port}"


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
    ("redis://user:pw@host:6379", "redis://***@host:6379"),
    ("rediss://user@host", "rediss://***@host"),
    ("unix://:pw@/run/redis.sock?db=1", "unix://***@/run/redis.sock?db=1"),
    ("redis://host:6379", "redis://host:6379"),
    ("redis://:p%40ss@h:1", "redis://***@h:1"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_in_text_and_bare_secrets():
    text = "connecting to redis://u:topsecret@h:1 failed; DataStore('redis://:x9y8z7@h:2')"
    out = redact(text, "x9y8z7")
    assert "topsecret" not in out and "x9y8z7" not in out and "u:" not in out
    assert "redis://***@h:1" in out and "redis://***@h:2" in out


def test_resolve_url_env_and_password_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://envhost:7")
    assert resolve_url() == "redis://envhost:7"
    assert resolve_url("redis://given:8") == "redis://given:8"
    secret = tmp_path / "pw"
    secret.write_text("p@ss word:/\n")
    # the password replaces one in the URL, an ACL user is kept; special characters quoted
    assert resolve_url("redis://alice:old@h:9/2", secret) == "redis://alice:p%40ss%20word%3A%2F@h:9/2"
    assert resolve_url(None, secret) == "redis://:p%40ss%20word%3A%2F@envhost:7"
    assert with_password("redis://h:1", "x") == "redis://:x@h:1"


def test_password_file_errors_never_show_its_content(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        resolve_url("redis://h:1", empty)
    with pytest.raises(ValueError, match="No such file"):
        resolve_url("redis://h:1", tmp_path / "missing")


def test_password_and_acl_user_connect_and_are_never_shown(secured, tmp_path, monkeypatch):
    for url, secret in ((url_of(secured, f":{PASSWORD}"), PASSWORD),
                        (url_of(secured, f"{ACL_USER}:{ACL_PASSWORD}"), ACL_PASSWORD)):
        store = DataStore(url)
        try:
            assert store.redis.ping()
            assert secret not in store.url and secret not in repr(store)
            assert store.url == f"redis://***@127.0.0.1:{secured.port}"
        finally:
            store.close()
    # REDIS_URL and a password file, with the ACL user in the URL
    pw = tmp_path / "pw"
    pw.write_text(ACL_PASSWORD + "\n")
    monkeypatch.setenv("REDIS_URL", url_of(secured, ACL_USER))
    store = DataStore(resolve_url(None, pw))
    try:
        assert store.redis.acl_whoami() == ACL_USER
        assert ACL_USER not in store.url and ACL_PASSWORD not in store.url
    finally:
        store.close()


def _error(url: str) -> str:
    with pytest.raises(ConnectionError) as exc:
        DataStore(url)
    return str(exc.value)


def test_connection_errors_say_which_problem_and_the_fix(secured, redis_server):
    wrong = _error(url_of(secured, ":not-the-password"))
    assert "refused the credentials" in wrong and "wrong password or ACL user" in wrong
    assert "not-the-password" not in wrong

    wrong_user = _error(url_of(secured, f"nobody:{ACL_PASSWORD}"))
    assert "wrong password or ACL user" in wrong_user
    assert ACL_PASSWORD not in wrong_user and "nobody" not in wrong_user

    missing = _error(f"redis://127.0.0.1:{secured.port}")
    assert "requires a password" in missing and "--redis-password-file" in missing

    unexpected = _error(url_of(redis_server, ":some-password"))
    assert "has no password but one was given" in unexpected
    assert "some-password" not in unexpected

    unreachable = _error(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}")
    assert unreachable.startswith("cannot reach Redis at redis://***@127.0.0.1:")
    assert "Start a redis-server" in unreachable and PASSWORD not in unreachable


def test_missing_modules_for_blissdata_named(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(ConnectionError) as exc:
            check_modules(client, redis_url)
    finally:
        client.close()
    message = str(exc.value)
    assert "ReJSON" in message and "search" in message and "--loadmodule" in message


def test_modules_of_the_blissdata_server_found(bliss_server):
    client = redis.Redis.from_url(bliss_server.url)
    try:
        check_modules(client, bliss_server.url)  # no error: RedisJSON and RediSearch loaded
    finally:
        client.close()


def test_protocol_detection_masks_the_url_and_names_the_problem(secured):
    """The writer asks the server which protocol it speaks first: a wrong password is
    named as such there too, without the password."""
    from nexus_writer.writer.blissdata_source import detect_protocol

    wrong = url_of(secured, ":not-the-password")
    with pytest.raises(ConnectionError) as exc:
        detect_protocol(wrong, "auto")
    assert "wrong password or ACL user" in str(exc.value)
    assert "not-the-password" not in str(exc.value)
    assert detect_protocol(url_of(secured, f":{PASSWORD}"), "auto") == "native"
