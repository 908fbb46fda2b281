"""NTFS change tracking by MFT compare: digests of every ``$MFT`` record, data runs of changed ones.

The ``$MFT`` is read slice by slice through its own run list (record 0). Every record gets a
digest of its raw bytes (``digest.py``): the header (sequence number, flags, ``$LogFile``
sequence number, update sequence number), ``$STANDARD_INFORMATION`` times, ``$FILE_NAME``\\ s,
the attribute list, sizes and run lists, resident data. Any write of a record changes it.

Read at every backup (``metadata``), because their bytes change without their record changing:
both boot sectors, and every non-resident attribute of the system files (records 0-23: ``$MFT``
and its bitmap, ``$MFTMirr``, ``$LogFile``, ``$Bitmap``, ``$Boot``, ``$Secure``, ``$UpCase``,
``$Extend``...), of every record under ``$Extend`` (found by walking its indexes: ``$UsnJrnl``,
``$ObjId``, ``$Quota``, ``$Reparse``, ``$RmMetadata`` with the transaction logs), and of every
record flagged as holding an index (directories' index allocations, view indexes) or as an
``$Extend`` system file. Read because they changed (``changed``): every non-resident attribute of
every record whose digest differs from the parent's, together with the other records of the same
file (base record and extension records), so a file whose runs sit in an extension record is
covered when only its base record's times moved. Clusters freed or newly allocated also show in
``$Bitmap`` (the plan difference); clusters freed and reused belong to a record that changed.

**USN journal** (``usn.py``). Where ``$Extend\\$UsnJrnl`` exists its position (journal ID, next
USN) is kept with the digests. When the parent kept one and the journal is continuous since (same
ID, nothing cut off), the records it names since the parent's USN are the changed records
(method ``ntfs-usn``), with one safeguard that keeps the answer the MFT compare's: every
non-metadata record whose digest differs must be named (with its base record) in the journal.
A record changed without a journal entry (a volume written where no journal is kept: Linux,
an offline tool; an access-time update) makes this run an MFT compare with the reason. Records
named whose digest did not change are read too (a change the record does not show).

Not handled (``LayoutError`` -> a full read): an ``$MFT`` whose own run list continues in an
extension record (a heavily fragmented MFT), torn records among those that must be parsed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from e3backup.sources.changetrack import usn
from e3backup.sources.changetrack.digest import Digests, record_digests
from e3backup.sources.changetrack.scan import SLICE_BYTES, FsScan
from e3backup.sources.changetrack.state import Identity
from e3backup.sources.device import ByteSource
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.ntfs import (
    ATTR_DATA,
    ATTR_END,
    BootSector,
    Run,
    apply_fixups,
    decode_runs,
    parse_boot_sector,
    read_boot_sector,
)

FLAG_IN_USE = 0x01
FLAG_INDEX_PRESENT = 0x02  # a directory: $INDEX_ROOT/$INDEX_ALLOCATION named $I30
FLAG_EXTEND_FILE = 0x04  # a system file in $Extend ($UsnJrnl, $ObjId, $Quota, $Reparse...)
FLAG_VIEW_INDEX = 0x08  # another index ($Secure's $SDH/$SII, $ObjId's $O...)
METADATA_FLAGS = FLAG_INDEX_PRESENT | FLAG_EXTEND_FILE | FLAG_VIEW_INDEX
SYSTEM_RECORDS = 24  # records 0-23 are reserved for the system files
REF_MASK = (1 << 48) - 1
EXTEND_RECORD = 11  # $Extend: the directory of the newer system files
ATTR_FILE_NAME = 0x30
ATTR_INDEX_ROOT = 0x90
ATTR_INDEX_ALLOCATION = 0xA0
ENTRY_LAST = 0x02
MAX_EXTEND_FILES = 4096  # a bound on the walk of $Extend, against a looping (damaged) index


def _boot(source: ByteSource) -> tuple[BootSector, str]:
    boot = read_boot_sector(source)
    raw = source.read_at(0, 512)
    if boot.from_backup:
        raw = source.read_at(source.size - boot.bytes_per_sector, 512)
        parse_boot_sector(raw)
    return boot, f"{struct.unpack_from('<Q', raw, 0x48)[0]:016X}"


def identity(source: ByteSource) -> Identity:
    """What must stay the same for two scans' digests to be comparable."""
    boot, serial = _boot(source)
    return {
        "serial": serial,
        "cluster_size": boot.cluster_size,
        "total_sectors": boot.total_sectors,
        "record_size": boot.mft_record_size,
        "mft_lcn": boot.mft_lcn,
    }


