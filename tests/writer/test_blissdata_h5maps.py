"""Scans whose info carries ``h5maps`` (a finished layout, ``blissdata.h5map``): the
file holds exactly what the map describes, item by item, plus only this writer's
own additions (status, plots, ``@default``).  The fixtures' maps are a stand-in's,
not ESRF's layout."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from blissdata.h5map import Dataset, ExternalLink, Group, SoftLink, Stream

from nexus_writer.nexus import h5map
from nexus_writer.nexus.validate import validate_file

from ..blissdata_replay import ScanReplay, load_fixture, stream_points
from .bliss_helpers import wait_final
from .helpers import assert_same_bytes, decode
from .test_blissdata_fixtures import SAVED

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


def warnings_from_map(messages: list[str], roots: list) -> int:
    """How many of the check's warnings are about items the maps themselves define
    (their NeXus classes, their names); fails on any other (the writer's own)."""
    mapped = {p: item for root in roots for p, item in h5map.items(root)}
    paths = set(mapped)
    count, current = 0, None
    for line in messages:
        m = re.match(r"^(?:Field|NX\w+): (/\S*)$", line)
        if m:  # reached through a sequence's link to its child: the child's own item
            current = re.sub(r"^/\d+\.1/subscans/scan_(\d+)", r"/\1.1", m.group(1))
        elif ("is not defined" in line or "is not a valid" in line
              or re.match(r"^Units of \w+ not specified", line)):
            attr = re.match(r'^"@(\w+)" is not defined as an attribute', line)
            assert current in paths, f"warning on {current}, which the map does not hold"
            if attr:
                assert attr.group(1) in mapped[current].attributes, line
            count += 1
    return count


@pytest.mark.parametrize("name", SAVED)
def test_h5maps_materialised_exactly(name, bliss_store, nxw_store, bliss_writer, tmp_path):
    bliss_writer()
    replay = ScanReplay(bliss_store, load_fixture(name), tmp_path, h5maps=True).run()
    scans = [replay] + replay.children
    for scan in scans:
        assert wait_final(nxw_store, scan.key).state == "SUCCEEDED"
    filename = replay.fixture["info"]["filename"]
    with h5py.File(filename, "r", locking=False) as f:
        for scan in scans:
            root = h5map.for_file(scan.fixture["h5maps_standin"]["CLOSED"], filename)
            streams = {s["name"]: s for s in scan.fixture["streams"]}
            if "SUBSCANS" in streams:  # the children's keys are new in the replay
                streams["SUBSCANS"] = dict(streams["SUBSCANS"], data=[
                    {"key": c.key, "scan_number": c.number} for c in scan.children])
            assert assert_materialised(f, root, streams) > 10
            entry = f[f"{scan.number}.1"]
            assert decode(entry["writer/status"][()]) == "SUCCEEDED"
            # the map's own creator attribute wins over the writer's
            assert decode(f.attrs["creator"]).startswith("stand-in h5map generator")
    report = validate_file(filename)
    assert report.errors == 0, report.messages
    assert report.default_plot is not None, "no working @default chain"
    roots = [h5map.for_file(s.fixture["h5maps_standin"]["CLOSED"], filename) for s in scans]
    assert report.warnings == warnings_from_map(report.messages, roots)
