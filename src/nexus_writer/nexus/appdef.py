"""NeXus application definitions from technique templates.

Analysis tools look for an application definition (``NXxas``, ``NXtomo``...) to find
"the energy" or "the rotation angle" without knowing the beamline.  A technique
template (a small TOML file, ``techniques/{NXname}.toml`` in this package, or any
path) says which of a scan's channels play which role and where each goes in an
``NXsubentry`` of the entry.  The subentry holds links to the entry's datasets,
never copies, plus the few constants the definition requires; its ``definition``
field names the application definition.  The format is in docs/appdefs.md.

A template that a scan cannot satisfy (a role without channel, a required value
missing) raises :class:`AppDefError` before anything is written: the writer turns
it into a warning and the entry stays as it is.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..errors import NexusWriterError
from .groups import require_group, soft_link, write_field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Field specification keys (a TOML table with one of these is a field, not a group).
_FIELD_KEYS = {"channel", "link", "info", "value", "fill"}
_KINDS = ("positioner", "detector", "camera")


class AppDefError(NexusWriterError, ValueError):
    """A technique template is unknown, malformed, or not satisfied by the scan."""


@dataclass(frozen=True)
class ChannelRef:
    """A channel of the scan as a template sees it: names to match, and where its
    data is in the file (``path``, absolute in the dataset file)."""

    name: str
    display: str
    device: str
    kind: str
    path: str

    def matches(self, wanted: str) -> bool:
        return wanted in (self.name, self.display, self.device)


@dataclass(frozen=True)
class Role:
    """What channel plays a role: one of ``names`` (in order), of ``kind`` if set."""

    names: tuple[str, ...] = ()
    kind: str | None = None

    def find(self, channels: Sequence[ChannelRef]) -> ChannelRef | None:
        pool = [c for c in channels if self.kind is None or c.kind == self.kind]
        if not self.names:
            return pool[0] if pool else None
        for wanted in self.names:
            for chan in pool:
                if chan.matches(wanted):
                    return chan
        return None


@dataclass
class Template:
    """A technique template: ``definition`` (``NXxas``), the subentry's name, the
    roles and the subentry's tree."""

    definition: str
    subentry: str
    roles: dict[str, Role]
    tree: dict[str, Any]
    aliases: tuple[str, ...] = ()
    source: str = ""

    def with_channels(self, names: Mapping[str, Any]) -> "Template":
        """A copy whose roles take the channel names given (``role -> name(s)``)."""
        roles = dict(self.roles)
        for role, value in names.items():
            if role not in roles:
                raise AppDefError(f"{self.definition}: no role {role!r} to assign a channel "
                                  f"to (roles: {', '.join(sorted(roles))})")
            wanted = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
            roles[role] = Role(wanted, roles[role].kind)
        return Template(self.definition, self.subentry, roles, self.tree, self.aliases,
                        self.source)


@dataclass
class _Item:
    path: str  # inside the subentry
    kind: str  # group, link, value, attr
    payload: Any = None
    units: str | None = None
    dtype: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _bundled() -> dict[str, Any]:
    """The templates shipped in the package, by file name."""
    folder = resources.files("nexus_writer.nexus") / "techniques"
    return {p.name: p for p in folder.iterdir() if p.name.endswith(".toml")}


def template_names() -> list[str]:
    """Names of the shipped templates (``NXtomo``, ``NXxas``...)."""
    return sorted(name[:-5] for name in _bundled())


def _parse(text: str, source: str) -> Template:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AppDefError(f"technique template {source}: {e}") from e
    try:
        definition = str(doc["definition"])
        tree = doc["tree"]
        if not isinstance(tree, dict):
            raise TypeError("'tree' must be a table")
        roles = {}
        for role, spec in (doc.get("channels") or {}).items():
            if isinstance(spec, str):
                spec = {"names": [spec]}
            kind = spec.get("kind")
            if kind is not None and kind not in _KINDS:
                raise ValueError(f"role {role!r}: kind {kind!r} is not one of {_KINDS}")
            roles[str(role)] = Role(tuple(str(n) for n in spec.get("names") or ()), kind)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AppDefError(f"technique template {source}: malformed ({type(e).__name__}: "
                          f"{e})") from e
    return Template(definition, str(doc.get("subentry") or definition[2:].lower()), roles,
                    tree, tuple(str(a) for a in doc.get("aliases") or ()), source)


