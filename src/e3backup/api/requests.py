"""What a restore or maintenance command asks for, as the agent receives it in ``next_run``.

The server keeps a command's payload (plus its ``type``) as the run's ``restore`` object; the
agent reads it with these models before anything runs, so a misspelt or mistyped key is refused
with the field's name (``RUN_REFUSED``) instead of being ignored. Where the agent may write
(restore roots, allowed devices) is the agent's own check, on top of these.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from e3backup.api.common import DiskImageFormat, Id

MAX_PATHS = 1000
MAX_PATH_LEN = 4096

_Path = Annotated[str, Field(min_length=1, max_length=MAX_PATH_LEN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestoreRequest(_Request):
    """A files restore (``target_path`` + optional ``paths``) or a disk image restore (to a file,
    ``target_path``, or onto a device, ``target_disk``)."""

    type: Literal["restore", "hyperv_restore", "bare_metal"] = "restore"
    snapshot_id: Annotated[str, Field(min_length=1, max_length=4096)] = Field(
        ..., description="A snapshot ID (hex), or 'latest'; files: optionally ':sub/path'."
    )
    target_path: _Path | None = None
    target_disk: Annotated[str, Field(max_length=MAX_PATH_LEN)] | None = None
    paths: list[_Path] = Field(default_factory=list, max_length=MAX_PATHS,
                               description="Files restore: only these paths of the snapshot.")
    conflict: Literal["overwrite", "skip", "keep_both"] = Field(
        "overwrite", description="Files restore: an existing file is overwritten, left alone, or kept beside "
        "the restored one ('name (restored).ext')."
    )
    verify: StrictBool = Field(True, description="Read back and compare what was written.")
    format: DiskImageFormat | None = Field(None, description="Image restore to a file: raw or vhdx.")
    discard: StrictBool = Field(False, description="Image restore to a device: discard unused blocks.")
    force: StrictBool = Field(False, description="Image restore: overwrite an existing target.")
    source_run_id: Id | None = Field(None, description="The backup run the dashboard restores from.")
    # hyperv_restore: the VM backup is the one ``snapshot_id`` belongs to (any of its snapshots),
    # or VM ``vm`` at ``checkpoint_id`` (snapshot_id 'latest')
    vm: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(None, description="Hyper-V: VM name or ID.")
    checkpoint_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    disk: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="Hyper-V: restore only this disk (identifier or file name)."
    )
    register_vm: Literal["none", "new", "replace"] = Field(
        "none", description="Hyper-V: import the restored VM as a new VM, or in place of the original."
    )
    confirm_replace: StrictBool = Field(False, description="Hyper-V: confirms register_vm=replace.")
    vm_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None


MAINTENANCE_MODES = ("quick", "full")


class MaintenanceRequest(_Request):
    """``quick``: forget by the job's retention and delete unused packs; ``full``: also repack
    and check the repository."""

    type: Literal["maintenance"] = "maintenance"
    mode: Literal["quick", "full"] = "quick"
    forget: StrictBool = Field(
        True, description="Forget by the job's retention first; the server's scheduled prune/check says false "
        "(retention already runs after every backup, and the repository may hold several jobs)."
    )


__all__ = ["MAINTENANCE_MODES", "MaintenanceRequest", "RestoreRequest"]
