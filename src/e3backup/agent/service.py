"""The agent run by the Windows service: config and state under ``%ProgramData%\\E3Backup``, logs to
a rotating file there and to the Windows Event Log, and a clean stop.

``AgentServiceBody`` is what ``platform.windows.service.host`` runs: ``run()`` starts the agent and
blocks; ``stop()`` (the SCM's stop) stops it, which cancels the running job (reported failed with
"the agent stopped") and lets the job's context managers delete its shadow copy. Tested on Linux
with the agent factory as the seam; the pywin32 side is ``platform.windows.service``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .logs import RedactingFilter

LOG_BYTES = 10 * 1024 * 1024
LOG_FILES = 5
EVENT_LOG_SOURCE = "E3Backup Agent"
log = logging.getLogger("e3backup.agent.service")


class Daemon(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 60.0) -> None: ...


def program_data() -> Path:
    """``%ProgramData%\\E3Backup`` (config, state, logs, the shadow copy journal)."""
    return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "E3Backup"


def service_logging(log_dir: Path, event_log: bool = True) -> list[logging.Handler]:
    """A rotating file (10 MiB x 5) and, where pywin32 is there, the Application event log
    (warnings and errors only); secrets are redacted in both."""
    log_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(log_dir / "agent.log", maxBytes=LOG_BYTES, backupCount=LOG_FILES,
                                             encoding="utf-8")
    ]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if event_log:
        try:
            nt = logging.handlers.NTEventLogHandler(EVENT_LOG_SOURCE)
        except Exception:  # no pywin32 (or not Windows): the file is the log
            log.debug("no Windows Event Log handler")
        else:
            nt.setLevel(logging.WARNING)
            handlers.append(nt)
    root = logging.getLogger()
    for h in handlers:
        h.addFilter(RedactingFilter())
        root.addHandler(h)
    root.setLevel(logging.INFO)
    return handlers


class AgentServiceBody:
    def __init__(self, make_agent: Callable[[], Daemon], stop_timeout: float = 110.0) -> None:
        self.make_agent = make_agent
        self.stop_timeout = stop_timeout  # inside the SCM's wait hint (platform.windows.service)
        self._stop = threading.Event()

    def run(self) -> None:
        agent = self.make_agent()
        agent.start()
        log.info("service started")
        self._stop.wait()
        log.info("service stopping: cancelling the running job")
        agent.stop(timeout=self.stop_timeout)
        log.info("service stopped")

    def stop(self) -> None:
        self._stop.set()


def default_body(config: Path | None = None) -> AgentServiceBody:
    """The service's agent: config from ``%ProgramData%\\E3Backup\\agent.yaml`` (or ``config``)."""

    def make() -> Daemon:
        from .config import load_config
        from .runner import Agent

        service_logging(program_data() / "logs")
        return Agent(load_config(config or program_data() / "agent.yaml"))

    return AgentServiceBody(make)


__all__ = ["AgentServiceBody", "default_body", "program_data", "service_logging"]
