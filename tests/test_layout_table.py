"""The tests' layout table (tests/layout.py) covers every channel the simulated
session's devices publish, so that no simulated channel is checked by the generic
rules alone."""

from __future__ import annotations

from nexus_writer.sim.session import default_devices
from tests.layout import SIM_PLACES


def test_every_simulated_channel_has_its_place():
    names = set()
    for device in default_devices():
        specs = device.channels() if hasattr(device, "channels") else [device.channel_spec()]
        names.update(spec.name for spec in specs)
    assert names == set(SIM_PLACES)
