"""The NeXus check: every file the writer produces passes; broken files do not."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from silx.io.nxdata import get_default

from nexus_writer.nexus.validate import default_plot, validate_file
from tests.writer.helpers import wait_written

OPTION_SETS = {
    "default": {},
    "keepshape": {"keepshape": True},
    "edf_external": {"enable_external_nonhdf5": True, "compression": "gzip"},
    "copy": {"copy_non_external": True, "disable_external_hdf5": True, "compression": "none"},
    "strings": {"disable_external_hdf5": True, "multivalue_positioners": True},
}


def _scans(session):
    camera = session.config.get("lima_simulator")
    camera.saving_format = "EDF"
    camera.saving_frame_per_file = 2
    scans = [session.amesh("roby", 0, 1, 2, "robz", 0, 1, 1, 0.1, camera, "diode", "simu1")]
    camera.saving_format = "HDF5"
    scans.append(session.loopscan(3, 0.1, camera, "diode9"))
    scans.append(session.ascan("soft_axis", 0, 5, 3, 0.1, "sim_var_samples"))
    scans.append(session.ct(0.1))
    return scans


@pytest.mark.parametrize("options", list(OPTION_SETS), ids=list(OPTION_SETS))
def test_every_file_passes(sim_session, writer_factory, options):
    writer = writer_factory(**OPTION_SETS[options])
    written = wait_written(writer, _scans(sim_session))
    assert all(w.state.name == "SUCCEEDED" for w in written), [w.saving.reason for w in written]
    path = sim_session.scan_saving.filename
    report = validate_file(path)
    assert report.errors == 0 and report.warnings == 0, report.messages
    assert report.ok
    with h5py.File(path, "r", locking=False) as f:
        nxdata = get_default(f)
        assert nxdata is not None and nxdata.is_valid
        assert nxdata.group.name == report.default_plot
        # the last scan written is the one shown
        assert report.default_plot.startswith(f"/{written[-1].entries[0]}/")
        # every entry has its own valid default plot
        for name in f:
            entry_plot = get_default(f[name])
            assert entry_plot is not None and entry_plot.is_valid, name


def _good_file(path):
    with h5py.File(path, "w") as f:
        f.attrs.update(NX_class="NXroot", default="1.1")
        entry = f.create_group("1.1")
        entry.attrs.update(NX_class="NXentry", default="plot0D")
        entry["title"] = "loopscan 3 0.1"
        det = entry.create_group("instrument/diode")
        entry["instrument"].attrs["NX_class"] = "NXinstrument"
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=np.arange(3.0)).attrs["units"] = "V"
        pos = entry.create_group("instrument/elapsed_time")
        pos.attrs["NX_class"] = "NXpositioner"
        pos.create_dataset("value", data=np.arange(3.0) / 10).attrs["units"] = "s"
        plot = entry.create_group("plot0D")
        plot.attrs.update(NX_class="NXdata", signal="diode", axes=["elapsed_time"])
        plot["diode"] = h5py.SoftLink("/1.1/instrument/diode/data")
        plot["elapsed_time"] = h5py.SoftLink("/1.1/instrument/elapsed_time/value")


def test_good_minimal_file(tmp_path):
    path = tmp_path / "good.h5"
    _good_file(path)
    report = validate_file(path)
    assert report.ok, report.messages
    assert report.default_plot == "/1.1/plot0D"
    assert "0 errors, 0 warnings" in report.summary()


def _break_no_class(f):
    f["1.1"].create_group("loose")


def _break_units(f):
    del f["1.1/instrument/diode/data"].attrs["units"]


def _break_class(f):
    f["1.1/instrument/diode"].attrs["NX_class"] = "NXdetectorr"


def _break_name(f):
    f["1.1/instrument/diode"].create_dataset("bad-name", data=1.0)


#: each defect -> (errors, warnings, the object named, what the finding says about it),
#: from the NeXus standard: a group needs a base class, a number its units (a warning),
#: names match [a-zA-Z0-9_], and a field unknown to its class is a warning
BROKEN = {
    "group_without_nx_class": (_break_no_class, 1, 0, "NXgroup: /1.1/loose",
                               "This group has no NeXus base class assigned"),
    "field_without_units": (_break_units, 0, 1, "Field: /1.1/instrument/diode/data",
                            "Units of NX_ANY not specified"),
    "unknown_class": (_break_class, 1, 0, "NXdetectorr: /1.1/instrument/diode",
                      "NXdetectorr is not a valid base class"),
    "invalid_name": (_break_name, 1, 1, "Field: /1.1/instrument/diode/bad-name",
                     '"bad-name" is an invalid name'),
}


@pytest.mark.parametrize("breaker", list(BROKEN), ids=list(BROKEN))
def test_broken_file_detected(tmp_path, breaker):
    """Each defect found as itself: the right count, the object named, then the finding
    on it (not just any finding somewhere)."""
    breaks, errors, warnings, where, finding = BROKEN[breaker]
    path = tmp_path / "broken.h5"
    _good_file(path)
    with h5py.File(path, "a") as f:
        breaks(f)
    report = validate_file(path)
    assert (report.errors, report.warnings) == (errors, warnings), report.messages
    assert not report.ok
    assert where in report.messages, report.messages
    after = report.messages[report.messages.index(where) + 1:]
    assert finding in after, report.messages
    assert report.default_plot == "/1.1/plot0D"  # the rest of the file is still good


def _break_default_missing(f):
    f.attrs["default"] = "9.1"


def _break_signal(f):
    f["1.1/plot0D"].attrs["signal"] = "nothing_here"


def _break_no_default(f):
    del f.attrs["default"]


def _break_default_not_nxdata(f):
    f["1.1"].attrs["default"] = "instrument"


@pytest.mark.parametrize("breaker", [_break_default_missing, _break_signal, _break_no_default,
                                     _break_default_not_nxdata])
def test_broken_default_plot_detected(tmp_path, breaker):
    path = tmp_path / "broken.h5"
    _good_file(path)
    with h5py.File(path, "a") as f:
        breaker(f)
    assert default_plot(path) is None
    report = validate_file(path)
    assert report.default_plot is None and not report.ok
    assert report.summary().endswith("no valid @default plot"), report.summary()


def test_esrf_entry_names_are_allowed_but_other_bad_names_are_not(tmp_path):
    """The standard's rule: "1.1" passes, a dash does not (nexusformat's own pattern
    would reject both)."""
    path = tmp_path / "names.h5"
    _good_file(path)
    with h5py.File(path, "a") as f:
        f.copy("1.1", "12.3")
    assert validate_file(path).ok
    with h5py.File(path, "a") as f:
        f.copy("1.1", "1-1")
    report = validate_file(path)
    assert not report.ok and any("1-1" in m for m in report.messages)


def test_validation_leaves_nexusformat_as_it_was(tmp_path):
    from nexusformat.nexus import utils, validate

    pattern, level = utils.name_pattern, validate.logger.level
    path = tmp_path / "good.h5"
    _good_file(path)
    validate_file(path)
    assert utils.name_pattern is pattern and validate.logger.level == level


def test_not_a_nexus_file(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    assert not validate_file(path).ok
    copy = tmp_path / "copy.h5"
    shutil.copy(path, copy)
    assert default_plot(copy) is None
