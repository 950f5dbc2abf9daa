"""Technique templates: loading, selection from scan_info, and the NXsubentry they
write on a hand-made entry, checked with nexusformat's NXDL (nxvalidate)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nexus_writer.nexus import appdef
from nexus_writer.nexus.validate import validate_application, validate_applications


def test_shipped_templates_by_name_alias_or_path(tmp_path):
    assert {"NXtomo", "NXxas"} <= set(appdef.template_names())
    for name in ("NXxas", "nxxas", "xas", "EXAFS"):
        assert appdef.load_template(name).definition == "NXxas"
    assert appdef.load_template("tomo").subentry == "tomo"
    own = tmp_path / "mine.toml"
    own.write_text('definition = "NXfluo"\n[channels]\nfluo = "mca"\n'
                   '[tree]\ntitle = { link = "title" }\n')
    template = appdef.load_template(str(own))
    assert (template.definition, template.subentry) == ("NXfluo", "fluo")
    assert template.roles["fluo"] == appdef.Role(("mca",), None)
    with pytest.raises(appdef.AppDefError, match="no technique template 'NXnothing'"):
        appdef.load_template("NXnothing")
    bad = tmp_path / "bad.toml"
    bad.write_text('definition = "NXx"\n')
    with pytest.raises(appdef.AppDefError, match="malformed"):
        appdef.load_template(str(bad))


def test_selection_from_scan_info_and_configuration():
    assert appdef.select_template({}) is None
    # BLISS's own "technique" metadata category names no definition
    assert appdef.select_template({"technique": {"@NX_class": "NXcollection"}}) is None
    assert appdef.select_template({"technique": "xas"}).definition == "NXxas"
    assert appdef.select_template({}, default="NXtomo").definition == "NXtomo"
    assert appdef.select_template({"technique": "none"}, default="NXtomo") is None
    chosen = appdef.select_template({"technique": {"definition": "NXxas",
                                                   "channels": {"i0": "mon2"}}})
    assert chosen.roles["i0"].names == ("mon2",) and chosen.roles["it"].names[0] == "It"
    with pytest.raises(appdef.AppDefError, match="no role 'i1'"):
        appdef.select_template({"technique": {"definition": "NXxas", "channels": {"i1": "x"}}})


def _xas_entry(f: h5py.File, npoints: int = 5) -> list[appdef.ChannelRef]:
    """An entry as the writer lays it out, with the metadata the sim publishes."""
    f.attrs["NX_class"] = "NXroot"
    entry = f.create_group("1.1")
    entry.attrs["NX_class"] = "NXentry"
    entry["title"] = "ascan energy 7 7.2 4 0.1"
    entry["start_time"] = "2026-12-01T10:00:00+01:00"
    instrument = entry.create_group("instrument")
    instrument.attrs["NX_class"] = "NXinstrument"
    source = instrument.create_group("source")
    source.attrs["NX_class"] = "NXsource"
    source["name"], source["type"] = "ESRF", "Synchrotron X-ray Source"
    refs = []
    for group, cls, fld, unit, kind, name in (
            ("energy", "NXpositioner", "value", "keV", "positioner", "axis:energy"),
            ("I0", "NXdetector", "data", "", "detector", "simulation_counter_controller:I0"),
            ("It", "NXdetector", "data", "", "detector", "simulation_counter_controller:It")):
        g = instrument.create_group(group)
        g.attrs["NX_class"] = cls
        g.create_dataset(fld, data=np.linspace(7.0, 7.2, npoints)).attrs["units"] = unit
        refs.append(appdef.ChannelRef(name, group, name.split(":")[0], kind,
                                      f"/1.1/instrument/{group}/{fld}"))
    sample = entry.create_group("sample")
    sample.attrs["NX_class"] = "NXsample"
    sample["name"] = "Fe foil"
    return refs


def test_subentry_links_and_passes_nxvalidate(tmp_path):
    path = tmp_path / "xas.h5"
    template = appdef.load_template("NXxas")
    with h5py.File(path, "w") as f:
        refs = _xas_entry(f)
        roles = appdef.resolve(template, refs)
        assert {r: c.display for r, c in roles.items()} == {"energy": "energy", "i0": "I0",
                                                              "it": "It"}
        appdef.write_subentry(f["1.1"], template, roles, {"count_time": 0.1})
    with h5py.File(path, "r") as f:
        sub = f["1.1/xas"]
        assert sub.attrs["NX_class"] == "NXsubentry"
        assert sub["definition"][()] == b"NXxas"
        # links, not copies
        for name, target in (("instrument/monochromator/energy", "/1.1/instrument/energy/value"),
                             ("instrument/absorbed_beam/data", "/1.1/instrument/It/data"),
                             ("monitor/data", "/1.1/instrument/I0/data"),
                             ("sample/name", "/1.1/sample/name"), ("title", "/1.1/title")):
            link = sub.get(name, getlink=True)
            assert isinstance(link, h5py.SoftLink) and link.path == target, name
        assert sub["monitor/preset"][()] == 0.1
        assert sub["monitor/preset"].attrs["units"] == "s"
    assert [(r.group, r.definition) for r in validate_applications(path)] == [("/1.1/xas",
                                                                               "NXxas")]
    report = validate_application(path, "/1.1/xas")
    assert (report.errors, report.warnings) == (0, 0), report.messages


def test_nxvalidate_finds_what_is_missing(tmp_path):
    path = tmp_path / "xas.h5"
    template = appdef.load_template("NXxas")
    with h5py.File(path, "w") as f:
        refs = _xas_entry(f)
        appdef.write_subentry(f["1.1"], template, appdef.resolve(template, refs),
                              {"count_time": 0.1})
        del f["1.1/xas/instrument/absorbed_beam"]  # what NXxas requires
    report = validate_application(path, "/1.1/xas")
    assert report.errors >= 1 and not report.ok
    assert any("absorbed_beam" in m or "required" in m for m in report.messages), report.messages


def test_a_template_the_scan_cannot_satisfy_writes_nothing(tmp_path):
    template = appdef.load_template("NXxas")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        refs = _xas_entry(f)
        with pytest.raises(appdef.AppDefError, match=r"no channel for it \(It or"):
            appdef.resolve(template, refs[:2])
        del f["1.1/sample"]
        roles = appdef.resolve(template, refs)
        with pytest.raises(appdef.AppDefError, match="sample/name needs"):
            appdef.write_subentry(f["1.1"], template, roles, {"count_time": 0.1})
        assert "xas" not in f["1.1"]
        # the fallback of a link: a value from scan_info
        appdef.write_subentry(f["1.1"], template, roles, {"count_time": 0.1,
                                                           "collection": "foil"})
        assert f["1.1/xas/sample/name"][()] == b"foil"


def test_written_again_but_never_over_something_else(tmp_path):
    template = appdef.load_template("NXxas")
    info = {"count_time": 0.1}
    with h5py.File(tmp_path / "x.h5", "w") as f:
        roles = appdef.resolve(template, _xas_entry(f))
        appdef.write_subentry(f["1.1"], template, roles, info)
        appdef.write_subentry(f["1.1"], template, roles, info)  # a resumed scan: replaced
        assert f["1.1/xas/definition"][()] == b"NXxas"
        del f["1.1/xas"]
        f["1.1"].create_group("xas").attrs["NX_class"] = "NXcollection"  # user metadata
        with pytest.raises(appdef.AppDefError, match="exists and is no NXxas subentry"):
            appdef.write_subentry(f["1.1"], template, roles, info)
        assert f["1.1/xas"].attrs["NX_class"] == "NXcollection"
