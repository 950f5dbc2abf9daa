"""nexus-writer: an external NeXus/HDF5 writer for beamline data acquisition.

Layers, imported in one direction only::

    data (Redis protocol) <- nexus (HDF5 layout) <- writer (scan/session writers) <- cli
    sim (simulated acquisition session) uses only the public ``data`` API.
"""

__version__ = "0.1.0"
