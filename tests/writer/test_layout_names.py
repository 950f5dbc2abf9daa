"""Channel names that are names of the layout (``positioners``, ``positioners_start``,
``source``, ``name``, ``title``, ``measurement``...) never fail a scan nor mix with
metadata: their groups are renamed ``name_2`` (README, "File layout") with the
original name in the ``@original_name`` of its data; and the final status is in the file even when
the normal way to record it fails."""

from __future__ import annotations

import h5py
import numpy as np

from nexus_writer.nexus.validate import validate_file

from .helpers import decode, manual_scan_info, nx_class, wait_written

#: Channels named after the layout, each with its expected group (the documented rule).
CLASHING = {"positioners": "positioners_2", "positioners_start": "positioners_start_2",
            "positioners_end": "positioners_end_2", "source": "source_2", "name": "name_2",
            "title": "title", "measurement": "measurement", "writer": "writer"}
INSTRUMENT = {"@NX_class": "NXinstrument", "name": "id00", "name@short_name": "ID00",
              "source": {"@NX_class": "NXsource", "name": "ESRF",
                         "type": "Synchrotron X-ray Source", "probe": "x-ray"}}
POSITIONERS = {"positioners_start": {"roby": 1.5, "robz": -2.0},
               "positioners_end": {"roby": 2.5, "robz": -2.0},
               "positioners_units": {"roby": "mm", "robz": "deg"}}


def _publish(store, filename: str, npoints: int = 4, final_info=None, **info_extra):
    channels = {"timer:elapsed_time": {"device": "timer", "unit": "s"}}
    channels.update({f"ctrl:{name}": {"device": "ctrl", "unit": "counts"} for name in CLASHING})
    info = manual_scan_info("test_session", 1, filename, channels, npoints=npoints)
    info.update(instrument=INSTRUMENT, positioners=POSITIONERS,
                scan_meta_categories=["instrument", "positioners"], **info_extra)
    pub = store.create_scan("test_session", info)
    pub.start()
    # the writer has read the scan_info of the start (what the final one completes)
    assert pub.writer_ready(timeout=10).state == "READY"
    chans = {name: pub.create_channel(name, "float64", (), c["unit"], device=c["device"],
                                      top_master="timer") for name, c in channels.items()}
    for i in range(npoints):
        for k, c in enumerate(chans.values()):
            c.send(float(10 * k + i))
    if final_info:
        pub.update_info(final_info)
    pub.end("SUCCESS")
    return pub, list(chans)


def test_channels_named_like_the_layout(store, writer_factory, data_dir):
    filename = str(data_dir / "clash.h5")
    writer = writer_factory()
    pub, names = _publish(store, filename)
    [sw] = wait_written(writer, [pub])
    assert sw.state.name == "SUCCEEDED", sw.saving.reason
    assert sw.problems == []
    assert pub.wait_saved(10).state == "SUCCEEDED"
    with h5py.File(filename, "r", locking=False) as f:
        entry = f["1.1"]
        instrument = entry["instrument"]
        # the metadata is whole, in its own groups
        assert decode(instrument["name"][()]) == "id00"
        assert decode(instrument["name"].attrs["short_name"]) == "ID00"
        source = instrument["source"]
        assert nx_class(source) == "NXsource"
        assert {k: decode(source[k][()]) for k in source} == {
            "name": "ESRF", "type": "Synchrotron X-ray Source", "probe": "x-ray"}
        for snapshot in ("positioners", "positioners_start"):
            assert nx_class(instrument[snapshot]) == "NXcollection"
            assert set(instrument[snapshot]) == {"roby", "robz"}
            assert instrument[snapshot]["roby"][()] == 1.5
            assert decode(instrument[snapshot]["roby"].attrs["units"]) == "mm"
        assert instrument["positioners_end"]["roby"][()] == 2.5
        # each channel in its own NXdetector, renamed where the layout has the name
        for k, name in enumerate(CLASHING, 1):
            group = instrument[CLASHING[name]]
            assert nx_class(group) == "NXdetector", name
            assert set(group) == {"data"}, name
            np.testing.assert_array_equal(group["data"][()], 10.0 * k + np.arange(4))
            if CLASHING[name] != name:
                assert decode(group["data"].attrs["original_name"]) == f"ctrl:{name}"
            else:
                assert "original_name" not in group["data"].attrs
            # measurement keeps the channel's own name (it holds channels only)
            np.testing.assert_array_equal(entry["measurement"][name][()], group["data"][()])
        assert decode(entry["title"][()]) == "manual scan"
        assert decode(entry["writer/status"][()]) == "SUCCEEDED"
    report = validate_file(filename)
    assert report.ok, report.messages


def test_final_status_recorded_when_finalizing_fails(store, writer_factory, data_dir):
    """A scan_info that breaks the end of the layout (comments that are no list): the
    file still says FAILED, with the reason, and has its end_time."""
    filename = str(data_dir / "broken_end.h5")
    writer = writer_factory()
    pub, _ = _publish(store, filename, comments=42)
    [sw] = wait_written(writer, [pub])
    assert sw.state.name == "FAILED"
    report = pub.wait_saved(10)
    assert report.state == "FAILED"
    with h5py.File(filename, "r", locking=False) as f:
        entry = f["1.1"]
        assert decode(entry["writer/status"][()]) == "FAILED"
        assert decode(entry["writer/reason"][()]) == sw.saving.reason
        assert "TypeError" in sw.saving.reason
        assert "end_time" in entry


def test_metadata_completed_at_the_end_never_merges_into_a_channel(store, writer_factory,
                                                                   data_dir):
    """An ``instrument`` metadata key that appears only in the final scan_info and is
    a channel's group name: written beside it as ``name_2``, the channel untouched."""
    filename = str(data_dir / "late.h5")
    writer = writer_factory()
    late = {"instrument": dict(INSTRUMENT, title={"@NX_class": "NXcollection", "text": "late"})}
    pub, _ = _publish(store, filename, final_info=late)
    [sw] = wait_written(writer, [pub])
    assert sw.state.name == "SUCCEEDED", sw.saving.reason
    with h5py.File(filename, "r", locking=False) as f:
        instrument = f["1.1/instrument"]
        assert nx_class(instrument["title"]) == "NXdetector"
        assert set(instrument["title"]) == {"data"}
        assert nx_class(instrument["title_2"]) == "NXcollection"
        assert decode(instrument["title_2/text"][()]) == "late"
    assert validate_file(filename).ok