def _attributes(record: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, attribute bytes) of a fixed-up record."""
    pos = struct.unpack_from("<H", record, 0x14)[0]
    while pos + 8 <= len(record):
        atype, alen = struct.unpack_from("<II", record, pos)
        if atype == ATTR_END:
            return
        if alen < 16 or pos + alen > len(record):
            raise LayoutError(f"MFT record: attribute at {pos} runs past the record")
        yield atype, record[pos : pos + alen]
        pos += alen
    raise LayoutError("MFT record: no end marker")


def _nonresident_runs(attr: bytes) -> list[Run]:
    (mp_off,) = struct.unpack_from("<H", attr, 0x20)
    if not 0x40 <= mp_off <= len(attr):
        raise LayoutError("MFT record: mapping pairs offset out of range")
    return decode_runs(attr[mp_off:])


def record_clusters(raw: bytes, cluster_count: int) -> list[tuple[int, int]]:
    """(first cluster, count) of every non-resident attribute of one raw (not fixed-up) record."""
    record = bytes(apply_fixups(bytearray(raw)))
    out = []
    for _atype, attr in _attributes(record):
        if not attr[8]:
            continue
        for run in _nonresident_runs(attr):
            if run.lcn is None:
                continue
            if run.lcn < 0 or run.lcn + run.length > cluster_count + 1:
                raise LayoutError(f"MFT record: run at cluster {run.lcn} (+{run.length}) is outside the volume")
            out.append((run.lcn, run.length))
    return out


def _fixed_up(block: bytearray, magic: bytes) -> bytearray:
    """Apply an update sequence array to an index block (``INDX``), as for MFT records."""
    if block[:4] != magic:
        raise LayoutError(f"NTFS index block: bad magic {bytes(block[:4])!r}")
    usa_off, usa_count = struct.unpack_from("<HH", block, 4)
    if usa_count == 0 or usa_off + 2 * usa_count > len(block) or (usa_count - 1) * 512 > len(block):
        raise LayoutError("NTFS index block: update sequence array out of bounds")
    for i in range(1, usa_count):
        end = i * 512
        if block[end - 2 : end] != block[usa_off : usa_off + 2]:
            raise LayoutError(f"NTFS index block: torn write (fixup {i} does not match)")
        block[end - 2 : end] = block[usa_off + 2 * i : usa_off + 2 * i + 2]
    return block


def _index_entries(data: bytes | bytearray, start: int, end: int) -> list[int]:
    """MFT record numbers named by the index entries in ``data[start:end]``."""
    out, pos = [], start
    while pos + 16 <= min(end, len(data)):
        ref, length, _key_len, flags = struct.unpack_from("<QHHI", data, pos)
        if flags & ENTRY_LAST or length < 16:
            break
        out.append(ref & REF_MASK)
        pos += length
    return out


def _children(source: ByteSource, cs: int, record: bytes) -> list[int]:
    """Every record an index of this (fixed-up) directory record names: the root's entries and
    those of every block of its index allocation (stale blocks only add records, never hide one)."""
    out: list[int] = []
    block_size = 0
    for atype, attr in _attributes(record):
        if atype == ATTR_INDEX_ROOT and not attr[8]:
            vlen, voff = struct.unpack_from("<IH", attr, 0x10)
            value = attr[voff : voff + vlen]
            block_size = struct.unpack_from("<I", value, 8)[0]
            first, used = struct.unpack_from("<II", value, 0x10)
            out += _index_entries(value, 0x10 + first, 0x10 + used)
        elif atype == ATTR_INDEX_ALLOCATION and attr[8]:
            (size,) = struct.unpack_from("<Q", attr, 0x30)
            data = _read_stream(source, _nonresident_runs(attr), cs, 0, size)
            step = block_size or 4096
            for off in range(0, len(data) - step + 1, step):
                block = data[off : off + step]
                if block[:4] != b"INDX":
                    continue  # never used
                block = _fixed_up(block, b"INDX")
                first, used = struct.unpack_from("<II", block, 0x18)
                out += _index_entries(block, 0x18 + first, 0x18 + used)
    return out


def _extend_files(source: ByteSource, runs: list[Run], cs: int, rs: int, count: int) -> set[int]:
    """Every record under ``$Extend`` (``$UsnJrnl``, ``$RmMetadata\\$TxfLog``...): their data is
    written in place (logs, journals) and is read at every backup, whatever their flags say."""
    found: set[int] = set()
    queue = [EXTEND_RECORD]
    while queue and len(found) < MAX_EXTEND_FILES:
        n = queue.pop()
        raw = bytes(_read_stream(source, runs, cs, n * rs, rs))
        if raw[:4] != b"FILE":
            continue
        record = bytes(apply_fixups(bytearray(raw)))
        if not struct.unpack_from("<H", record, 0x16)[0] & FLAG_IN_USE:
            continue
        found.add(n)
        if struct.unpack_from("<H", record, 0x16)[0] & FLAG_INDEX_PRESENT:
            queue += [c for c in _children(source, cs, record) if c < count and c not in found]
    return found


def _attr_name(attr: bytes) -> str:
    length, offset = attr[9], struct.unpack_from("<H", attr, 0x0A)[0]
    return attr[offset : offset + 2 * length].decode("utf-16-le", "replace")


def _file_names(record: bytes) -> list[str]:
    """The names in a fixed-up record's ``$FILE_NAME`` attributes."""
    names = []
    for atype, attr in _attributes(record):
        if atype == ATTR_FILE_NAME and not attr[8]:
            voff = struct.unpack_from("<H", attr, 0x14)[0]
            value = attr[voff:]
            names.append(value[0x42 : 0x42 + 2 * value[0x40]].decode("utf-16-le", "replace"))
    return names


