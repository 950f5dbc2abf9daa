"""A relative scan_info ``filename``: refused with a reason naming the scan unless the
writer has a ``base_path``, against which it is resolved (and must stay inside);
every report, status and file field then gives the absolute path."""

from __future__ import annotations

import os

import h5py
import pytest

from nexus_writer.data.saving import reports
from nexus_writer.writer import WriterOptions

from .helpers import decode, publish_by_hand, wait_written

def _publish(store, filename: str, points: int = 3):
    pub, _ = publish_by_hand(store, filename, points, npoints=points)
    pub.end("SUCCESS")
    return pub


def test_resolve_rule(tmp_path):
    base = str(tmp_path)
    assert WriterOptions().resolve("/a/b/../c.h5") == "/a/c.h5"
    assert WriterOptions(base_path=base).resolve("x/y.h5") == os.path.join(base, "x", "y.h5")
    with pytest.raises(ValueError, match="relative filename 'y.h5'.*--base-path"):
        WriterOptions().resolve("y.h5")
    with pytest.raises(ValueError, match=r"leaves the base path"):
        WriterOptions(base_path=base).resolve("../elsewhere/y.h5")
    with pytest.raises(ValueError, match="must be an absolute directory"):
        WriterOptions(base_path="relative/dir")


def test_relative_filename_refused_without_base(store, writer_factory, tmp_path,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the old writer wrote such files
    writer = writer_factory()
    pub = _publish(store, "sub/relative.h5")
    [sw] = wait_written(writer, [pub])
    assert sw.state.name == "FAILED"
    assert sw.saving.reason.startswith(f"{sw.label}: ")  # names the scan
    assert "relative filename 'sub/relative.h5'" in sw.saving.reason
    assert "--base-path" in sw.saving.reason
    report = pub.wait_saved(10)
    assert report.state == "FAILED" and "relative filename" in report.reason
    assert not (tmp_path / "sub").exists()  # nothing written relative to the writer's cwd


def test_relative_filename_resolved_against_base(store, writer_factory, tmp_path):
    base = tmp_path / "base"
    writer = writer_factory(base_path=str(base))
    pub = _publish(store, "sub/../proposal/relative.h5")
    [sw] = wait_written(writer, [pub])
    expected = str(base / "proposal" / "relative.h5")
    assert sw.state.name == "SUCCEEDED", sw.saving.reason
    assert sw.filename == expected and sw.stats()["file"] == expected
    files = {r.state: r.detail.get("file") for r in reports(store, pub.key)}
    assert files == {"READY": expected, "RUNNING": expected, "SUCCEEDED": expected}
    with h5py.File(expected, "r", locking=False) as f:
        assert decode(f.attrs["file_name"]) == expected
        assert decode(f["1.1/writer/status"][()]) == "SUCCEEDED"
        assert f["1.1/measurement/diode"].shape == (3,)
