"""The server's one settings object, validated when the app starts.

The secret key (sessions, CSRF, encryption of destination secrets at rest) comes from
``secret_key`` or from ``<data_dir>/secret.key``, created with mode 0600 on first start. Weak or
default-looking secrets are refused, and so is a key file others can read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from e3backup.errors import UsageError

SECRET_FILE = "secret.key"
MIN_SECRET_LENGTH = 32
_WEAK_SECRETS = {"changeme", "changethis", "secret", "password", "default", "test", "example"}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    listen: str = "127.0.0.1:8080"
    secret_key: str | None = Field(None, repr=False, description="Default: data_dir/secret.key")
    # session cookies
    session_hours: Annotated[float, Field(gt=0)] = 12.0
    cookie_secure: bool = Field(
        False, description="Secure on every cookie even on plain-HTTP requests (TLS ends at a proxy)."
    )
    # TLS served by the server itself (then cookies are Secure and HSTS is sent)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # behind a reverse proxy: trust X-Forwarded-For/-Proto from these addresses only
    proxy_headers: bool = False
    forwarded_allow_ips: str = Field("127.0.0.1", min_length=1, description="Comma-separated IPs/networks, or *")
    # request bodies (bytes), refused with 413 before parsing
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    max_agent_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    # events stored per run; beyond, one EVENTS_CAPPED event counts what was dropped
    max_events_per_run: Annotated[int, Field(ge=10)] = 20_000
    # password hashing (argon2id); tests lower the cost, production keeps the defaults
    argon2_time_cost: Annotated[int, Field(ge=1)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 65536
    # rate limits: attempts per window
    login_attempts: Annotated[int, Field(ge=1)] = 5  # per (client address, account)
    login_source_attempts: Annotated[int, Field(ge=1)] = 30  # per client address, any account
    login_window_seconds: Annotated[float, Field(gt=0)] = 300.0
    enroll_attempts: Annotated[int, Field(ge=1)] = 10
    enroll_window_seconds: Annotated[float, Field(gt=0)] = 300.0
    # agents
    agent_offline_after_seconds: Annotated[float, Field(gt=0)] = 180.0
    disk_list_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    command_poll_interval_seconds: Annotated[float, Field(gt=0)] = 0.5
    # snapshot browsing and downloads: local-path repositories the server may read (none: S3 only)
    browse_local_roots: list[Path] = Field(default_factory=list)
    # the repository gateway (e3backup.gateway, docs/gateway.md): restic's REST protocol at /gateway/
    gateway_enabled: bool = True
    gateway_url: str | None = Field(
        None, pattern=r"^https?://\S+$",
        description="Base URL agents reach the gateway at (default: the URL they reach the server at).",
    )
    gateway_local_roots: list[Path] = Field(default_factory=list)  # local folders it may serve (none: S3 only)
    gateway_spool_dir: Path | None = None  # uploads wait here until stored (default: data_dir/gateway-spool)
    gateway_max_object_bytes: Annotated[int, Field(ge=1024 * 1024)] = 1024 * 1024 * 1024
    maintenance_worker_enabled: bool = True  # runs forget/prune/check of gateway-mode repositories
    # recovery codes (the dashboard's "Recover this machine"): unused ones expire after this
    recovery_code_minutes: Annotated[float, Field(gt=0)] = 240.0
    # scheduler
    scheduler_enabled: bool = True
    scheduler_interval_seconds: Annotated[float, Field(gt=0)] = 30.0
    # replicas on PostgreSQL: how often a replica tries to become the scheduler's leader
    leader_retry_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # PostgreSQL: connections per process kept open (as many again are opened on bursts)
    db_pool_size: Annotated[int, Field(ge=1, le=500)] = 10
    # /metrics from other than loopback: "Authorization: Bearer <metrics_token>" (none: loopback only)
    metrics_token: str | None = Field(None, repr=False, min_length=16)
    # repository maintenance (see services/maintenance.py for why these defaults)
    maintenance_prune_days: Annotated[float, Field(gt=0, le=366)] = 7.0
    maintenance_check_days: Annotated[float, Field(gt=0, le=366)] = 28.0
    # alerts: the SMTP server for email alerts (none: email channels fail and say so)
    smtp_host: str | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_sender: str = "e3backup@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = Field(None, repr=False)
    alert_offline_minutes: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, got {value!r}")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("TLS needs both a certificate and a key file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certfile is not None

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'e3backup.db'}"

    def load_secret(self) -> bytes:
        """The server secret, creating the key file on first start. Raises UsageError if weak."""
        if self.secret_key is not None:
            check_secret(self.secret_key)
            return self.secret_key.encode()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.data_dir / SECRET_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48) + "\n")
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"{path}: secret key file must not be readable by others (chmod 600)")
        value = path.read_text().strip()
        check_secret(value, str(path))
        return value.encode()


def check_secret(value: str, where: str = "secret_key") -> None:
    if len(value) < MIN_SECRET_LENGTH:
        raise UsageError(f"{where}: secret key too short ({len(value)} < {MIN_SECRET_LENGTH} characters)")
    lowered = value.lower()
    if any(lowered.startswith(w) for w in _WEAK_SECRETS) or len(set(value)) < 8:
        raise UsageError(f"{where}: secret key looks like a default or weak value; generate a random one")


__all__ = ["Settings", "check_secret"]
