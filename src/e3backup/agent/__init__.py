"""The agent daemon: polls the control-plane server for work, runs it, reports back.

    config.py     AgentConfig: the YAML file (0600) written by ``agent enroll``
    transport.py  Transport protocol: httpx over the network, or the app in-process (tests)
    client.py     ServerClient: the agent API calls, retries with backoff, mapped errors
    outbox.py     Outbox: events and final statuses on disk, delivered in order, once
    state.py      StateDir: the current-run marker (orphans after a kill), last contact
    validate.py   refuse hostile runs and commands (RUN_REFUSED, nothing run)
    destination.py  repository URL, storage preflight, open or init
    engines.py    engine dispatch (files, disk_image, sync, hyperv) and restorers
    reporter.py   RunReporter: throttled update_run, events, cancel
    runner.py     Agent: the next_run loop, the command loop, the disk report loop
    commands.py   restore, maintenance, cancel and list_disks commands
    disks.py      the disk/volume inventory (lsblk on Linux)
    logs.py       stderr logging, text or JSON, secrets redacted
"""

from .config import AgentConfig, default_config_path, load_config
from .runner import Agent

__all__ = ["Agent", "AgentConfig", "default_config_path", "load_config"]
