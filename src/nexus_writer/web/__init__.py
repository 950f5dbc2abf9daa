"""The writer's web page (an adapter: the core never imports it): sessions and scans
live, each scan's plot, and the files through h5grove's API."""

from .server import WebServer, for_service, for_session_writer, parse_address

__all__ = ["WebServer", "for_service", "for_session_writer", "parse_address"]
