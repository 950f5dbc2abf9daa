"""Application definitions written by the writer: simulated XAS and tomography scans
get an NXsubentry that passes nxvalidate with 0 errors and 0 warnings; a scan that
cannot satisfy its technique's template gets a warning, and the rest of the entry is
written as usual."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from nexus_writer.nexus.validate import validate_applications, validate_file
from nexus_writer.sim import add_technique_devices
from nexus_writer.writer import ScanState, WriterOptions

from .helpers import check_scan, decode, nx_class, wait_written


@pytest.fixture
def session(sim_session):
    add_technique_devices(sim_session)
    return sim_session


def _link(group: h5py.Group, name: str) -> str:
    link = group.get(name, getlink=True)
    assert isinstance(link, h5py.SoftLink), f"{group.name}/{name} is not a link: {link}"
    return link.path


def test_xas_and_tomo_scans_pass_nxvalidate(session, writer_factory, store):
    writer = writer_factory()
    xas = session.ascan("energy", 7.05, 7.2, 30, 0.1, "I0", "It", "diode",
                        scan_info={"technique": "NXxas"})
    tomo = session.ascan("srot", 0, 180, 9, 0.1, "lima_simulator", "diode",
                         scan_info={"technique": {"definition": "NXtomo"}})
    for sw in wait_written(writer, [xas, tomo]):
        check_scan(store, sw)
        assert sw.warnings == [] and sw.problems == []
    path = session.scan_saving.filename
    report = validate_file(path)
    assert (report.errors, report.warnings) == (0, 0), report.messages
    assert report.ok
    apps = validate_applications(path)
    assert [(a.group, a.definition) for a in apps] == [("/1.1/xas", "NXxas"),
                                                       ("/2.1/tomo", "NXtomo")]
    for app in apps:
        assert (app.errors, app.warnings) == (0, 0), app.messages
    with h5py.File(path, "r", locking=False) as f:
        sub = f["1.1/xas"]
        assert nx_class(sub) == "NXsubentry" and decode(sub["definition"][()]) == "NXxas"
        assert _link(sub["instrument/monochromator"], "energy") == "/1.1/instrument/energy/value"
        assert _link(sub["instrument/incoming_beam"], "data") == "/1.1/instrument/I0/data"
        assert _link(sub["instrument/absorbed_beam"], "data") == "/1.1/instrument/It/data"
        assert _link(sub["data"], "absorbed_beam") == "/1.1/instrument/It/data"
        assert np.array_equal(sub["data/energy"][()], f["1.1/measurement/energy"][()])
        assert len(sub["data/energy"]) == 31
        assert decode(sub["sample/name"][()]) == "sample"  # the collection, as the sim names it
        energy, it, i0 = sub["data/energy"][()], sub["data/absorbed_beam"][()], \
            sub["monitor/data"][()]
        mu = np.log(i0 / it)  # the Fe K edge of the simulated sample, at 7.112 keV
        assert mu[energy < 7.1].max() < mu[energy > 7.125].min()
        tomo_sub = f["2.1/tomo"]
        assert _link(tomo_sub["instrument/detector"], "data") == \
            "/2.1/instrument/lima_simulator/data"
        frames = tomo_sub["data/data"]
        assert frames.shape[0] == 10 and frames.is_virtual
        assert tomo_sub["instrument/detector/image_key"][()].tolist() == [0] * 10
        assert tomo_sub["sample/rotation_angle"].attrs["units"] == "deg"
        assert _link(tomo_sub["data"], "image_key") == "/2.1/tomo/instrument/detector/image_key"


def test_configured_technique_for_scans_naming_none(session, writer_factory):
    writer = writer_factory(technique="xas")
    scans = [session.ascan("energy", 7.0, 7.2, 5, 0.1, "I0", "It")]
    (sw,) = wait_written(writer, scans)
    assert sw.state == ScanState.SUCCEEDED and sw.warnings == []
    (app,) = validate_applications(session.scan_saving.filename)
    assert (app.group, app.definition, app.errors, app.warnings) == ("/1.1/xas", "NXxas", 0, 0)
    with pytest.raises(ValueError, match="no technique template 'NXnothing'"):
        WriterOptions(technique="NXnothing")


def test_missing_channel_gives_a_warning_and_a_valid_file(session, writer_factory, store,
                                                          caplog):
    writer = writer_factory()
    scans = [session.ascan("energy", 7.0, 7.2, 5, 0.1, "I0", "diode",
                           scan_info={"technique": "NXxas"})]
    with caplog.at_level(logging.WARNING, logger="nexus_writer"):
        (sw,) = wait_written(writer, scans)
    check_scan(store, sw)  # SUCCEEDED, every channel there
    expected = "NXxas not written: the scan has no channel for it (It or it or trans or " \
               "transmission)"
    assert sw.warnings == [expected]
    assert sw.stats()["warnings"] == [expected]
    assert any(expected in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    report = scans[0].wait_saved(10)
    assert report.state == "SUCCEEDED" and report.detail["warnings"] == [expected]
    path = session.scan_saving.filename
    with h5py.File(path, "r", locking=False) as f:
        assert "xas" not in f["1.1"]
        assert decode(f["1.1/writer/warnings"][()]) == [expected]
    check = validate_file(path)
    assert (check.errors, check.warnings) == (0, 0) and check.ok, check.messages
    assert validate_applications(path) == []
