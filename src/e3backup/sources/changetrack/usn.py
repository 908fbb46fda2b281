"""The NTFS USN change journal (``$Extend\\$UsnJrnl``): which MFT records it names since a USN.

Windows appends a record to the ``$J`` stream of ``$UsnJrnl`` for every change to a file (data
overwritten or extended, created, deleted, renamed, attributes, security...). A record's USN is
its byte offset in ``$J``; old records are cut off the front (that part becomes sparse) as the
journal reaches its maximum size. The ``$Max`` stream holds the journal's size limits, its ID
(a new ID every time the journal is deleted and created again) and the lowest valid USN.

Record layouts (little-endian), from Microsoft's "USN_RECORD_V2 structure (winioctl.h)",
"USN_RECORD_V3 structure (winioctl.h)" and "USN_RECORD_V4 structure (winioctl.h)"; the
``USN_RECORD_COMMON_HEADER`` (RecordLength u32, MajorVersion u16, MinorVersion u16) is shared:

    V2: FileReferenceNumber u64 at 8, ParentFileReferenceNumber u64 at 16, Usn i64 at 24,
        TimeStamp at 32, Reason u32 at 40, SourceInfo, SecurityId, FileAttributes,
        FileNameLength u16 at 56, FileNameOffset u16 at 58, FileName at 60
    V3: FileReferenceNumber FILE_ID_128 at 8, ParentFileReferenceNumber FILE_ID_128 at 24,
        Usn i64 at 40, TimeStamp, Reason u32 at 56, ..., FileNameLength u16 at 72,
        FileNameOffset u16 at 74, FileName at 76
    V4: FileReferenceNumber FILE_ID_128 at 8, ParentFileReferenceNumber FILE_ID_128 at 24,
        Usn i64 at 40, Reason u32 at 48, ..., Extents at 64 (16 bytes each; range tracking,
        written besides a V3 record; sizeof 80)

Records are 8-byte aligned; Windows starts a record that would not fit on the rest of a 4 KiB
page of ``$J`` on the next page and zero-fills the gap (a zero RecordLength: skip to the page end).
An NTFS file reference is the MFT record number (low 48 bits) and the record's
sequence number (high 16 bits); FILE_ID_128 holds the same 64 bits in its low half.

``$Max`` (32 bytes; the on-disk form of ``USN_JOURNAL_DATA``'s MaximumSize, AllocationDelta,
UsnJournalID and LowestValidUsn, in that order, as the Linux-NTFS project documents ``$UsnJrnl``).

A journal serves an incremental only when it is *continuous* since the parent: the same journal
ID, and nothing between the parent's next USN and now cut off (the first USN still present is
not beyond the parent's next USN). Anything unexpected raises ``LayoutError``: the caller then
compares the whole MFT, as without a journal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from e3backup.sources.errors import LayoutError

PAGE = 4096
REF_MASK = (1 << 48) - 1
JOURNAL_NAME = "$UsnJrnl"
STREAM_J = "$J"
STREAM_MAX = "$Max"
MAX_BYTES = 32
MAX_JOURNAL_READ = 1 << 30  # a bound on the journal read for one backup (Windows' default is 32 MiB)
_HEADER = {2: 60, 3: 76, 4: 80}  # fixed part of each record version, before the file name / extents
_USN_AT = {2: 24, 3: 40, 4: 40}


@dataclass(frozen=True)
class JournalInfo:
    """A journal as found on the volume now."""

    journal_id: int
    first_usn: int  # the first USN still in ``$J`` (lower ones were cut off)
    next_usn: int  # where the next record will go (the size of ``$J``)

    def stored(self) -> dict[str, int | str]:
        """The part kept with the snapshot (the next backup reads from ``next_usn``)."""
        return {"journal_id": f"{self.journal_id:016X}", "next_usn": self.next_usn}


def parse_max(raw: bytes) -> tuple[int, int]:
    """(journal ID, lowest valid USN) from the ``$Max`` stream."""
    if len(raw) < MAX_BYTES:
        raise LayoutError(f"USN journal: $Max holds {len(raw)} bytes, not {MAX_BYTES}")
    _max_size, _delta, journal_id, lowest = struct.unpack_from("<QQQq", raw, 0)
    if lowest < 0:
        raise LayoutError(f"USN journal: negative lowest valid USN {lowest}")
    return journal_id, lowest


def continuity(parent: dict[str, int | str] | None, now: JournalInfo) -> str | None:
    """Why the journal cannot narrow this incremental (None: it is continuous since the parent)."""
    if parent is None:
        return "the parent image has no USN journal position"
    try:
        parent_id = int(str(parent["journal_id"]), 16)
        parent_next = int(parent["next_usn"])
    except (KeyError, ValueError) as e:
        return f"the parent's USN journal position is unreadable ({e})"
    if parent_id != now.journal_id:
        return f"the USN journal was recreated (ID {parent_id:016X} -> {now.journal_id:016X})"
    if now.first_usn > parent_next:
        return f"the USN journal wrapped (records from USN {parent_next} to {now.first_usn} were cut off)"
    if now.next_usn < parent_next:
        return f"the USN journal is behind the parent (next USN {now.next_usn} < {parent_next})"
    if now.next_usn - parent_next > MAX_JOURNAL_READ:
        return f"the USN journal grew by {now.next_usn - parent_next} bytes since the parent (more than we read)"
    return None


def named_records(data: bytes | bytearray | memoryview, start_usn: int) -> set[int]:
    """MFT record numbers of every USN record in ``data`` (``$J`` from ``start_usn`` on)."""
    view = memoryview(data)
    out: set[int] = set()
    pos = 0
    while pos + 8 <= len(view):
        length, major = struct.unpack_from("<IH", view, pos)
        if length == 0:  # the zero-filled rest of a page
            pos = (start_usn + pos) // PAGE * PAGE + PAGE - start_usn
            continue
        usn = start_usn + pos
        fixed = _HEADER.get(major)
        if fixed is None:
            raise LayoutError(f"USN journal: record at USN {usn} has version {major}, not 2, 3 or 4")
        if length < fixed or length % 8 or pos + length > len(view):
            raise LayoutError(f"USN journal: record at USN {usn} has a bad length {length}")
        (stored_usn,) = struct.unpack_from("<q", view, pos + _USN_AT[major])
        if stored_usn != usn:
            raise LayoutError(f"USN journal: record at offset {usn} says USN {stored_usn}")
        (ref,) = struct.unpack_from("<Q", view, pos + 8)  # V3/V4: the low half of FILE_ID_128
        out.add(ref & REF_MASK)
        pos += length
    return out


__all__ = [
    "JOURNAL_NAME",
    "STREAM_J",
    "STREAM_MAX",
    "JournalInfo",
    "continuity",
    "named_records",
    "parse_max",
]