def load_template(name: str) -> Template:
    """The template ``name``: a shipped one by definition (``NXxas``) or alias
    (``xas``), case-insensitive, or a path to a TOML file.  Raises AppDefError."""
    if name.endswith(".toml") or os.sep in name:
        try:
            with open(name, encoding="utf-8") as f:
                return _parse(f.read(), name)
        except OSError as e:
            raise AppDefError(f"technique template {name}: {e.strerror or e}") from e
    wanted = name.strip().lower()
    for fname, path in sorted(_bundled().items()):
        template = _parse(path.read_text(encoding="utf-8"), f"{fname} (shipped)")
        if wanted in {template.definition.lower(), *(a.lower() for a in template.aliases)}:
            return template
    raise AppDefError(f"no technique template {name!r} (shipped: "
                      f"{', '.join(template_names())}; or give a path to a .toml file)")


def select_template(info: Mapping[str, Any], default: str = "") -> Template | None:
    """The template a scan asks for: ``scan_info["technique"]`` as a name, or as a
    mapping with ``definition`` (and optionally ``channels``: role -> channel name);
    else ``default`` (the writer's configuration); None when neither names one.

    BLISS's own ``technique`` metadata category (a mapping without ``definition``)
    selects nothing.  Raises AppDefError for an unknown name.
    """
    technique = info.get("technique")
    channels: Mapping[str, Any] = {}
    name = ""
    if isinstance(technique, str):
        name = technique
    elif isinstance(technique, Mapping):
        value = technique.get("definition") or technique.get("application")
        name = str(value) if isinstance(value, str) else ""
        extra = technique.get("channels")
        channels = extra if isinstance(extra, Mapping) else {}
    name = name.strip() or default.strip()
    if not name or name.lower() == "none":
        return None
    template = load_template(name)
    return template.with_channels(channels) if channels else template


def resolve(template: Template, channels: Sequence[ChannelRef]) -> dict[str, ChannelRef]:
    """The channel playing each role; raises AppDefError naming every role the scan
    cannot fill."""
    found: dict[str, ChannelRef] = {}
    missing = []
    for role, rule in template.roles.items():
        chan = rule.find(channels)
        if chan is None:
            what = " or ".join(rule.names) if rule.names else f"any {rule.kind}"
            missing.append(f"{role} ({what})")
        else:
            found[role] = chan
    if missing:
        raise AppDefError(f"{template.definition} not written: the scan has no channel for "
                          f"{', '.join(missing)}")
    return found


def _info_value(info: Mapping[str, Any], key: str) -> Any:
    node: Any = info
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (str, int, float, bool)) and node != "" else None


