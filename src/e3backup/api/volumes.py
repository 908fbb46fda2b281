"""The volume forms a disk image job may name (``disk_source_volume``), as the seeds use them.

One parser for the server's job validation, the agent's run validation and the agent's engine
edge, so that a form is accepted (or refused) the same way everywhere:

    C:  C:\\                       a Windows drive letter
    \\\\?\\Volume{GUID}\\             a Windows volume GUID path
    \\\\.\\PhysicalDrive0             a Windows physical disk
    /dev/sda  /dev/vg0/root       a Linux block device

Windows forms are valid jobs; an agent on another platform fails such a run with an event that
names its platform (``agent.image_options``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_VOLUME_LEN = 1024

_DRIVE = re.compile(r"^([A-Za-z]):\\?$")
_GUID = re.compile(
    r"^\\\\\?\\Volume\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}\\?$"
)
_PHYSICAL = re.compile(r"^\\\\\.\\PhysicalDrive[0-9]{1,3}$", re.IGNORECASE)
_DEVICE = re.compile(r"^/dev/[A-Za-z0-9._+:@-]+(/[A-Za-z0-9._+:@-]+)*$")

EXAMPLES = r"C:, C:\, \\?\Volume{GUID}\, \\.\PhysicalDrive0 or /dev/sda"


class VolumeKind(StrEnum):
    WINDOWS_DRIVE = "windows-drive"
    WINDOWS_VOLUME = "windows-volume"
    WINDOWS_DISK = "windows-disk"
    DEVICE = "device"


@dataclass(frozen=True)
class Volume:
    text: str
    kind: VolumeKind

    @property
    def windows(self) -> bool:
        return self.kind is not VolumeKind.DEVICE


def parse_volume(text: str) -> Volume:
    """The volume ``text`` names; ``ValueError`` saying which forms are accepted otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a volume is required ({EXAMPLES})")
    if len(text) > MAX_VOLUME_LEN or "\x00" in text:
        raise ValueError("not a volume (too long, or a NUL byte)")
    if _DRIVE.match(text):
        return Volume(text, VolumeKind.WINDOWS_DRIVE)
    if _GUID.match(text):
        return Volume(text, VolumeKind.WINDOWS_VOLUME)
    if _PHYSICAL.match(text):
        return Volume(text, VolumeKind.WINDOWS_DISK)
    if _DEVICE.match(text) and ".." not in text.split("/"):
        return Volume(text, VolumeKind.DEVICE)
    raise ValueError(f"{text!r} is not a volume: use {EXAMPLES}")


__all__ = ["EXAMPLES", "Volume", "VolumeKind", "parse_volume"]
