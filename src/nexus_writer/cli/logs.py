"""Logging set-up shared by the commands: ``--log LEVEL`` and ``--logfile FILE``."""

from __future__ import annotations

import argparse
import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", default="warning", metavar="LEVEL",
                        help="log level: debug, info, warning (default), error")
    parser.add_argument("--logfile", metavar="FILE", help="also log to FILE")


class RedactFilter(logging.Filter):
    """Masks the credentials of any Redis URL in a log record (a last line of defence:
    the code logs masked URLs already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ..data.urls import redact_url

        message = record.getMessage()
        masked = redact_url(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup(args: argparse.Namespace) -> None:
    level = getattr(logging, str(args.log).upper(), None)
    if not isinstance(level, int):
        raise SystemExit(f"--log: unknown level {args.log!r} (debug, info, warning, error)")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if getattr(args, "logfile", None):
        handlers.append(logging.FileHandler(args.logfile))
    for handler in handlers:
        handler.addFilter(RedactFilter())
    logging.basicConfig(level=logging.WARNING, format=FORMAT, handlers=handlers, force=True)
    logging.getLogger("nexus_writer").setLevel(level)
