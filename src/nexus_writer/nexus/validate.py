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
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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


@contextmanager
def _capture() -> Iterator[_Collect]:
    """nexusformat's validation log collected (WARNING and up), with the standard's
    name rule; one validation at a time (nexusformat's logger is global)."""
    from nexusformat.nexus import utils, validate

    handler = _Collect()
    with _lock:
        saved_pattern, saved_level = utils.name_pattern, validate.logger.level
        saved_propagate, saved_handlers = validate.logger.propagate, list(validate.logger.handlers)
        utils.name_pattern = NEXUS_ALLOWED_NAME
        validate.logger.setLevel(logging.WARNING)
        validate.logger.propagate = False
        validate.logger.handlers = [handler]
        try:
            yield handler
        finally:
            validate.logger.handlers = saved_handlers
            validate.logger.setLevel(saved_level)
            validate.logger.propagate = saved_propagate
            utils.name_pattern = saved_pattern


def _findings(messages: list[str]) -> list[str]:
    return [m for m in messages if m and not m.startswith(("Total number", "Filename", "Path:",
                                                           "Definitions", "Application"))]


def _external_entries(path: str) -> list[tuple[str, str, str]] | None:
    """``(name, file, path)`` of each root external link when the root holds nothing
    else (a master file), the file resolved from the master's folder; else None."""
    with h5py.File(path, "r", locking=False) as f:
        links = [(name, f.get(name, getlink=True)) for name in f]
    if not links or not all(isinstance(link, h5py.ExternalLink) for _, link in links):
        return None
    base = os.path.dirname(os.path.abspath(path))
    return [(name, os.path.normpath(os.path.join(base, link.filename)), link.path)
            for name, link in links]


def _validate_master(path: str, links: list[tuple[str, str, str]]) -> ValidationReport:
    """A master file: the root's class, and each linked entry checked in its own file.

    nexusformat 2.1 cannot walk a group reached through an external link when that
    group holds soft links ("Cannot link to another NXlink object"), and every
    entry has them (``measurement``, plots): the entries are checked where they are.
    """
    from nexusformat.nexus import validate

    warnings, errors, messages = 0, 0, []
    with h5py.File(path, "r", locking=False) as f:
        if f.attrs.get("NX_class") not in ("NXroot", b"NXroot"):
            errors += 1
            messages.append(f"{path}: the root is not an NXroot")
    for name, target, entry in links:
        if not os.path.isfile(target):
            errors += 1
            messages.append(f"{name}: broken link to {target}::{entry}")
            continue
        with _capture() as handler:
            result = validate.validate_file(target, path=entry)
        if result is None:
            errors += 1
            messages.extend(f"{name}: {m}" for m in handler.messages)
            messages.append(f"{name}: nexusformat could not validate {target}::{entry}")
            continue
        warnings += result[0]
        errors += result[1]
        messages.extend(f"{name}: {m}" for m in _findings(handler.messages))
    return ValidationReport(path, warnings, errors, messages, default_plot(path))


def validate_file(path: str | Path) -> ValidationReport:
    """Base-class check of every group (nexusformat) plus the ``@default`` chain.

    A master file (external links only) is checked entry by entry in the files its
    links lead to.
    """
    from nexusformat.nexus import validate

    path = str(path)
    if not os.path.isfile(path):
        return ValidationReport(path, 0, 1, [f'File "{path}" does not exist'])
    links = _external_entries(path)
    if links is not None:
        return _validate_master(path, links)
    with _capture() as handler:
        result = validate.validate_file(path)
    if result is None:
        return ValidationReport(path, 0, 1, handler.messages + ["nexusformat could not validate"])
    warnings, errors = result
    return ValidationReport(path, warnings, errors, _findings(handler.messages),
                            default_plot(path))


@dataclass
class ApplicationReport:
    """Outcome of :func:`validate_application` for one (sub)entry."""

    path: str
    group: str
    definition: str
    warnings: int
    errors: int
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.warnings == 0

    def summary(self) -> str:
        return f"{self.group}: {self.definition}: {self.errors} errors, {self.warnings} warnings"


def validate_application(path: str | Path, group: str,
                         definition: str | None = None) -> ApplicationReport:
    """Check the NXentry or NXsubentry ``group`` of ``path`` against the application
    definition it names in its ``definition`` field (or ``definition``), with
    nexusformat's NXDL (``nxvalidate``)."""
    from nexusformat.nexus import validate

    path = str(path)
    if definition is None:
        with h5py.File(path, "r", locking=False) as f:
            value = f[group]["definition"][()]
        definition = value.decode() if isinstance(value, bytes) else str(value)
    with _capture() as handler:
        result = validate.validate_application(path, path=group, application=definition)
    if result is None:
        return ApplicationReport(path, group, definition, 0, 1,
                                 handler.messages + ["nexusformat could not validate"])
    warnings, errors = result
    return ApplicationReport(path, group, definition, warnings, errors,
                             _findings(handler.messages))


def validate_applications(path: str | Path) -> list[ApplicationReport]:
    """:func:`validate_application` for every entry or subentry of ``path`` that
    declares an application definition."""
    from .appdef import subentries

    with h5py.File(str(path), "r", locking=False) as f:
        found = subentries(f)
    return [validate_application(path, group, definition) for group, definition in found]


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
