"""The HDF5 layout of a NeXus dataset file (ESRF conventions): entries, instrument,
measurement, plots, metadata, camera references, and the compliance check.

Takes plain arguments; knows nothing of Redis or scans in progress.
"""
