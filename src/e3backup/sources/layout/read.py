"""Read a ``DiskLayout`` from a device: GPT first, then MBR, then a bare file system."""

from __future__ import annotations

from e3backup.sources.device import ByteSource, Window
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.gpt import GptTable, has_gpt_signature, parse_gpt
from e3backup.sources.layout.guids import gpt_type_name, mbr_type_name
from e3backup.sources.layout.mbr import parse_mbr
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.layout.probe import probe_filesystem


def read_layout(source: ByteSource, sector_size: int | None = None) -> DiskLayout:
    """The partition table and file systems of ``source``.

    ``sector_size`` defaults to the device's logical sector size; for image files (no such
    thing) 512 and then 4096 are tried for a GPT. Never raises on malformed tables: what cannot
    be parsed is reported as ``table="none"`` and notes, and the plan falls back.
    """
    native = sector_size or getattr(source, "sector_size", None)
    is_block = bool(getattr(source, "is_block_device", False))
    sizes = [native] if native and (is_block or sector_size) else [512, 4096]
    notes: list[str] = []
    for ss in sizes:
        gpt = parse_gpt(source, ss)
        if gpt is not None:
            return _from_gpt(source, ss, gpt)
    ss = sizes[0]
    if any(has_gpt_signature(source, s) for s in sizes):
        notes.append("GPT signature found but neither GPT copy is valid")
    mbr = parse_mbr(source, ss)
    if mbr is not None and not mbr.protective:
        parts: list[Partition] = []
        for e in mbr.data_entries():
            start, size = e.start_lba * ss, e.sectors * ss
            parts.append(
                Partition(
                    index=e.index,
                    start=start,
                    size=size,
                    type=f"0x{e.kind:02X}",
                    type_name=mbr_type_name(e.kind),
                    filesystem=probe_filesystem(Window(source, start, size)),
                    bootable=e.bootable,
                )
            )
        extents = ExtentList([(0, ss)] + [(lba * ss, ss) for lba in mbr.ebr_lbas])
        return DiskLayout(
            ss, source.size, "mbr", tuple(parts), f"0x{mbr.disk_signature:08X}", extents, tuple(notes)
        )
    if mbr is not None:
        notes.append("protective MBR without a valid GPT")
    fs = probe_filesystem(source) if not notes else None
    bare = (Partition(0, 0, source.size, "", "whole-device", filesystem=fs),) if fs else ()
    return DiskLayout(ss, source.size, "none", bare, None, ExtentList(), tuple(notes))


def _from_gpt(source: ByteSource, ss: int, gpt: GptTable) -> DiskLayout:
    notes = []
    if gpt.primary is None:
        notes.append("primary GPT invalid; partitions read from the backup GPT")
    if gpt.backup is None:
        notes.append("backup GPT invalid or missing")
    extents = [(0, ss)]
    for h in (gpt.primary, gpt.backup):
        if h is not None:
            extents += [(h.my_lba * ss, ss), (h.entries_lba * ss, h.entries_bytes)]
    h = gpt.header
    # where the copies should be, even when one is damaged: the plan keeps those bytes too
    extents += [(ss, ss + h.entries_bytes), (source.size - ss - h.entries_bytes, ss + h.entries_bytes)]
    parts = []
    for e in gpt.entries:
        start, size = e.first_lba * ss, (e.last_lba - e.first_lba + 1) * ss
        parts.append(
            Partition(
                index=e.index,
                start=start,
                size=size,
                type=e.type_guid,
                type_name=gpt_type_name(e.type_guid),
                guid=e.guid,
                name=e.name,
                filesystem=probe_filesystem(Window(source, start, size)),
                attributes=e.attributes,
            )
        )
    return DiskLayout(
        ss,
        source.size,
        "gpt",
        tuple(parts),
        gpt.disk_guid,
        ExtentList(extents).clamp(source.size),
        tuple(notes),
    )


__all__ = ["read_layout"]
