"""Used clusters of an NTFS volume, read from its raw bytes (no mount).

The boot sector (sector 0, OEM id "NTFS    ") gives bytes per sector and cluster, the volume's
sector count and the cluster of ``$MFT``; its backup lies in the partition's last sector. MFT
record 0 (``$MFT``) maps the MFT itself; record 6 is ``$Bitmap``, whose unnamed ``$DATA``
attribute is one bit per cluster (set = used). Records are protected by an update sequence
array: the last two bytes of every 512-byte stride are swapped out on disk and must be restored
(fixups) before the record is read. Non-resident data is a run list of (length, relative
start) pairs. The backup boot sector lies beyond the last cluster, so it is added explicitly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from e3backup.sources.device import ByteSource
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.bitmap import set_bit_runs

OEM_ID = b"NTFS    "
MFT_RECORD_MFT = 0
MFT_RECORD_BITMAP = 6
ATTR_DATA = 0x80
ATTR_ATTRIBUTE_LIST = 0x20
ATTR_END = 0xFFFFFFFF
FIXUP_STRIDE = 512
BITMAP_SLICE = 1 << 16  # bytes of $Bitmap turned into runs at a time


@dataclass(frozen=True)
class BootSector:
    bytes_per_sector: int
    cluster_size: int
    total_sectors: int
    mft_lcn: int
    mft_record_size: int
    from_backup: bool = False

    @property
    def cluster_count(self) -> int:
        return self.total_sectors * self.bytes_per_sector // self.cluster_size


@dataclass(frozen=True)
class Run:
    """``length`` clusters at ``lcn`` (None: a sparse run, no clusters on disk)."""

    vcn: int
    lcn: int | None
    length: int


def parse_boot_sector(raw: bytes, from_backup: bool = False) -> BootSector:
    if len(raw) < 512 or raw[3:11] != OEM_ID or raw[510:512] != b"\x55\xaa":
        raise LayoutError("no NTFS boot sector (bad OEM id or signature)")
    bps = struct.unpack_from("<H", raw, 0x0B)[0]
    spc = raw[0x0D]
    if spc > 0x80:
        spc = 1 << (256 - spc)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1):
        raise LayoutError(f"NTFS boot sector: bad geometry ({bps} bytes/sector, {spc} sectors/cluster)")
    cluster = bps * spc
    total, mft_lcn = struct.unpack_from("<QQ", raw, 0x28)
    cpr = struct.unpack_from("<b", raw, 0x40)[0]
    record = cluster * cpr if cpr > 0 else 1 << -cpr
    if not 256 <= record <= 65536 or total == 0:
        raise LayoutError(f"NTFS boot sector: bad MFT record size {record} or empty volume")
    return BootSector(bps, cluster, total, mft_lcn, record, from_backup)


def read_boot_sector(source: ByteSource) -> BootSector:
    """The primary boot sector, or the backup in the partition's last sector when it is damaged."""
    try:
        return parse_boot_sector(source.read_at(0, 512))
    except LayoutError as primary_error:
        for bps in (512, 4096):
            try:
                return parse_boot_sector(source.read_at(source.size - bps, 512), from_backup=True)
            except LayoutError:
                continue
        raise primary_error from None