class _Journal:
    """``$UsnJrnl``'s ``$J`` and ``$Max`` streams, from its (fixed-up) MFT record."""

    def __init__(self, source: ByteSource, cs: int, record: bytes) -> None:
        self.source, self.cs = source, cs
        self.resident: bytes | None = None
        self.runs: list[Run] = []
        max_raw: bytes | None = None
        size: int | None = None
        for atype, attr in _attributes(record):
            if atype != ATTR_DATA or attr[9] == 0:
                continue
            name = _attr_name(attr)
            if not attr[8]:
                vlen, voff = struct.unpack_from("<IH", attr, 0x10)
                value = attr[voff : voff + vlen]
                if name == usn.STREAM_MAX:
                    max_raw = value
                elif name == usn.STREAM_J:
                    self.resident, size = value, vlen
            elif name == usn.STREAM_J:
                lowest, highest = struct.unpack_from("<qq", attr, 0x10)
                allocated, size = struct.unpack_from("<QQ", attr, 0x28)
                self.runs = _nonresident_runs(attr)
                if lowest != 0 or (highest + 1) * cs < allocated:
                    raise LayoutError("USN journal: $J continues in an extension record")
            elif name == usn.STREAM_MAX:
                raise LayoutError("USN journal: $Max is not resident")
        if max_raw is None or size is None:
            raise LayoutError("USN journal: $UsnJrnl has no $J or no $Max stream")
        journal_id, lowest_valid = usn.parse_max(max_raw)
        allocated_from = next((r.vcn * cs for r in self.runs if r.lcn is not None), size)
        first = lowest_valid if self.resident is not None else max(lowest_valid, min(allocated_from, size))
        self.info = usn.JournalInfo(journal_id, first, size)

    def read(self, start: int, end: int) -> bytes | bytearray:
        if self.resident is not None:
            return self.resident[start:end]
        return _read_stream(self.source, self.runs, self.cs, start, end - start)


