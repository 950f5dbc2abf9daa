"""Checks shared by the blissdata writer tests: a written file against the recorded
BLISS 2.4 scan it was replayed from."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - readers of compressed data need the filters registered
import numpy as np
import pytest
from blissdata.h5map import Dataset, ExternalLink, Group, SoftLink, Stream

from nexus_writer.data import DataStore, saving
from nexus_writer.nexus import h5map
from nexus_writer.nexus.validate import validate_file
from nexus_writer.writer.blissdata_source import record_key

from ..blissdata_replay import ScanReplay, stream_points
from ..waiting import wait_for
from .helpers import assert_same_bytes, decode

SESSION = "test_session"


def wait_final(store: DataStore, scan_key: str, timeout: float = 60.0) -> saving.SavingReport:
    """The writer's final report on blissdata scan ``scan_key`` (from its own record)."""
    report = saving.wait_report(store, record_key(scan_key), saving.FINAL_STATES, timeout)
    assert report is not None, f"no final saving report on {scan_key} within {timeout} s"
    return report


def wait_progress(store: DataStore, scan_key: str, stream: str, points: int,
                  timeout: float = 30.0) -> dict[str, int]:
    """The durable progress recorded once ``stream`` has ``points`` points on disk."""
    reporter = saving.SavingReporter(store, record_key(scan_key))

    def durable() -> dict[str, int] | None:
        progress = reporter.saved_progress()
        return progress if progress.get(stream, 0) >= points else None

    return wait_for(durable, timeout, f"{stream}: {points} points recorded durable",
                    lambda: f"last progress: {reporter.saved_progress()}")


def assert_stream_at(f: h5py.File, stream: dict[str, Any], where: str | None = None,
                     missing: tuple[int, int] | None = None) -> None:
    """A recorded stream's points at its declared data path (or ``where``), bit-exact;
    ``missing`` points (first, end) must be the fill value."""
    path = where or stream["info"]["data_path"]
    assert path in f, f"{stream['name']}: nothing at {path}"
    dset = f[path]
    assert isinstance(dset, h5py.Dataset), f"{path} is not a dataset"
    points = stream_points(stream)
    what = f"{path} ({stream['name']})"
    if isinstance(points, list):  # variable length: exact prefix, NaN after
        assert dset.shape[0] == len(points), f"{what}: {dset.shape[0]} points"
        width = max(len(p) for p in points)
        assert dset.shape[1] == width, f"{what}: width {dset.shape[1]} != {width}"
        for i, p in enumerate(points):
            assert_same_bytes(dset[i, :len(p)], p, f"{what}[{i}]")
            assert np.isnan(dset[i, len(p):]).all(), f"{what}[{i}]: padding is not NaN"
        return
    data = dset[()]
    if missing is not None:
        first, end = missing
        fill = np.nan if data.dtype.kind == "f" else 0
        if data.dtype.kind == "f":
            assert np.isnan(data[first:end]).all(), f"{what}: missing points not NaN"
        else:
            assert (data[first:end] == fill).all(), f"{what}: missing points not 0"
        keep = np.r_[0:first, end:len(points)]
        assert_same_bytes(data[keep], points[keep], what)
        return
    assert_same_bytes(data, points, what)


def assert_scan_file(replayed: ScanReplay, expect_state: str = "SUCCEEDED") -> str:
    """The file of a replayed scan: every stream bit-exact at its declared path, linked
    in measurement, the writer status, NeXus-valid with a @default plot."""
    fixture = replayed.fixture
    filename = fixture["info"]["filename"]
    entry = f"{replayed.number}.1"
    with h5py.File(filename, "r", locking=False) as f:
        assert entry in f, f"no entry {entry} in {filename}"
        for stream in fixture["streams"]:
            if stream["plugin"] == "hdf5_fallback":
                assert_stream_at(f, stream)
                assert stream["info"]["data_path"].startswith(f"{entry}/")
        linked = {f[entry]["measurement"].get(n, getlink=True).path
                  for n in f[entry]["measurement"]}
        declared = {"/" + s["info"]["data_path"] for s in fixture["streams"]
                    if s["plugin"] == "hdf5_fallback"}
        assert declared <= linked, f"not in measurement: {declared - linked}"
        assert decode(f[entry]["writer/status"][()]) == expect_state
        assert decode(f[entry]["writer/scan_key"][()]) == replayed.key
        assert decode(f[entry]["writer/end_reason"][()]) == fixture["info"]["end_reason"]
        assert decode(f[entry]["title"][()]) == fixture["info"]["title"]
    report = validate_file(filename)
    assert report.ok, f"{filename}: {report.summary()}: {report.messages}"
    return filename


