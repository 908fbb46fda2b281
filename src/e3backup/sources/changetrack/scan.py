"""What a file-system scan gives the tracker: digests now, and the bytes that must be read."""

from __future__ import annotations

from dataclasses import dataclass, field

from e3backup.sources.changetrack.digest import Digests
from e3backup.sources.changetrack.state import Identity
from e3backup.sources.extents import ExtentList

SLICE_BYTES = 8 << 20  # metadata read and digested at a time: bounds memory whatever the volume


@dataclass(frozen=True)
class FsScan:
    """One scan of a file system (all offsets in bytes from the partition start).

    ``metadata``: read at every backup (boot sectors, allocation bitmaps, the MFT or inode
    tables, journals, directories...). ``changed``: the data of records whose digest differs
    from the parent's (empty when there was nothing to compare with, see ``compared``).
    """

    identity: Identity
    digests: Digests = field(repr=False)
    metadata: ExtentList
    changed: ExtentList
    records_changed: int
    compared: bool
    journal: dict[str, int | str] | None = None  # NTFS: the USN journal's position now, kept for the next scan
    usn: str | None = None  # the USN journal named the changed records: how (None: MFT compare alone)
    usn_unused: str | None = None  # why a USN journal did not serve (None: there is none, or it did)

    @property
    def to_read(self) -> ExtentList:
        return self.metadata | self.changed


def describe_identity_change(old: Identity, new: Identity) -> str | None:
    """``"serial 1a2b -> 3c4d, size 100 -> 200"`` for the keys that differ; None when equal."""
    diffs = [f"{k} {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(diffs) or None


__all__ = ["SLICE_BYTES", "FsScan", "describe_identity_change"]