def _find_journal(source: ByteSource, runs: list[Run], cs: int, rs: int, extend: set[int]) -> _Journal | None:
    for n in sorted(extend):
        record = bytes(apply_fixups(bytearray(_read_stream(source, runs, cs, n * rs, rs))))
        if usn.JOURNAL_NAME in _file_names(record):
            return _Journal(source, cs, record)
    return None


def _journal_named(
    source: ByteSource, runs: list[Run], cs: int, rs: int, extend: set[int], parent: dict[str, int | str] | None
) -> tuple[dict[str, int | str] | None, np.ndarray | None, str | None, str | None]:
    """(position to keep, records named since the parent's position or None, how, why not)."""
    try:
        journal = _find_journal(source, runs, cs, rs, extend)
    except (LayoutError, ValueError, IndexError, struct.error) as e:
        return None, None, None, f"unreadable USN journal: {e}"
    if journal is None:
        return None, None, None, ("the USN journal was deleted" if parent is not None else None)
    info = journal.info
    why = usn.continuity(parent, info)
    if why is not None or parent is None:
        return info.stored(), None, None, why
    start = int(parent["next_usn"])
    try:
        named = usn.named_records(journal.read(start, info.next_usn), start)
    except (LayoutError, ValueError, IndexError, struct.error) as e:
        return info.stored(), None, None, f"unreadable USN journal: {e}"
    how = f"USN journal {info.journal_id:016X} from USN {start} to {info.next_usn}: {len(named)} records named"
    return info.stored(), np.array(sorted(named), dtype=np.int64), how, None


def _mft_runs(source: ByteSource, boot: BootSector) -> tuple[list[Run], int]:
    """``$MFT``'s run list and data size, from record 0 at the boot sector's ``mft_lcn``."""
    cs, rs = boot.cluster_size, boot.mft_record_size
    raw = source.read_at(boot.mft_lcn * cs, rs)
    if len(raw) != rs:
        raise LayoutError("$MFT record 0 is beyond the partition end")
    record = bytes(apply_fixups(bytearray(raw)))
    for atype, attr in _attributes(record):
        if atype == ATTR_DATA and attr[9] == 0:
            if not attr[8]:
                raise LayoutError("$MFT has resident data")
            lowest, highest = struct.unpack_from("<qq", attr, 0x10)
            allocated, size = struct.unpack_from("<QQ", attr, 0x28)
            runs = _nonresident_runs(attr)
            if lowest != 0 or (highest + 1) * cs < allocated or not runs or runs[0].lcn is None:
                raise LayoutError("$MFT's run list continues in an extension record (fragmented MFT)")
            return runs, size
    raise LayoutError("$MFT record 0 has no unnamed $DATA attribute")


def _read_stream(source: ByteSource, runs: list[Run], cs: int, offset: int, length: int) -> bytearray:
    out = bytearray(length)
    for run in runs:
        start, end = run.vcn * cs, (run.vcn + run.length) * cs
        lo, hi = max(offset, start), min(offset + length, end)
        if lo >= hi or run.lcn is None:
            continue
        chunk = source.read_at(run.lcn * cs + lo - start, hi - lo)
        if len(chunk) != hi - lo:
            raise LayoutError("$MFT run points beyond the partition end")
        out[lo - offset : hi - offset] = chunk
    return out


