"""What the command line prints of log records: one line each, e3backup's own warnings only.

Without ``--debug`` a user sees the one-line error of a failed command and e3backup's warnings
("removed stale lock ..."), each as ``e3backup: warning: ...``; libraries' warnings (botocore,
urllib3) and debug lines appear only with ``--debug``, which shows every record with its logger.
"""

from __future__ import annotations

import logging
import sys

_OURS = "e3backup"
HANDLER_NAME = "e3backup-cli"


class _OwnWarnings(logging.Filter):
    """Passes e3backup's records, and other libraries' only from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name == _OURS or record.name.startswith(_OURS + ".")
        return own or record.levelno >= logging.ERROR


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())  # a message never spans lines
        return f"e3backup: {record.levelname.lower()}: {text}"


def configure_logging(debug: bool) -> None:
    """Route log records to stderr for a CLI run (the agent and the server set up their own)."""
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.addFilter(_OwnWarnings())
        handler.setFormatter(_OneLine())
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == HANDLER_NAME:  # a previous run in this process (tests): replace it
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


__all__ = ["HANDLER_NAME", "configure_logging"]
