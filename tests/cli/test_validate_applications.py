"""``nexus-writer validate`` reports the application definition of each entry that
declares one, and fails on a subentry that does not pass nxvalidate."""

from __future__ import annotations

import h5py

from nexus_writer.cli.main import main
from nexus_writer.sim import add_technique_devices
from tests.writer.helpers import wait_written


def test_validate_reports_each_application_definition(sim_session, writer_factory, capsys):
    add_technique_devices(sim_session)
    writer = writer_factory()
    scans = [sim_session.ascan("energy", 7.0, 7.2, 8, 0.1, "I0", "It",
                               scan_info={"technique": "NXxas"}),
             sim_session.ascan("srot", 0, 90, 3, 0.1, "lima_simulator",
                               scan_info={"technique": "NXtomo"}),
             sim_session.ct(0.1, "diode")]
    wait_written(writer, scans)
    path = sim_session.scan_saving.filename
    assert main(["validate", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{path}: 0 errors, 0 warnings, default plot /3.1/plot0D",
                   "  /1.1/xas: NXxas: 0 errors, 0 warnings",
                   "  /2.1/tomo: NXtomo: 0 errors, 0 warnings"]
    with h5py.File(path, "a", locking=False) as f:
        del f["2.1/tomo/sample/rotation_angle"]  # required by NXtomo, a link for NXdata
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "  /1.1/xas: NXxas: 0 errors, 0 warnings" in out
    tomo = next(line for line in out.splitlines() if line.startswith("  /2.1/tomo"))
    assert not tomo.endswith("0 errors, 0 warnings"), out
    assert "rotation_angle" in out
