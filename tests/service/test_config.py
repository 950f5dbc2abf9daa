"""The service's TOML config, the writer command lines made from it, and
``nexus-writer service add|remove|list`` editing it (no service running)."""

from __future__ import annotations

import argparse

import pytest

from nexus_writer.cli.main import add_writer_arguments, main
from nexus_writer.service import config as cfg
from nexus_writer.service.http import metrics
from nexus_writer.service.supervisor import signal_service, writer_command
from nexus_writer.writer import WriterOptions


def write(tmp_path, text: str):
    path = tmp_path / "service.toml"
    path.write_text(text)
    return path


def test_load_dump_round_trip(tmp_path):
    path = write(tmp_path, """
redis = "redis://localhost:6379"
http = 8790
log = "debug"

[sessions.id00]
keepshape = true
flush_period = 0.5
inactivity_timeout = 60
compression = "gzip"

[sessions."with space"]
redis = "redis://other:6380/1"
""")
    config = cfg.load(path)
    assert config.redis == "redis://localhost:6379" and config.http == 8790
    assert config.log == "debug"
    assert list(config.sessions) == ["id00", "with space"]
    assert config.sessions["id00"].options == {"keepshape": True, "flush_period": 0.5,
                                               "inactivity_timeout": 60,
                                               "compression": "gzip"}
    assert config.redis_of(config.sessions["id00"]) == "redis://localhost:6379"
    assert config.redis_of(config.sessions["with space"]) == "redis://other:6380/1"
    cfg.save(config, tmp_path / "again.toml")
    assert cfg.load(tmp_path / "again.toml") == config
    # strings needing escapes survive too
    odd = cfg.ServiceConfig(redis='redis://h:1/0?x="\\q"', sessions={
        's"1\\': cfg.SessionConfig('s"1\\', "redis://é:2", {"compression": "none"})})
    cfg.save(odd, tmp_path / "odd.toml")
    assert cfg.load(tmp_path / "odd.toml") == odd


def test_missing_file_is_an_empty_config(tmp_path):
    assert cfg.load(tmp_path / "nothing.toml") == cfg.ServiceConfig()