def apply_fixups(record: bytearray) -> bytearray:
    """Restore the sector-end bytes from the update sequence array, checking each one."""
    if record[:4] != b"FILE":
        raise LayoutError(f"MFT record: bad magic {bytes(record[:4])!r}")
    usa_off, usa_count = struct.unpack_from("<HH", record, 4)
    if (
        usa_count == 0
        or usa_off + 2 * usa_count > len(record)
        or (usa_count - 1) * FIXUP_STRIDE > len(record)
    ):
        raise LayoutError("MFT record: update sequence array out of bounds")
    usn = record[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * FIXUP_STRIDE
        if record[end - 2 : end] != usn:
            raise LayoutError(f"MFT record: torn write (fixup {i} does not match)")
        record[end - 2 : end] = record[usa_off + 2 * i : usa_off + 2 * i + 2]
    return record


def decode_runs(data: bytes) -> list[Run]:
    """Decode a mapping-pairs array: header nibbles give the sizes of length and signed delta."""
    runs, pos, vcn, lcn = [], 0, 0, 0
    while pos < len(data) and data[pos] != 0:
        head = data[pos]
        len_size, off_size = head & 0x0F, head >> 4
        pos += 1
        if len_size == 0 or pos + len_size + off_size > len(data):
            raise LayoutError("NTFS run list is truncated or malformed")
        length = int.from_bytes(data[pos : pos + len_size], "little")
        pos += len_size
        if off_size:
            lcn += int.from_bytes(data[pos : pos + off_size], "little", signed=True)
            runs.append(Run(vcn, lcn, length))
        else:
            runs.append(Run(vcn, None, length))
        pos += off_size
        vcn += length
    return runs


@dataclass(frozen=True)
class DataAttribute:
    resident: bytes | None
    runs: tuple[Run, ...]
    size: int


def find_data(record: bytes) -> DataAttribute:
    """The unnamed ``$DATA`` attribute of a fixed-up MFT record."""
    pos = struct.unpack_from("<H", record, 0x14)[0]
    while pos + 16 <= len(record):
        atype, alen = struct.unpack_from("<II", record, pos)
        if atype == ATTR_END or alen == 0:
            break
        if pos + alen > len(record):
            raise LayoutError("MFT record: attribute runs past the record")
        attr = record[pos : pos + alen]
        non_resident, name_len = attr[8], attr[9]
        if atype == ATTR_DATA and name_len == 0:
            if not non_resident:
                vlen, voff = struct.unpack_from("<IH", attr, 0x10)
                value = bytes(attr[voff : voff + vlen])
                return DataAttribute(value, (), vlen)
            (mp_off,) = struct.unpack_from("<H", attr, 0x20)
            (size,) = struct.unpack_from("<Q", attr, 0x30)
            return DataAttribute(None, tuple(decode_runs(attr[mp_off:])), size)
        if atype == ATTR_ATTRIBUTE_LIST:
            pass  # $DATA in another record: not expected for $MFT's first extent or $Bitmap
        pos += alen
    raise LayoutError("MFT record has no unnamed $DATA attribute")


def _read_runs(source: ByteSource, boot: BootSector, data: DataAttribute, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of a non-resident attribute's data."""
    cs, out = boot.cluster_size, bytearray()
    for run in data.runs:
        run_start, run_end = run.vcn * cs, (run.vcn + run.length) * cs
        lo, hi = max(offset, run_start), min(offset + length, run_end)
        if lo >= hi:
            continue
        if run.lcn is None:
            out += bytes(hi - lo)
        else:
            chunk = source.read_at(run.lcn * cs + (lo - run_start), hi - lo)
            if len(chunk) != hi - lo:
                raise LayoutError("NTFS data run points beyond the partition end")
            out += chunk
    return bytes(out)


def read_mft_record(source: ByteSource, boot: BootSector, mft: DataAttribute | None, n: int) -> bytes:
    size = boot.mft_record_size
    if mft is None:
        raw = source.read_at(boot.mft_lcn * boot.cluster_size + n * size, size)
    else:
        raw = _read_runs(source, boot, mft, n * size, size)
    if len(raw) != size:
        raise LayoutError(f"MFT record {n} is beyond the partition end")
    return bytes(apply_fixups(bytearray(raw)))


def read_bitmap(source: ByteSource) -> tuple[BootSector, bytes]:
    """The boot sector and the raw ``$Bitmap`` data."""
    boot = read_boot_sector(source)
    mft = find_data(read_mft_record(source, boot, None, MFT_RECORD_MFT))
    bitmap_attr = find_data(read_mft_record(source, boot, mft, MFT_RECORD_BITMAP))
    if bitmap_attr.resident is not None:
        return boot, bitmap_attr.resident
    return boot, _read_runs(source, boot, bitmap_attr, 0, bitmap_attr.size)


def used_clusters(source: ByteSource) -> tuple[BootSector, ExtentList]:
    boot, bitmap = read_bitmap(source)
    total = boot.cluster_count
    if len(bitmap) * 8 < total:
        raise LayoutError(f"NTFS $Bitmap has {len(bitmap) * 8} bits for {total} clusters")
    runs: list[tuple[int, int]] = []
    for base in range(0, (total + 7) // 8, BITMAP_SLICE):
        bits = min(BITMAP_SLICE * 8, total - base * 8)
        runs += [
            (base * 8 + s, base * 8 + e) for s, e in set_bit_runs(bitmap[base : base + BITMAP_SLICE], bits)
        ]
    return boot, ExtentList.from_bounds(runs)


def used_extents(source: ByteSource) -> ExtentList:
    """Used bytes of the volume relative to its start: used clusters, both boot sectors."""
    boot, clusters = used_clusters(source)
    cs = boot.cluster_size
    used = ExtentList((c.offset * cs, c.length * cs) for c in clusters)
    tail_start = boot.cluster_count * cs
    metadata = ExtentList([(0, cs), (tail_start, max(0, source.size - tail_start))])
    return (used | metadata).clamp(source.size)


__all__ = [
    "BootSector",
    "Run",
    "apply_fixups",
    "decode_runs",
    "find_data",
    "parse_boot_sector",
    "read_bitmap",
    "read_boot_sector",
    "used_clusters",
    "used_extents",
]
