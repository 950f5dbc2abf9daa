"""Checking a file against the NeXus base classes and its ``@default`` plot chain.

``nexusformat`` does the base-class check.  One deliberate difference: nexusformat
2.x rejects any name outside the *recommended* pattern ``^[a-zA-Z_][a-zA-Z0-9_]*$``,
while the NeXus standard (``validItemName`` in nxdl.xsd) allows
``^[a-zA-Z0-9_]([a-zA-Z0-9_.]*[a-zA-Z0-9_])?$``.  The ESRF entry names ``"1.1"``,
``"2.1"``... that every beamline tool looks for are allowed names, so the check
here applies the standard's rule.  Every other rule is nexusformat's own.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h5py

#: The NeXus standard's ``validItemName`` (nxdl.xsd).
NEXUS_ALLOWED_NAME = re.compile(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.]*[a-zA-Z0-9_])?$")
_lock = threading.Lock()


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_file`."""

    path: str
    warnings: int
    errors: int
    messages: list[str] = field(default_factory=list)
    default_plot: str | None = None

    @property
    def ok(self) -> bool:
        """0 errors, 0 warnings and a ``@default`` chain ending at a valid NXdata."""
        return self.errors == 0 and self.warnings == 0 and self.default_plot is not None

    def summary(self) -> str:
        plot = self.default_plot or "no valid @default plot"
        return f"{self.errors} errors, {self.warnings} warnings, default plot {plot}"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()).strip())


@functools.lru_cache(maxsize=None)
def defined_fields(nx_class: str) -> frozenset[str]:
    """Field names the NeXus base class ``nx_class`` defines (nexusformat's
    definitions): another name in such a group is a warning of the check."""
    from nexusformat.nexus import validate

    try:
        return frozenset(validate.GroupValidator(nx_class).valid_fields)
    except Exception:  # noqa: BLE001 - an unknown class defines nothing
        return frozenset()


def validate_file(path: str | Path) -> ValidationReport:
    """Base-class check of every group (nexusformat) plus the ``@default`` chain."""
    from nexusformat.nexus import utils, validate

    path = str(path)
    handler = _Collect()
    with _lock:
        saved_pattern, saved_level = utils.name_pattern, validate.logger.level
        saved_propagate, saved_handlers = validate.logger.propagate, list(validate.logger.handlers)
        utils.name_pattern = NEXUS_ALLOWED_NAME
        validate.logger.setLevel(logging.WARNING)
        validate.logger.propagate = False
        validate.logger.handlers = [handler]
        try:
            result = validate.validate_file(path)
        finally:
            validate.logger.handlers = saved_handlers
            validate.logger.setLevel(saved_level)
            validate.logger.propagate = saved_propagate
            utils.name_pattern = saved_pattern
    if result is None:
        return ValidationReport(path, 0, 1, handler.messages + ["nexusformat could not validate"])
    warnings, errors = result
    messages = [m for m in handler.messages if m and not m.startswith(("Total number", "Filename",
                                                                       "Path:", "Definitions"))]
    return ValidationReport(path, warnings, errors, messages, default_plot(path))


def default_plot(path: str | Path) -> str | None:
    """HDF5 path of the NXdata that the root ``@default`` chain leads to, if valid.

    Follows ``@default`` from the root, as silx and h5web do, and checks the end
    with :func:`silx.io.nxdata.is_valid_nxdata`.
    """
    from silx.io.nxdata import is_valid_nxdata

    with h5py.File(path, "r", locking=False) as f:
        node: h5py.Group = f
        for _ in range(8):
            name = node.attrs.get("default")
            if name is None:
                return None
            if isinstance(name, bytes):
                name = name.decode()
            child = node.get(str(name))
            if not isinstance(child, h5py.Group):
                return None
            node = child
            nx_class = node.attrs.get("NX_class")
            if isinstance(nx_class, bytes):
                nx_class = nx_class.decode()
            if nx_class == "NXdata":
                return node.name if is_valid_nxdata(node) else None
    return None
