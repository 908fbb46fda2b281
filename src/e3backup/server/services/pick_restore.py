"""Picked files and folders of a snapshot, restored where the user chose: the restore request
for the agent, and the preview of where each picked entry lands.

    where      snapshot_id        target_path                         a picked path p lands at
    original   ID:base            the original folder of ``base``      its original place
    folder     ID                 restore folder / sub-folder          target / full path of p
    (keep parents off) ID:base    restore folder / sub-folder          target / p below base

``paths`` go to the agent as include patterns of full snapshot paths, with the pattern
characters of names escaped, so a name like ``[draft]*.txt`` selects exactly that file.

From a disk image snapshot (``image``), paths start with a partition (``1-root/etc/hosts``) and
go as they are (the agent's ``restore.image_files`` reads them through the partition's file
system, not as patterns); they restore into a restore folder only, since a partition has no
original folder on a machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from e3backup.server.errors import FieldError
from e3backup.server.services.browse import split
from e3backup.server.services.restore_targets import AgentTargets, join, relative_part

WHERE = ("original", "folder")
CONFLICTS = ("overwrite", "keep_both", "skip")
PREVIEW_MAX = 50


@dataclass(frozen=True)
class PickChoice:
    base: str
    paths: list[str]
    where: str = "folder"
    target_root: str = ""
    target_sub: str = ""
    keep_parents: bool = False
    conflict: str = "keep_both"


def escape_pattern(path: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", path)


def original_folder(parts: list[str], windows: bool) -> str:
    """Where ``/a/b`` of a snapshot was on its machine (``/C/Users`` of a Windows one: ``C:\\Users``)."""
    if windows and parts and re.fullmatch(r"[A-Za-z]", parts[0]):
        return parts[0].upper() + ":\\" + "\\".join(parts[1:])
    return "/" + "/".join(parts)


def _below(path: str, root: str) -> bool:
    if re.match(r"^[A-Za-z]:|^\\\\", root):
        path, root = path.lower().replace("/", "\\"), root.lower().replace("/", "\\")
        return path == root.rstrip("\\") or path.startswith(root.rstrip("\\") + "\\")
    return path == root or path.startswith(root.rstrip("/") + "/")


def restore_request(snapshot_id: str, choice: PickChoice, targets: AgentTargets,
                    windows: bool, image: bool = False) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The restore payload and the (picked path, where it lands) preview; ``FieldError`` else."""
    if not choice.paths:
        raise FieldError("paths", "select at least one file or folder")
    base = split(choice.base)
    picked = [split(p) for p in choice.paths]
    for p in picked:
        if p[: len(base)] != base or len(p) <= len(base):
            raise FieldError("paths", f"/{'/'.join(p)} is not inside /{'/'.join(base)}")
    if choice.where not in WHERE:
        raise FieldError("where", f"choose one of {', '.join(WHERE)}")
    if choice.conflict not in CONFLICTS:
        raise FieldError("conflict", f"choose one of {', '.join(CONFLICTS)}")
    keep = choice.keep_parents and choice.where == "folder"
    if image and choice.where == "original":
        raise FieldError("where", "files of a disk image's partition have no original folder on a machine: "
                         "choose a restore folder")
    if choice.where == "original":
        target = original_folder(base, windows)
        if not any(_below(target, root) for root in targets.restore_roots):
            raise FieldError("where", f"the original folder {target} is outside this agent's restore folders "
                             f"({', '.join(targets.restore_roots) or 'none reported'}): it would refuse it")
    else:
        if not targets.restore_roots:
            raise FieldError("target_root", "this agent has not reported any restore folder (restore_roots)")
        if choice.target_root not in targets.restore_roots:
            raise FieldError("target_root", f"choose one of this agent's restore folders: "
                             f"{', '.join(targets.restore_roots)}")
        target = join(choice.target_root, relative_part("target_sub", choice.target_sub))
    sub = "" if keep or not base else ":" + "/".join(base)
    payload: dict[str, Any] = {
        "snapshot_id": snapshot_id + sub,
        "target_path": target,
        "paths": ["/" + "/".join(p) if image else escape_pattern("/" + "/".join(p)) for p in picked],
        "conflict": choice.conflict,
    }
    preview = [("/" + "/".join(p), join(target, p if keep else p[len(base):])) for p in picked[:PREVIEW_MAX]]
    return payload, preview


__all__ = ["CONFLICTS", "PREVIEW_MAX", "WHERE", "PickChoice", "escape_pattern", "original_folder",
           "restore_request"]
