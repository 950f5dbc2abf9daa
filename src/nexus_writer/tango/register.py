"""Registering a ``BlissWriter`` device in a Tango database, and finding it as BLISS does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tango

#: The device class BLISS 2.4 looks for (``ExternalTangoMappingWriter._TANGO_WRITER_CLASS``).
WRITER_CLASS = "BlissWriter"
#: blisswriter 3.0.0's defaults (``blisswriter tango run/register``), kept so that
#: existing beamline configurations work unchanged.
DEFAULT_SERVER = "BlissWriter"
DEFAULT_INSTANCE = "default"
DEFAULT_DOMAIN = "id00"
DEFAULT_FAMILY = "blisswriter"
DEFAULT_MEMBER = "default"


def _database(host: str | None = None, port: int | None = None) -> "tango.Database":
    """The Tango database at ``host:port``, else the one ``$TANGO_HOST`` names."""
    import tango  # here: the CLI lists these defaults without pytango installed

    return tango.Database() if host is None or port is None else tango.Database(host, port)


def register_blisswriter(redis_url: str, server_name: str = DEFAULT_SERVER,
                         instance_name: str = DEFAULT_INSTANCE, domain: str = DEFAULT_DOMAIN,
                         family: str = DEFAULT_FAMILY, member: str = DEFAULT_MEMBER,
                         session: str | None = None, follow_session: bool = False,
                         host: str | None = None, port: int | None = None) -> str:
    """Register device ``domain/family/member`` of class ``BlissWriter`` in server
    ``server_name/instance_name``, with its ``redis_url`` property and, when given, the
    ``session`` it serves (how BLISS finds it) and ``follow_session``.  Returns the device
    name.  Raises ``tango.DevFailed`` when the database is unreachable."""
    import tango

    info = tango.DbDevInfo()
    info.server = f"{server_name}/{instance_name}"
    info._class = WRITER_CLASS
    info.name = f"{domain}/{family}/{member}"
    db = _database(host, port)
    db.add_device(info)
    properties: dict[str, Any] = {"redis_url": redis_url}
    if session is not None:
        properties["session"] = session
    if follow_session:
        properties["follow_session"] = "true"
    db.put_device_property(info.name, properties)
    return info.name


def find_session_writer(session: str, beacon_host: str | None = None,
                        host: str | None = None, port: int | None = None) -> str | None:
    """The ``BlissWriter`` device serving ``session``, found as BLISS 2.4 finds it: by
    class and ``session`` property (and ``beacon_host`` when both say one).  None when
    there is none; ``ValueError`` when there are several."""
    db = _database(host, port)
    found = []
    for name in db.get_device_name("*", WRITER_CLASS):
        props = db.get_device_property(name, ["session", "beacon_host"])
        if list(props["session"])[:1] != [session]:
            continue
        their_beacon = list(props["beacon_host"])[:1]
        if beacon_host and their_beacon and their_beacon[0] != beacon_host:
            continue
        found.append(name)
    if len(found) > 1:
        raise ValueError(f"more than one writer for session {session!r}: {found}")
    return found[0] if found else None