def scan(
    source: ByteSource, parent: Digests | None = None, parent_journal: dict[str, int | str] | None = None
) -> FsScan:
    """Digest every MFT record; with ``parent``, also map the records that changed since
    (narrowed by the USN journal where it is continuous since ``parent_journal``)."""
    boot, _ = _boot(source)
    ident = identity(source)
    cs, rs, total = boot.cluster_size, boot.mft_record_size, boot.cluster_count
    runs, data_size = _mft_runs(source, boot)
    count = data_size // rs
    extend_set = _extend_files(source, runs, cs, rs, count)
    extend = np.array(sorted(extend_set), dtype=np.int64)
    journal, named, usn_how, usn_unused = _journal_named(
        source, runs, cs, rs, extend_set, parent_journal if parent is not None else None
    )
    digests = np.zeros(count, dtype=np.uint64)
    meta: list[tuple[int, int]] = [(0, 1)]
    changed_clusters: list[tuple[int, int]] = []
    named_clusters: list[tuple[int, int]] = []  # records the journal names whose digest is equal
    parsed: set[int] = set()
    named_parsed: set[int] = set()
    changed_groups: set[int] = set()
    named_groups: set[int] = set()
    ext_records: list[tuple[int, int]] = []  # (extension record, its base record)
    records_changed = named_only = 0
    missed: list[int] = []  # changed records the journal does not name
    per_slice = max(1, SLICE_BYTES // rs)
    for first in range(0, count, per_slice):
        k = min(per_slice, count - first)
        rows = np.frombuffer(_read_stream(source, runs, cs, first * rs, k * rs), dtype=np.uint8).reshape(k, rs)
        d = record_digests(rows)
        digests[first : first + k] = d
        index = np.arange(first, first + k, dtype=np.int64)
        valid = (rows[:, :4] == np.frombuffer(b"FILE", dtype=np.uint8)).all(axis=1)
        flags = rows[:, 0x16].astype(np.uint16) | (rows[:, 0x17].astype(np.uint16) << 8)
        in_use = valid & ((flags & FLAG_IN_USE) != 0)
        base = rows[:, 0x20:0x28].copy().view("<u8").ravel() & np.uint64(REF_MASK)
        is_meta = in_use & ((index < SYSTEM_RECORDS) | ((flags & METADATA_FLAGS) != 0) | np.isin(index, extend))
        for r in np.flatnonzero(is_meta):
            meta += record_clusters(rows[r].tobytes(), total)
            parsed.add(int(index[r]))
        if parent is None:
            continue
        changed = np.ones(k, dtype=bool)
        have = max(0, min(k, len(parent) - first))
        changed[:have] = parent[first : first + have] != d[:have]
        records_changed += int(changed.sum())
        extension = in_use & (base != 0)
        group = np.where(extension, base.astype(np.int64), index)
        changed_groups.update(np.unique(group[changed]).tolist())
        ext_records += zip(index[extension].tolist(), base[extension].tolist(), strict=True)
        for r in np.flatnonzero(changed & in_use & ~is_meta):
            changed_clusters += record_clusters(rows[r].tobytes(), total)
            parsed.add(int(index[r]))
        if named is not None and not missed:
            by_journal = np.isin(group, named) | np.isin(index, named)
            missed += index[changed & ~is_meta & ~by_journal][:1].tolist()
            extra = by_journal & ~changed
            named_only += int(extra.sum())
            named_groups.update(np.unique(group[extra]).tolist())
            for r in np.flatnonzero(extra & in_use & ~is_meta):
                named_clusters += record_clusters(rows[r].tobytes(), total)
                named_parsed.add(int(index[r]))
    if named is not None and missed:
        usn_how, usn_unused = (
            None,
            (
                f"the USN journal does not name MFT record {missed[0]}, which changed (written where no "
                "journal is kept, e.g. by Linux or an offline tool)"
            ),
        )
    elif named is not None:
        changed_clusters += named_clusters
        changed_groups |= named_groups
        parsed |= named_parsed
        records_changed += named_only
    if parent is not None:
        # the rest of every changed file: its base record and extension records not parsed yet
        rest = {r for r, b in ext_records if b in changed_groups} | {g for g in changed_groups if g < count}
        for rec in sorted(rest - parsed):
            raw = bytes(_read_stream(source, runs, cs, rec * rs, rs))
            if raw[:4] == b"FILE" and struct.unpack_from("<H", raw, 0x16)[0] & FLAG_IN_USE:
                changed_clusters += record_clusters(raw, total)
    tail = total * cs
    metadata = ExtentList((c * cs, n * cs) for c, n in meta) | ExtentList([(tail, max(0, source.size - tail))])
    changed_bytes = ExtentList((c * cs, n * cs) for c, n in changed_clusters)
    return FsScan(
        ident,
        digests,
        metadata.clamp(source.size),
        changed_bytes.clamp(source.size),
        records_changed,
        parent is not None,
        journal,
        usn_how if parent is not None else None,
        usn_unused if parent is not None else None,
    )


__all__ = ["identity", "record_clusters", "scan"]
