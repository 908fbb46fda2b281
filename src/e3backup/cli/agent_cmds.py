"""``e3backup agent``: enroll this machine, run the daemon, show its state.

    e3backup agent enroll --server URL [--name NAME] [--config FILE]   (asks for the token)
    e3backup agent run [--config FILE] [--log-format text|json]
    e3backup agent status [--config FILE] [--json]
    e3backup agent install-service | uninstall-service              (Windows: docs/windows.md)
"""

from __future__ import annotations

import json
import logging
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError


def _config_path(config: str | None) -> Path:
    from ..agent.config import default_config_path

    return Path(config) if config else default_config_path()


@click.group()
def agent() -> None:
    """The backup agent: enroll with a server, then run as a daemon."""


@agent.command()
@click.option("--server", "server_url", required=True, help="The control-plane server, e.g. https://backup.msp.example")
@click.option("--token", default=None, envvar="E3BACKUP_ENROLLMENT_TOKEN",
              help="The tenant's enrollment token. Leave it out to be asked for it (or set "
              "E3BACKUP_ENROLLMENT_TOKEN): on the command line it lands in the shell history and the "
              "process list.")
@click.option("--name", default=None, help="Name of this machine on the dashboard (default: the host name).")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Where to write the config (default: $E3BACKUP_AGENT_CONFIG, /etc/e3backup/agent.yaml "
              "for root, else ~/.config/e3backup/agent.yaml).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None, help="Outbox and run markers.")
@click.option("--restore-root", "restore_roots", multiple=True, help="Allow file restores below this directory "
              "(repeatable).")
@click.option("--allow-device", "allowed_devices", multiple=True, help="Allow image restores onto this device "
              "(repeatable).")
@click.option("--allow-source", "allowed_sources", multiple=True, help="Back up only this path, volume or device "
              "and what lies below it (repeatable; default: anything).")
@click.option("--destination-root", "destination_roots", multiple=True, help="Allow local repositories below this "
              "directory (repeatable; default /var/lib/e3backup/repositories for root).")
@click.option("--poll-interval", type=click.FloatRange(min=0.1), default=None, help="Seconds between next_run polls.")
@click.option("--command-interval", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between command polls.")
@click.option("--update-key", default=None, help="Self-update: the base64 Ed25519 public key releases are signed "
              "with (e3backup release keygen). Without it the agent never updates itself.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def enroll(server_url: str, token: str | None, name: str | None, config: str | None, state_dir: str | None,
           restore_roots: tuple[str, ...], allowed_devices: tuple[str, ...], allowed_sources: tuple[str, ...],
           destination_roots: tuple[str, ...], poll_interval: float | None,
           command_interval: float | None, update_key: str | None, force: bool) -> None:
    """Register this machine with the server and write the agent config (mode 0600)."""
    from ..agent.client import ServerClient
    from ..agent.config import AgentConfig, config_values, save_config
    from ..agent.engines import engines_for
    from ..agent.transport import HttpxTransport

    path = _config_path(config)
    if path.exists() and not force:
        raise UsageError(f"{path} exists (this machine is enrolled); use --force to enroll again")
    if not token:
        token = click.prompt("Enrollment token", hide_input=True).strip()
    if not token:
        raise UsageError("no enrollment token given")
    probe_cfg = AgentConfig(server_url=server_url, agent_token="-", update_public_key=update_key)  # checked first
    transport = HttpxTransport.network(probe_cfg.server_url)
    try:
        answer = ServerClient(transport).enroll(token, name or socket.gethostname(), _os_name(),
                                                platform.platform(), engines_for(sys.platform), sys.platform)
    finally:
        transport.close()
    values: dict[str, Any] = config_values({
        "server_url": probe_cfg.server_url, "agent_id": answer.agent_id, "agent_token": answer.agent_token,
        "tenant_id": answer.tenant_id, "state_dir": state_dir,
        "restore_roots": list(restore_roots) or None, "allowed_devices": list(allowed_devices) or None,
        "allowed_sources": list(allowed_sources) or None, "local_destination_roots": list(destination_roots) or None,
        "poll_interval_seconds": poll_interval, "command_interval_seconds": command_interval,
        "update_public_key": update_key,
    })
    written = save_config(AgentConfig(**values), path)
    click.echo(f"enrolled as agent {answer.agent_id} (tenant {answer.tenant_id}); config written to {written}")


@agent.command()
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="The agent config file.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--debug", is_flag=True, help="Debug logging.")
@click.option("--check-start", is_flag=True, help="Load the config, build the agent, print the version as JSON and "
              "exit (self-update tries a new version this way before switching to it).")
def run(config: str | None, log_format: str, debug: bool, check_start: bool) -> None:
    """Run the agent in the foreground (logs to stderr) until SIGTERM or Ctrl-C."""
    from ..agent.config import load_config
    from ..agent.logs import setup_logging
    from ..agent.runner import Agent

    setup_logging(log_format, logging.DEBUG if debug else logging.INFO)
    path = _config_path(config)
    cfg = load_config(path)
    if not debug:
        setup_logging(log_format, cfg.logging_level)  # the config file's log_level
    daemon = Agent(cfg, config_path=path.resolve())
    if check_start:
        from ..buildinfo import info

        daemon.transport.close()
        click.echo(json.dumps({"version": info()["version"], "agent_id": cfg.agent_id}))
        return

    from ..agent.signals import StopOnSignal

    StopOnSignal(daemon.request_exit).install()
    daemon.run_forever()


def _windows_only(what: str) -> None:
    if sys.platform != "win32":
        raise UsageError(f"{what} needs Windows (this machine: {sys.platform}); on Linux use a systemd unit "
                         "running 'e3backup agent run' (docs/agent.md)")


@agent.command("install-service")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="The agent config file (default: %ProgramData%\\E3Backup\\agent.yaml).")
def install_service(config: str | None) -> None:
    """Register the agent as a Windows service (automatic start, runs as LocalSystem)."""
    _windows_only("install-service")
    from ..platform.windows.service import SERVICE_NAME, install

    frozen = getattr(sys, "frozen", False)  # the single-file agent: its own executable
    argv = [sys.executable] if frozen else [sys.executable, "-m", "e3backup"]
    argv += ["agent", "service-host"] + (["--config", str(Path(config).resolve())] if config else [])
    install(argv)
    click.echo(f"service {SERVICE_NAME} installed; start it with: sc start {SERVICE_NAME}")