@pytest.mark.parametrize("text, message", [
    ("[sessions.s]\nkeepshap = true\n", "session 's': unknown option(s) ['keepshap']"),
    ("[sessions.s]\nonly_new = true\n", "unknown option(s) ['only_new']"),
    ("sesions = 1\n", "unknown key(s) ['sesions']"),
    ("keepshape = true\n", "unknown key(s) ['keepshape']"),
    ("[sessions.s]\nkeepshape = \"yes\"\n", "option keepshape must be true or false, not 'yes'"),
    ("[sessions.s]\nflush_period = \"1\"\n", "option flush_period must be a number"),
    ("[sessions.s]\nflush_period = 0\n", "flush_period must be > 0"),
    ("[sessions.s]\ncompression = \"lzf\"\n", "compression 'lzf' is not one of"),
    ("[sessions.s]\nredis = 6379\n", "session 's': redis must be a URL string"),
    ("http = \"80\"\n", "http must be a port number"),
    ("http = 70000\n", "http must be a port number"),
    ("log = \"loud\"\n", "log must be one of"),
    ("sessions = 3\n", "sessions must be tables"),
    ("[sessions]\ns = 1\n", "session 's': must be a table"),
    ("[sessions.s\n", "not valid TOML"),
])
def test_bad_config_refused_with_a_clear_message(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as e:
        cfg.load(path)
    assert str(e.value).startswith(str(path)), e.value
    assert message in str(e.value)


def test_unknown_option_lists_the_known_ones(tmp_path):
    path = write(tmp_path, "[sessions.s]\nkeepshap = true\n")
    with pytest.raises(ValueError) as e:
        cfg.load(path)
    for name in WriterOptions.names():
        assert name in str(e.value)


def test_writer_command_flags_are_those_of_the_write_command():
    """Every writer option of the config becomes a flag ``nexus-writer write`` accepts,
    with the value the config gave (``inactivity_timeout`` is ``--inactivity-timeout``)."""
    options = {"keepshape": True, "multivalue_positioners": False,
               "enable_external_nonhdf5": True, "disable_external_hdf5": True,
               "copy_non_external": True, "required_disk_space": 12.5, "flush_period": 0.25,
               "compression": "gzip", "inactivity_timeout": 7, "base_path": "/data/base",
               "master_files": False, "technique": "NXxas"}
    assert set(options) == set(WriterOptions.names())
    cmd = writer_command(cfg.SessionConfig("s1", None, options), "debug")
    assert cmd[1:5] == ["-m", "nexus_writer.cli.main", "write", "s1"]
    parser = argparse.ArgumentParser()
    parser.add_argument("session")
    add_writer_arguments(parser)
    args = parser.parse_args(cmd[4:])
    assert args.session == "s1" and args.log == "debug"
    assert args.redis is None  # the URL goes in the environment, never on a command line
    assert not args.live and not args.only_new
    for name, value in options.items():
        assert getattr(args, name) == value, name
    # a switch that turns an option off is given only to turn it off
    kept = writer_command(cfg.SessionConfig("s1", None, {"master_files": True}), "info")
    assert "--no-master-files" not in kept


def test_add_remove_list(tmp_path, capsys):
    path = tmp_path / "sub" / "service.toml"
    conf = ["--config", str(path)]
    assert main(["service", "list", *conf]) == 0
    assert capsys.readouterr().out == "log = \"info\"\n"
    assert main(["service", "add", "s1", *conf]) == 0
    assert "no running service to tell" in capsys.readouterr().out
    assert main(["service", "add", "s2", "--redis", "redis://other:1", *conf]) == 0
    assert list(cfg.load(path).sessions) == ["s1", "s2"]
    assert cfg.load(path).sessions["s2"].redis == "redis://other:1"

    # options edited by hand are kept by a later add of the same session
    path.write_text(path.read_text().replace('[sessions."s1"]',
                                             '[sessions."s1"]\nkeepshape = true'))
    assert main(["service", "add", "s1", *conf]) == 0
    assert "already" in capsys.readouterr().err
    assert main(["service", "add", "s1", "--redis", "redis://third:3", *conf]) == 0
    s1 = cfg.load(path).sessions["s1"]
    assert s1.options == {"keepshape": True} and s1.redis == "redis://third:3"

    capsys.readouterr()
    assert main(["service", "list", *conf]) == 0
    listed = capsys.readouterr().out
    assert '[sessions."s1"]' in listed and '[sessions."s2"]' in listed
    assert "keepshape = true" in listed

    assert main(["service", "remove", "s1", *conf]) == 0
    assert list(cfg.load(path).sessions) == ["s2"]
    assert main(["service", "remove", "s1", *conf]) == 1
    assert "'s1' is not in" in capsys.readouterr().err
    assert main(["service", "add", *conf]) == 2
    assert "give a SESSION" in capsys.readouterr().err


def test_add_refuses_to_touch_a_bad_config(tmp_path, capsys):
    path = write(tmp_path, "[sessions.s]\nkeepshap = true\n")
    assert main(["service", "add", "t", "--config", str(path)]) == 2
    assert "unknown option(s) ['keepshap']" in capsys.readouterr().err
    assert path.read_text() == "[sessions.s]\nkeepshap = true\n"


def test_stale_pid_file_is_not_signalled(tmp_path):
    """A pid file left by a killed service (no one holds its lock) is not used: the pid
    may belong to another process by now."""
    path = tmp_path / "service.toml"
    (tmp_path / "service.toml.pid").write_text("1")
    assert signal_service(path) is False
    assert signal_service(tmp_path / "none.toml") is False


def test_metrics_text():
    status = {"sessions": {
        "s1": {"process": {"alive": True, "restarts": 2},
               "writer": {"scans": [
                   {"state": "SUCCEEDED", "channels": {"a": {"written": 10}, "b": {"written": 5}}},
                   {"state": "RUNNING", "channels": {"a": {"written": 3}}}]}},
        's"2': {"process": {"alive": False, "restarts": 0}, "writer": None}}}
    text = metrics(status)
    lines = text.splitlines()
    assert 'nexus_writer_up{session="s1"} 1' in lines
    assert 'nexus_writer_up{session="s\\"2"} 0' in lines
    assert 'nexus_writer_restarts_total{session="s1"} 2' in lines
    assert 'nexus_writer_scans{session="s1",state="SUCCEEDED"} 1' in lines
    assert 'nexus_writer_scans{session="s1",state="RUNNING"} 1' in lines
    assert 'nexus_writer_scans{session="s\\"2",state="SUCCEEDED"} 0' in lines
    assert 'nexus_writer_points_written{session="s1"} 18' in lines
    for name in ("up", "restarts_total", "scans", "points_written"):
        assert f"# TYPE nexus_writer_{name} " in text
    assert text.endswith("\n")