def _plan(template: Template, entry: h5py.Group, roles: Mapping[str, ChannelRef],
          info: Mapping[str, Any]) -> list[_Item]:
    """What to write, checked against the file before anything is written."""
    items: list[_Item] = []
    base = template.subentry

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, spec in table.items():
            path = f"{prefix}/{key}" if prefix else key
            if key == "NX_class":
                continue
            if key.startswith("@"):
                items.append(_Item(prefix, "attr", spec, extra={"name": key[1:]}))
            elif isinstance(spec, Mapping) and _FIELD_KEYS & set(spec):
                items.append(_field(path, spec))
            elif isinstance(spec, Mapping) and "NX_class" in spec:
                items.append(_Item(path, "group", str(spec["NX_class"])))
                walk(spec, path)
            else:
                raise AppDefError(f"{template.source}: {path}: neither a group (NX_class) "
                                  f"nor a field ({', '.join(sorted(_FIELD_KEYS))})")

    def _field(path: str, spec: Mapping[str, Any]) -> _Item:
        units = spec.get("units")
        if "channel" in spec:
            role = str(spec["channel"])
            if role not in roles:
                raise AppDefError(f"{template.source}: {path}: unknown role {role!r}")
            return _Item(path, "link", roles[role].path)
        if "fill" in spec:
            role = str(spec.get("like", ""))
            if role not in roles:
                raise AppDefError(f"{template.source}: {path}: 'like' names no role")
            target = entry.file.get(roles[role].path)
            if not isinstance(target, h5py.Dataset) or target.ndim == 0:
                raise AppDefError(f"{template.definition} not written: {roles[role].path} "
                                  "is not written")
            return _Item(path, "value", np.full(target.shape[0], spec["fill"],
                                                dtype=str(spec.get("dtype", "int32"))),
                         units)
        if "link" in spec:
            target = str(spec["link"])
            if target.startswith("./"):
                return _Item(path, "link", f"{entry.name}/{base}/{target[2:]}")
            if isinstance(entry.get(target), h5py.Dataset):
                return _Item(path, "link", f"{entry.name}/{target}")
        if "info" in spec:
            value = _info_value(info, str(spec["info"]))
            if value is not None:
                return _Item(path, "value", value, units)
        if "value" in spec:
            return _Item(path, "value", spec["value"], units)
        wanted = " or ".join(f"{k} {spec[k]!r}" for k in ("link", "info") if k in spec)
        raise AppDefError(f"{template.definition} not written: {path} needs {wanted}, which "
                          "the scan does not provide")

    walk(template.tree, "")
    return items


def write_subentry(entry: h5py.Group, template: Template, roles: Mapping[str, ChannelRef],
                   info: Mapping[str, Any]) -> h5py.Group:
    """Write the template's ``NXsubentry`` in ``entry`` (replacing one there) and
    return it.  Raises AppDefError, before writing, when the scan lacks something."""
    items = _plan(template, entry, roles, info)
    existing = entry.get(template.subentry)
    if existing is not None:
        if template.subentry not in {path.rsplit("/", 1)[-1] for path, definition in
                                     _declared(entry) if definition == template.definition}:
            raise AppDefError(f"{template.definition} not written: {entry.name}/"
                              f"{template.subentry} exists and is no {template.definition} "
                              "subentry")
        del entry[template.subentry]  # written before this scan's writer was restarted
    sub = require_group(entry, template.subentry, "NXsubentry")
    write_field(sub, "definition", template.definition)
    for item in items:
        if item.kind == "group":
            require_group(sub, item.path, item.payload)
        elif item.kind == "attr":
            group = sub[item.path] if item.path else sub
            group.attrs[item.extra["name"]] = item.payload
        elif item.kind == "link":
            parent, _, name = item.path.rpartition("/")
            soft_link(sub[parent] if parent else sub, name, item.payload)
        else:
            parent, _, name = item.path.rpartition("/")
            write_field(sub[parent] if parent else sub, name, item.payload, item.units)
    return sub


def _definition(group: h5py.Group) -> str | None:
    value = group.get("definition")
    if not isinstance(value, h5py.Dataset):
        return None
    text = value[()]
    return text.decode() if isinstance(text, bytes) else str(text)


def _nx_class(group: h5py.Group) -> str:
    value = group.attrs.get("NX_class", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _declared(entry: h5py.Group) -> list[tuple[str, str]]:
    """``(path, definition)`` of the entry and its NXsubentry groups that declare one."""
    found = []
    own = _definition(entry)
    if own:
        found.append((entry.name, own))
    for child in entry.values():
        if isinstance(child, h5py.Group) and _nx_class(child) == "NXsubentry":
            sub = _definition(child)
            if sub:
                found.append((child.name, sub))
    return found


def subentries(f: h5py.File) -> list[tuple[str, str]]:
    """``(path, definition)`` of every NXentry or NXsubentry (one level below an
    entry) that declares an application definition."""
    found: list[tuple[str, str]] = []
    for name in f:
        entry = f.get(name)
        if isinstance(entry, h5py.Group) and _nx_class(entry) == "NXentry":
            found.extend(_declared(entry))
    return found
