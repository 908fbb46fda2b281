"""Where a dashboard restore may go: picked from what the target agent reported, never guessed.

An agent reports its ``restore_roots`` and ``allowed_devices`` with its disk list
(``api.agent.DiskReport``). A restore form names one of those roots (plus an optional
sub-folder, or for an image the file name), or one of those devices; this module turns the
choice into the restore request's ``target_path`` or ``target_disk``, refusing with the field's
name anything the agent would refuse anyway (the agent checks again: the server only schedules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from e3backup.server.db.models import Agent
from e3backup.server.errors import FieldError

MAX_SUB = 1024
KINDS = ("folder", "file", "device")
FORMATS = ("raw", "vhdx")


@dataclass(frozen=True)
class AgentTargets:
    """The restore roots and devices an agent reported (empty: it never said)."""

    restore_roots: list[str]
    allowed_devices: list[str]
    device_sizes: dict[str, int]

    @classmethod
    def of(cls, agent: Agent) -> AgentTargets:
        disks: dict[str, Any] = agent.disks or {}
        sizes = {str(d.get("path")): int(d.get("size_bytes") or 0) for d in disks.get("disks", [])}
        return cls(
            restore_roots=[str(r) for r in disks.get("restore_roots", [])],
            allowed_devices=[str(d) for d in disks.get("allowed_devices", [])],
            device_sizes=sizes,
        )


def relative_part(field: str, value: str, *, required: bool = False) -> list[str]:
    """A path below a root, as components: no ``..``, no absolute path, no NUL."""
    value = value.strip()
    if not value:
        if required:
            raise FieldError(field, "give a name")
        return []
    if len(value) > MAX_SUB:
        raise FieldError(field, f"longer than {MAX_SUB} characters")
    if "\x00" in value:
        raise FieldError(field, "contains a NUL byte")
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise FieldError(field, "must be relative to the chosen restore folder")
    parts = [p for p in re.split(r"[\\/]+", value) if p and p != "."]
    if ".." in parts:
        raise FieldError(field, "must not contain '..'")
    return parts


def join(root: str, parts: list[str]) -> str:
    """``parts`` below ``root``, with the separator of the root's form (a drive or UNC root: ``\\``)."""
    if not parts:
        return root
    sep = "\\" if re.match(r"^[A-Za-z]:", root) or root.startswith("\\\\") else "/"
    return root.rstrip("\\/") + sep + sep.join(parts)


def restore_target(
    targets: AgentTargets, engine: str, kind: str, root: str, sub: str, disk: str, image_format: str
) -> dict[str, Any]:
    """The restore request's target fields for the form's choice (``FieldError`` naming the field)."""
    if engine != "disk_image" and kind != "folder":
        raise FieldError("target_kind", "a files snapshot is restored into a folder")
    if kind not in KINDS:
        raise FieldError("target_kind", f"choose one of {', '.join(KINDS)}")
    if kind == "device":
        if not targets.allowed_devices:
            raise FieldError("target_disk", "this agent allows no device for restores (allowed_devices is empty "
                             "in its configuration)")
        if disk not in targets.allowed_devices:
            raise FieldError("target_disk", f"choose one of this agent's allowed devices: "
                             f"{', '.join(targets.allowed_devices)}")
        return {"target_disk": disk, "format": "raw"}
    if not targets.restore_roots:
        raise FieldError("target_root", "this agent has not reported any restore folder (restore_roots); "
                         "refresh its disk list or check its configuration")
    if root not in targets.restore_roots:
        raise FieldError("target_root", f"choose one of this agent's restore folders: "
                         f"{', '.join(targets.restore_roots)}")
    parts = relative_part("target_sub", sub, required=kind == "file")
    out: dict[str, Any] = {"target_path": join(root, parts)}
    if kind == "file":
        if image_format not in FORMATS:
            raise FieldError("image_format", f"choose {' or '.join(FORMATS)}")
        out["format"] = image_format
    return out


__all__ = ["FORMATS", "KINDS", "AgentTargets", "join", "relative_part", "restore_target"]
