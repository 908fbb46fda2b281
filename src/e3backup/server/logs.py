"""What ``e3backup server`` prints of log records: the server's own from INFO up.

The command line's handler (``cli.log_setup``) passes e3backup's records but the root logger sat
at WARNING, so the ``basicConfig(level=INFO)`` after it changed nothing and the server's INFO
lines ("e3backup server ready", leadership changes) never appeared. Only the ``e3backup`` logger is
raised to INFO: the root stays where it is (WARNING), because SQLAlchemy logs every statement at
INFO when its loggers are enabled for it, which a busy server must never do.
"""

from __future__ import annotations

import logging
import sys

from e3backup.cli.log_setup import HANDLER_NAME as CLI_HANDLER

FORMAT = "%(levelname)s:     %(name)s: %(message)s"  # uvicorn's own lines look the same
HANDLER_NAME = "e3backup-server"


def configure_server_logging() -> None:
    """One stderr handler for the server (instead of the command line's), e3backup at INFO."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() in (CLI_HANDLER, HANDLER_NAME):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    logging.getLogger("e3backup").setLevel(logging.INFO)


__all__ = ["configure_server_logging"]