@agent.command("uninstall-service")
def uninstall_service() -> None:
    """Stop and remove the Windows service."""
    _windows_only("uninstall-service")
    from ..platform.windows.service import SERVICE_NAME, uninstall

    uninstall()
    click.echo(f"service {SERVICE_NAME} removed")


@agent.command("service-host", hidden=True)
@click.option("--config", type=click.Path(dir_okay=False), default=None)
def service_host(config: str | None) -> None:
    """What the Service Control Manager runs (not for the command line)."""
    _windows_only("service-host")
    from ..agent.service import default_body
    from ..platform.windows.service import host

    host(lambda: default_body(Path(config) if config else None))


@agent.command()
@click.option("--config", type=click.Path(dir_okay=False), default=None, help="The agent config file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(config: str | None, as_json: bool) -> None:
    """Config location, server, agent id, last contact, current runs, undelivered entries."""
    from ..agent.config import load_config
    from ..agent.state import StateDir

    path = _config_path(config)
    cfg = load_config(path)
    doc = {"config": str(path), "server_url": cfg.server_url, "agent_id": cfg.agent_id,
           "state_dir": cfg.state_dir, **StateDir(cfg.state_dir).summary()}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"config:        {doc['config']}")
    click.echo(f"server:        {doc['server_url']}")
    agent_id = doc["agent_id"] if doc["agent_id"] is not None else "not in the config (the token identifies it)"
    click.echo(f"agent id:      {agent_id}")
    click.echo(f"state dir:     {doc['state_dir']}")
    click.echo(f"last contact:  {doc['last_contact'] or 'never'}")
    runs = doc["current_runs"]
    if runs:
        for r in runs:
            click.echo(f"current run:   {r['run_id']} ({r['engine']} {r['kind']}, started {r['started_at']}, "
                       f"pid {r['pid']})")
    else:
        click.echo("current run:   none")
    click.echo(f"outbox:        {doc['outbox_pending']} entries waiting for the server")


def _os_name() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux" if sys.platform.startswith("linux")
                                                         else sys.platform)


__all__ = ["agent"]

