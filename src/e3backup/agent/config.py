"""The agent's configuration file: where the server is and who this agent is.

YAML, written by ``e3backup agent enroll`` with mode 0600 (it holds the agent token). Location:
``$E3BACKUP_AGENT_CONFIG`` if set, else ``/etc/e3backup/agent.yaml`` for root, else
``~/.config/e3backup/agent.yaml``. Keys::

    server_url: https://backup.msp.example  # seeds: api_base_url (a path prefix is kept)
    agent_id: 12                            # optional: the server knows the agent by its token
    agent_token: e3a_...
    state_dir: /var/lib/e3backup/agent      # outbox, current-run marker, last contact; seeds: run_dir
    poll_interval_seconds: 30               # next_run; jittered by +-jitter_fraction; seeds: poll_interval_secs
    log_level: info                         # debug, info, warning or error (``agent run --debug`` wins)
    command_interval_seconds: 5             # poll_commands
    disk_report_interval_seconds: 3600      # report_disks
    progress_interval_seconds: 1            # update_run at most this often
    jitter_fraction: 0.2
    max_concurrent_runs: 1
    restore_roots: [/var/lib/e3backup/restores]   # file restores only below these
    allowed_devices: []                     # image restores only onto these devices
    allowed_sources: null                   # null: back up anything; a list: only these paths
                                            #   (and below), volumes and devices
    local_destination_roots: [/var/lib/e3backup/repositories]   # local repositories only below these
    update_public_key: null                 # self-update: base64 Ed25519 public key releases are signed
                                            #   with (e3backup release keygen); null: no self-update
    hyperv_host: null                       # Hyper-V jobs: local (this Windows machine's Hyper-V;
                                            #   the default on Windows) or sim:DIR (the simulated
                                            #   host); null elsewhere: no hyperv engine

The allow-lists are the agent's own: it runs as root and does not trust the server (or whoever
can edit a job) to point it at ``/etc/shadow`` or to write a repository over ``/boot``.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..platform.compat import is_superuser

ENV_CONFIG = "E3BACKUP_AGENT_CONFIG"


def _is_root() -> bool:
    return is_superuser()


def default_config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    if sys.platform == "win32":  # the service's: %ProgramData%\E3Backup
        return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "E3Backup" / "agent.yaml"
    if _is_root():
        return Path("/etc/e3backup/agent.yaml")
    return Path.home() / ".config" / "e3backup" / "agent.yaml"


def default_state_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "E3Backup" / "state"
    if _is_root():
        return Path("/var/lib/e3backup/agent")
    return Path.home() / ".local" / "share" / "e3backup" / "agent"


def default_restore_roots() -> list[str]:
    if _is_root():
        return ["/var/lib/e3backup/restores"]
    return [str(Path.home() / "e3backup-restores")]


def default_destination_roots() -> list[str]:
    if _is_root():
        return ["/var/lib/e3backup/repositories"]
    return [str(Path.home() / "e3backup-repositories")]


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class AgentConfig:
    server_url: str
    agent_token: str
    agent_id: int | None = None
    state_dir: str = field(default_factory=lambda: str(default_state_dir()))
    poll_interval_seconds: float = 30.0
    command_interval_seconds: float = 5.0
    disk_report_interval_seconds: float = 3600.0
    progress_interval_seconds: float = 1.0
    jitter_fraction: float = 0.2
    max_concurrent_runs: int = 1
    restore_roots: list[str] = field(default_factory=default_restore_roots)
    allowed_devices: list[str] = field(default_factory=list)
    allowed_sources: list[str] | None = None
    local_destination_roots: list[str] = field(default_factory=default_destination_roots)
    tenant_id: int | None = None
    log_level: str = "info"
    hyperv_host: str | None = None
    update_public_key: str | None = None

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("http://", "https://")):
            raise UsageError(f"server_url must start with http:// or https://, not {self.server_url!r}")
        self.server_url = self.server_url.rstrip("/")
        for name in ("poll_interval_seconds", "command_interval_seconds", "disk_report_interval_seconds"):
            if float(getattr(self, name)) <= 0:
                raise UsageError(f"{name} must be positive")
        if not 0 <= self.jitter_fraction < 1:
            raise UsageError("jitter_fraction must be in [0, 1)")
        if self.max_concurrent_runs < 1:
            raise UsageError("max_concurrent_runs must be at least 1")
        self.restore_roots = [os.path.abspath(r) for r in self.restore_roots]
        self.local_destination_roots = [os.path.abspath(r) for r in self.local_destination_roots]
        if self.allowed_sources is not None and not all(isinstance(s, str) and s for s in self.allowed_sources):
            raise UsageError("allowed_sources must be a list of paths, volumes or devices (or null: anything)")
        if self.hyperv_host is not None and not (self.hyperv_host == "local" or self.hyperv_host.startswith("sim:")):
            raise UsageError(f"hyperv_host must be local or sim:DIR, not {self.hyperv_host!r}")
        if self.update_public_key is not None:
            import base64
            import binascii

            try:
                ok = len(base64.b64decode(self.update_public_key, validate=True)) == 32
            except (ValueError, binascii.Error):
                ok = False
            if not ok:
                raise UsageError("update_public_key must be a base64 Ed25519 public key (e3backup release keygen)")
        self.log_level = str(self.log_level).lower()
        if self.log_level not in LOG_LEVELS:
            raise UsageError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")

    @property
    def logging_level(self) -> int:
        return int(getattr(logging, self.log_level.upper()))

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(asdict(self), sort_keys=False))

    def __repr__(self) -> str:  # the token never lands in a log line or traceback
        return f"AgentConfig(server_url={self.server_url!r}, agent_id={self.agent_id}, state_dir={self.state_dir!r})"


# the seeds' agent.conf keys (the Go agent's names) -> ours
_ALIASES = {"api_base_url": "server_url", "poll_interval_secs": "poll_interval_seconds", "run_dir": "state_dir"}


_SEED_NAME = {ours: seed for seed, ours in _ALIASES.items()}


def load_config(path: str | Path | None = None) -> AgentConfig:
    """Read and validate the config file; refuses one that others can read (it holds a token)."""
    p = Path(path) if path is not None else default_config_path()
    try:
        st = p.stat()
        text = p.read_text()
    except FileNotFoundError as e:
        raise UsageError(f"no agent config at {p}: run `e3backup agent enroll` first") from e
    except OSError as e:
        raise UsageError(f"cannot read agent config {p}: {e.strerror}") from e
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"agent config {p} is readable by others (mode {st.st_mode & 0o777:o}): chmod 600 it")
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"agent config {p} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise UsageError(f"agent config {p}: expected a mapping")
    for seed, ours in _ALIASES.items():
        if seed in doc and ours in doc:
            raise UsageError(f"agent config {p}: {seed} and {ours} are the same setting; keep one")
    doc = {_ALIASES.get(k, k): v for k, v in doc.items()}
    known = {f.name for f in fields(AgentConfig)}
    unknown = set(doc) - known
    if unknown:
        raise UsageError(f"agent config {p}: unknown key(s) {', '.join(sorted(unknown))}")
    missing = {"server_url", "agent_token"} - set(doc)
    if missing:
        names = [f"{m} (or {_SEED_NAME[m]})" if m in _SEED_NAME else m for m in sorted(missing)]
        raise UsageError(f"agent config {p}: missing {', '.join(names)}")
    try:
        return AgentConfig(**doc)
    except TypeError as e:
        raise UsageError(f"agent config {p}: {e}") from e


def save_config(config: AgentConfig, path: str | Path | None = None) -> Path:
    """Write atomically with mode 0600 (the directory is created 0700 if missing)."""
    p = Path(path) if path is not None else default_config_path()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if sys.platform != "win32":  # Windows: the ACL of %ProgramData%\E3Backup protects it
            os.fchmod(fd, 0o600)
        os.write(fd, config.to_yaml().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    return p


def config_values(doc: dict[str, Any]) -> dict[str, Any]:
    """Only the keys ``AgentConfig`` knows (for overriding from the command line)."""
    known = {f.name for f in fields(AgentConfig)}
    return {k: v for k, v in doc.items() if k in known and v is not None}


__all__ = [
    "ENV_CONFIG",
    "AgentConfig",
    "config_values",
    "default_config_path",
    "default_destination_roots",
    "default_restore_roots",
    "default_state_dir",
    "load_config",
    "save_config",
]
