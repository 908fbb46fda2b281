"""Refuse runs and commands the agent must not carry out, before anything runs.

The server is trusted to schedule, not to point the agent anywhere: a restore target must lie
under one of the configured ``restore_roots`` (no ``..``), an image restore device must be
listed in ``allowed_devices``, a backup source must be one of ``allowed_sources`` (or below one;
unset: anything), a local repository must lie under ``local_destination_roots``, and sizes and
counts must be sane. Paths are compared after resolving symbolic links, so a link inside an
allowed directory does not lead out of it. A refusal is a
``RUN_REFUSED`` event naming the field and the reason, and a failed run. Restore and
maintenance requests are read into their ``api.requests`` models here: the engines get typed
values, never the payload dict.
"""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..api.agent import RunAssignment
from ..api.common import Engine, RunKind
from ..api.requests import MAINTENANCE_MODES as MODES
from ..api.requests import MaintenanceRequest, RestoreRequest
from ..api.volumes import parse_volume
from .client import AgentError
from .config import AgentConfig

MAX_PATHS = 1000
MAX_EXCLUDES = 10_000
MAX_PATH_LEN = 4096
MAX_RESTORE_KEYS = 32
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{1,64}$|^latest$")
R = TypeVar("R", bound=BaseModel)


class RunRefused(AgentError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.field, self.reason))


def _path(field: str, value: Any, *, absolute: bool = True) -> str:
    if not isinstance(value, str) or not value:
        raise RunRefused(field, "must be a non-empty string")
    if len(value) > MAX_PATH_LEN:
        raise RunRefused(field, f"longer than {MAX_PATH_LEN} characters")
    if "\x00" in value:
        raise RunRefused(field, "contains a NUL byte")
    if ".." in re.split(r"[\\/]", value):
        raise RunRefused(field, "contains a '..' component")
    if absolute and not (value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value) or value.startswith("\\\\")):
        raise RunRefused(field, "must be an absolute path")
    return value


def _under(path: str, roots: list[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(root)
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def _windows(path: str) -> bool:
    return bool(re.match(r"^[A-Za-z]:", path)) or path.startswith("\\\\")


def _allowed(value: str, entries: list[str]) -> bool:
    """``value`` is one of ``entries`` or below one (Windows forms compared without case)."""
    if _windows(value):
        v = value.replace("/", "\\").rstrip("\\").lower()
        wins = [e.replace("/", "\\").rstrip("\\").lower() for e in entries if _windows(e)]
        return any(v == e or v.startswith(e + "\\") for e in wins)
    return _under(value, [e for e in entries if not _windows(e)])


def validate_destination(run: RunAssignment, config: AgentConfig) -> None:
    """A local repository only under ``local_destination_roots`` (any kind of run: backups and
    prunes write there, restores read)."""
    dest = run.destination
    if getattr(dest, "type", "") != "local":
        return
    path = _path("destination.path", getattr(dest, "path", ""))
    if not _allowed(path, config.local_destination_roots):
        raise RunRefused(
            "destination.path",
            f"{path} is outside this agent's local_destination_roots ({', '.join(config.local_destination_roots)})",
        )


def validate_backup(run: RunAssignment, config: AgentConfig | None = None) -> None:
    """Sizes and forms; with ``config``, its ``allowed_sources`` too."""
    paths = run.source_paths or ([run.source_path] if run.source_path else [])
    if run.engine in (Engine.FILES, Engine.SYNC):
        if not paths:
            raise RunRefused("source_paths", "no source path given")
        if len(paths) > MAX_PATHS:
            raise RunRefused("source_paths", f"more than {MAX_PATHS} paths")
        for i, p in enumerate(paths):
            _path(f"source_paths.{i}", p)
    if len(run.exclude) > MAX_EXCLUDES:
        raise RunRefused("exclude", f"more than {MAX_EXCLUDES} patterns")
    for i, pat in enumerate(run.exclude):
        if not isinstance(pat, str) or len(pat) > MAX_PATH_LEN or "\x00" in pat:
            raise RunRefused(f"exclude.{i}", "invalid pattern")
    if run.engine is Engine.DISK_IMAGE:
        try:  # every form the server accepts (``api.volumes``); a Windows one on Linux fails later
            parse_volume(run.disk_source_volume or "")  # with ENGINE_UNAVAILABLE naming the platform
        except ValueError as e:
            raise RunRefused("disk_source_volume", str(e)) from None
    if config is not None and config.allowed_sources is not None:
        sources = [("disk_source_volume", run.disk_source_volume or "")] if run.engine is Engine.DISK_IMAGE else []
        if run.engine in (Engine.FILES, Engine.SYNC):
            sources = [(f"source_paths.{i}", p) for i, p in enumerate(paths)]
        for field_name, source in sources:
            if not _allowed(source, config.allowed_sources):
                raise RunRefused(field_name, f"{source} is not in this agent's allowed_sources")


def _request(model: type[R], run: RunAssignment) -> R:
    try:
        return model.model_validate(run.restore or {})
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RunRefused(f"restore.{loc}" if loc else "restore", first["msg"]) from None


def validate_restore(run: RunAssignment, config: AgentConfig) -> RestoreRequest:
    """The restore request, checked against where this agent may write; returns it."""
    if len(run.restore or {}) > MAX_RESTORE_KEYS:
        raise RunRefused("restore", "too many options")
    req = _request(RestoreRequest, run)
    snap = req.snapshot_id
    if not SNAPSHOT_ID.match(snap.split(":", 1)[0]):
        raise RunRefused("restore.snapshot_id", "must be a snapshot ID (hex) or 'latest'")
    if ":" in snap:
        _path("restore.snapshot_id", "/" + snap.split(":", 1)[1].lstrip("/"))
    if run.engine is Engine.DISK_IMAGE and req.paths and (req.target_disk or req.format or req.discard):
        raise RunRefused("restore.paths", "picked files of an image restore into a folder (target_path), not with "
                         "target_disk, format or discard")
    if run.engine is Engine.DISK_IMAGE and not req.paths:  # the whole image, to a file or a device
        target = req.target_disk or req.target_path
        field = "restore.target_disk" if req.target_disk else "restore.target_path"
        _path(field, target)
        if req.target_disk:
            if target not in config.allowed_devices:
                raise RunRefused(field, f"{target} is not in this agent's allowed_devices")
        elif not _under(str(target), config.restore_roots):
            raise RunRefused(field, f"{target} is outside this agent's restore roots")
        return req
    target = _path("restore.target_path", req.target_path)  # files, or picked files of an image
    if not _under(target, config.restore_roots):
        raise RunRefused("restore.target_path", f"{target} is outside this agent's restore roots")
    for i, p in enumerate(req.paths):
        _path(f"restore.paths.{i}", p, absolute=False)
    return req


def validate_maintenance(run: RunAssignment) -> MaintenanceRequest:
    mode = (run.restore or {}).get("mode", "quick")
    if mode not in MODES:
        raise RunRefused("restore.mode", f"unknown maintenance mode {mode!r} (use {' or '.join(MODES)})")
    return _request(MaintenanceRequest, run)


def validate_run(run: RunAssignment, config: AgentConfig) -> None:
    validate_destination(run, config)
    if run.kind is RunKind.BACKUP:
        validate_backup(run, config)
    elif run.kind is RunKind.RESTORE:
        validate_restore(run, config)
    else:
        validate_maintenance(run)


__all__ = [
    "RunRefused",
    "validate_backup",
    "validate_destination",
    "validate_maintenance",
    "validate_restore",
    "validate_run",
]
