"""Technique devices of the simulation (energy and rotation axes, I0 / It counters)
and the data-policy mode of scan_saving."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nexus_writer.sim import BeamCounter, SimSession, add_technique_devices


@pytest.fixture
def session(store, data_dir):
    s = SimSession("test_session", store=store, base_path=data_dir, time_scale=0)
    add_technique_devices(s)
    return s


def test_energy_scan_shows_the_absorption_edge(session):
    scan = session.ascan("energy", 7.05, 7.2, 30, 0.1, "I0", "It",
                         scan_info={"technique": "NXxas"})
    nodes = {n.name: n for n in scan.node.nodes()}
    energy = np.asarray(nodes["axis:energy"].get())
    i0 = np.asarray(nodes["simulation_counter_controller:I0"].get())
    it = np.asarray(nodes["simulation_counter_controller:It"].get())
    assert nodes["axis:energy"].unit == "keV" and len(energy) == 31
    assert scan.node.info["technique"] == "NXxas"
    mu = np.log(i0 / it)
    # the Fe K edge at 7.112 keV: absorption jumps by about `step` across it
    assert mu[energy < 7.1].max() < mu[energy > 7.125].min()
    assert mu[-1] - mu[0] == pytest.approx(1.5, abs=0.1)
    assert session.config.get("srot").unit == "deg"


def test_beam_counter_modes():
    with pytest.raises(ValueError, match="mode"):
        BeamCounter("x", mode="fluorescence")
    monitor, trans = BeamCounter("I0"), BeamCounter("It", "transmission", edge=7.0)
    assert monitor.expected(7.0, 7.0) == pytest.approx(1e5)
    assert trans.expected(7.0, 7.0) == pytest.approx(1e5 * math.exp(-(0.3 + 0.75)))


def test_data_policy_fields_only_under_the_esrf_policy(session):
    info = session.ct(0.1, "diode", run=False).scan_info
    assert {k: info[k] for k in ("data_policy", "proposal", "beamline", "collection",
                                 "dataset")} == {"data_policy": "ESRF",
                                                 "proposal": "testproposal", "beamline": "id00",
                                                 "collection": "sample", "dataset": "0001"}
    session.scan_saving.data_policy = "none"
    info = session.ct(0.1, "diode", run=False).scan_info
    assert info["data_policy"] == "none"
    assert not {"proposal", "beamline", "collection", "dataset"} & set(info)
