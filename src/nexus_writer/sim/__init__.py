"""A simulated acquisition session (the stand-in for BLISS), on the public data API.

``SimSession`` holds devices named as in BLISS's test session, ``scan_saving`` and
the scan commands (``ct``, ``loopscan``, ``timescan``, ``ascan``, ``dscan``,
``a2scan``, ``d2scan``, ``amesh``, ``multi_top_master_scan``, ``sequence``).
"""

from .camera import HDF5_DATA_PATH, CameraAcquisition, SimCamera
from .chain import TopMaster
from .devices import (
                      Axis,
                      ChannelSpec,
                      Counter,
                      GaussCounter,
                      PointContext,
                      SamplesCounter,
                      SamplingCounter,
                      SimDiode,
                      SimMca,
                      SoftAxis,
                      device_rng,
)
from .scans import PUBLISHER, Scan, ScanState
from .sequence import Sequence
from .session import ScanSaving, SimConfig, SimSession, default_devices
from .some_scans import run_some_scans
from .techniques import BeamCounter, add_technique_devices, technique_devices

__all__ = [
    "HDF5_DATA_PATH", "PUBLISHER", "Axis", "BeamCounter", "CameraAcquisition", "ChannelSpec",
    "Counter", "GaussCounter", "PointContext", "SamplesCounter", "SamplingCounter", "Scan",
    "ScanSaving", "ScanState", "Sequence", "SimCamera", "SimConfig", "SimDiode", "SimMca",
    "SimSession", "SoftAxis", "TopMaster", "add_technique_devices", "default_devices",
    "device_rng", "run_some_scans", "technique_devices",
]
