"""docs/security.md, "names": whatever names the producer gives (channels, metadata
keys, categories), every object the writer creates stays in the scan's entry."""

from __future__ import annotations

import h5py

from nexus_writer.nexus.validate import validate_file

from .helpers import manual_scan_info, wait_written

HOSTILE = ["ctrl:../../evil", "ctrl:a/b", "ctrl:/abs", "ctrl:", "ctrl:..", "ctrl:0start"]


def test_names_never_leave_the_entry(store, writer_factory, data_dir):
    filename = str(data_dir / "names.h5")
    channels = {"timer:elapsed_time": {"device": "timer", "unit": "s"}}
    channels.update({name: {"device": "ctrl", "unit": ""} for name in HOSTILE})
    info = manual_scan_info("test_session", 1, filename, channels, npoints=2)
    info.update(scan_meta_categories=["instrument", "../../up", "/abs"],
                instrument={"@NX_class": "NXinstrument", "../../up": {"v": 1},
                            "a/b": {"c/../d": 2}},
                **{"../../up": {"x": 1}, "/abs": {"y/..": 2}})
    writer = writer_factory()
    pub = store.create_scan("test_session", info)
    pub.start()
    pubs = [pub.create_channel(n, "f8", device=c["device"], top_master="timer")
            for n, c in channels.items()]
    for p in pubs:
        p.send([1.0, 2.0])
    pub.end("SUCCESS")
    [sw] = wait_written(writer, [pub])
    assert sw.state.name == "SUCCEEDED", sw.saving.reason
    paths: list[str] = []
    with h5py.File(filename, "r", locking=False) as f:
        assert list(f) == ["1.1"]
        f.visit(paths.append)
        for path in paths:
            link = f.get(path, getlink=True)
            if isinstance(link, h5py.SoftLink):
                assert link.path.startswith("/1.1/"), (path, link.path)
        measurement = f["1.1/measurement"]
        assert len(measurement) == len(channels)  # each channel once, none merged
        for name in measurement:
            assert measurement[name].shape == (2,)
    assert all(p.startswith("1.1") for p in paths)
    assert validate_file(filename).ok
