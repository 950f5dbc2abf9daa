"""The seed's list of demanding scans, as a function the demo and the writer's tests reuse.

The seed (BLISS ``scripts/external_saving_example/some_scans.py``) lists scans that
stress a writer: relative 2-motor scans, camera files with several frames each,
MCA spectra, several top masters running concurrently, scans in parallel, an
aborted scan of unknown length, SAMPLES-mode counters and a soft axis with a
varying number of samples per point.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from .chain import TopMaster
from .scans import Scan

if TYPE_CHECKING:
    from .session import SimSession


def run_some_scans(session: "SimSession", extra: bool = False,
                   abort_after: float = 0.5) -> list[Scan]:
    """Run the seed's scans in ``session``, in order; returns the scans run.

    1. ``d2scan roby -1 1 robz -0.5 0.5 10 0.1`` with ``sim_ct_gauss`` (plot-selected)
    2. ``loopscan 5 0.1`` with ``lima_simulator`` saving HDF5, 2 frames per file, ``diode``
    3. ``ascan robu 0 1 5 0.1`` with the MCA ``simu1``
    4. two top masters: 2 points with ``diode``; 50 points with ``lima_simulator`` and ``diode2``
    5-7. three ``loopscan 10 0.05 diode`` run in parallel threads
    8. ``timescan 0.1 diode diode2`` aborted after ``abort_after`` seconds
    9. ``loopscan 10 0.1`` with ``diode9`` (SAMPLES mode)
    10. ``ascan soft_axis 0 5 5 0.1`` with ``sim_var_samples``

    With ``extra``, also: an ``amesh`` with the camera saving EDF (3 frames per
    file), a ``ct``, and a sequence of two child scans.  The camera keeps the
    settings these scans give it.
    """
    cfg = session.config
    roby, robz, robu = cfg.get("roby"), cfg.get("robz"), cfg.get("robu")
    camera = cfg.get("lima_simulator")
    scans: list[Scan] = []

    previous = session.plotselected
    session.plotselect("sim_ct_gauss")
    try:
        s = session.d2scan(roby, -1, 1, robz, -0.5, 0.5, 10, 0.1, cfg.get("sim_ct_gauss"),
                           run=False)
        s.add_comment("Gaussian peak in the middle of the scan range")
        scans.append(s.run())
    finally:
        session.plotselected = previous

    camera.saving_format = "HDF5"
    camera.saving_frame_per_file = 2
    scans.append(session.loopscan(5, 0.1, camera, "diode"))

    scans.append(session.ascan(robu, 0, 1, 5, 0.1, "simu1"))

    scans.append(session.multi_top_master_scan(
        [TopMaster.timer(2, 0.1, cfg.get("diode")),
         TopMaster.timer(50, 0.01, camera, cfg.get("diode2"))]))

    parallel = [session.loopscan(10, 0.05, "diode", run=False) for _ in range(3)]
    threads = [threading.Thread(target=p.run, name=f"some_scans-{p.scan_number}")
               for p in parallel]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scans.extend(parallel)

    ts = session.timescan(0.1, "diode", "diode2", run=False)
    ts.run_in_thread()
    time.sleep(abort_after)
    ts.abort()
    ts.wait(10)
    scans.append(ts)

    scans.append(session.loopscan(10, 0.1, "diode9"))
    scans.append(session.ascan("soft_axis", 0, 5, 5, 0.1, "sim_var_samples"))

    if extra:
        camera.saving_format = "EDF"
        camera.saving_frame_per_file = 3
        scans.append(session.amesh(roby, 0, 1, 3, robz, 0, 1, 2, 0.1, camera, "diode"))
        camera.saving_format = "HDF5"
        scans.append(session.ct(0.1, "diode", "simu1"))
        with session.sequence(title="some_scans sequence") as seq:
            seq.add_and_run(session.loopscan(3, 0.1, "diode", run=False))
            seq.add_and_run(session.ascan(roby, 0, 1, 2, 0.1, "diode2", run=False))
        scans.append(seq)
        scans.extend(seq.children)
    return scans