def data_file(base: os.PathLike | str) -> str:
    return os.path.join(str(base), SESSION, "data.h5")


#: What this writer adds to an entry of a mapped file (never inside the map's groups).
ADDITIONS = re.compile(r"^(writer|plot\w*|subscans)$")


def _value(item) -> object:
    return h5map.decode(item.value)


def assert_attrs(obj: h5py.HLObject, attributes: dict, where: str) -> None:
    for name, expected in h5map.decode_attrs(attributes).items():
        assert name in obj.attrs, f"{where}: attribute {name!r} missing"
        got = decode(obj.attrs[name])
        expected = decode(expected)
        if isinstance(expected, np.ndarray):
            assert np.array_equal(np.asarray(got), expected), f"{where}@{name}: {got!r}"
        else:
            assert got == expected, f"{where}@{name}: {got!r} != {expected!r}"


def assert_materialised(f: h5py.File, root, replays: dict[str, dict]) -> int:
    """Every item of the map in ``f``, as described; returns the items checked.
    ``replays``: stream name -> recorded stream (the data of stream datasets)."""
    checked = 0
    for path, item in h5map.items(root):
        checked += 1
        if isinstance(item, Group):
            group = f[path]
            assert isinstance(group, h5py.Group), f"{path} is not a group"
            assert_attrs(group, item.attributes, path)
            extra = set(group) - set(item.children)
            if path == "/":
                extra = set()  # the file holds other scans' entries too
            elif path.count("/") == 1:  # an entry: only the writer's own additions
                extra = {n for n in extra if not ADDITIONS.match(n)}
            assert not extra, f"{path}: items the map does not describe: {sorted(extra)}"
        elif isinstance(item, SoftLink):
            link = f.get(path, getlink=True)
            assert isinstance(link, h5py.SoftLink), f"{path} is not a soft link"
            assert link.path == item.target_path
            assert path in f, f"{path}: dangling link to {item.target_path}"
        elif isinstance(item, ExternalLink):
            link = f.get(path, getlink=True)
            assert isinstance(link, h5py.ExternalLink)
            assert (link.filename, link.path) == (item.target_file, item.target_path)
        elif isinstance(item, Dataset) and isinstance(item.value, Stream):
            recorded = replays[item.value.stream]
            if recorded["kind"] == "scan":  # a sequence's children: their JSON events
                assert decode(f[path][()]) == [json.dumps(e) for e in recorded["data"]]
            else:
                assert_same_bytes(f[path][()], stream_points(recorded), path)
            assert_attrs(f[path], item.attributes, path)
            # plus only a plot's "interpretation" (NXdata reads it on the signal's target)
            added = set(f[path].attrs) - set(item.attributes) - {"interpretation"}
            assert not added, f"{path}: attributes the map does not give: {added}"
        elif isinstance(item, Dataset):
            got, expected = decode(f[path][()]), decode(_value(item))
            if isinstance(expected, np.ndarray):
                assert np.array_equal(np.asarray(got), expected), path
            else:
                assert got == expected, f"{path}: {got!r} != {expected!r}"
            assert_attrs(f[path], item.attributes, path)
        else:
            pytest.fail(f"{path}: {type(item).__name__} not in the stand-in maps")
    return checked
