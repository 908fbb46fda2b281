"""Used blocks of an ext2/ext3/ext4 file system, read from its raw bytes (no mount).

The superblock (at byte 1024) gives the geometry; the group descriptor table (32-byte entries,
or ``s_desc_size`` with the 64bit feature; contiguous after the superblock, or spread per meta
group with meta_bg) gives each group's block bitmap. A set bit is a used block (a cluster with
bigalloc). A group flagged ``BLOCK_UNINIT`` (trusted only with uninit_bg/metadata_csum) has no
bitmap on disk: its used blocks are exactly its superblock and descriptor backups (as
sparse_super / sparse_super2 / meta_bg place them), the reserved GDT blocks, and every group's
bitmaps and inode table that flex_bg placed inside it — the rule libext2fs applies. Superblock
backups, the journal and all metadata are in the bitmaps, so the plan needs nothing else but
the boot block.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from e3backup.sources.device import ByteSource
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.bitmap import set_bit_runs

SUPERBLOCK_OFFSET = 1024
MAGIC = 0xEF53
BOOT_AREA = 2048  # boot block + primary superblock, outside any group with 1 KiB blocks

COMPAT_SPARSE_SUPER2 = 0x200
INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_GDT_CSUM = 0x10
RO_COMPAT_BIGALLOC = 0x200
RO_COMPAT_METADATA_CSUM = 0x400
BG_BLOCK_UNINIT = 0x2


@dataclass(frozen=True)
class Superblock:
    block_size: int
    cluster_ratio: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    clusters_per_group: int
    inodes_per_group: int
    inode_size: int
    desc_size: int
    reserved_gdt_blocks: int
    first_meta_bg: int
    backup_bgs: tuple[int, int]
    compat: int
    incompat: int
    ro_compat: int

    @property
    def group_count(self) -> int:
        return -(-(self.blocks_count - self.first_data_block) // self.blocks_per_group)

    @property
    def descs_per_block(self) -> int:
        return self.block_size // self.desc_size

    @property
    def desc_blocks(self) -> int:
        return -(-self.group_count // self.descs_per_block)

    @property
    def inode_table_blocks(self) -> int:
        return -(-self.inodes_per_group * self.inode_size // self.block_size)

    @property
    def uninit_flags_valid(self) -> bool:
        return bool(self.ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM))

    def group_first_block(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def has_super(self, g: int) -> bool:
        if g == 0:
            return True
        if self.compat & COMPAT_SPARSE_SUPER2:
            return g in self.backup_bgs
        if g <= 1 or not self.ro_compat & RO_COMPAT_SPARSE_SUPER:
            return True
        if g % 2 == 0:
            return False
        for base in (3, 5, 7):
            n = base
            while n < g:
                n *= base
            if n == g:
                return True
        return False


@dataclass(frozen=True)
class GroupDesc:
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    flags: int


def read_superblock(source: ByteSource) -> Superblock:
    raw = source.read_at(SUPERBLOCK_OFFSET, 1024)
    if len(raw) < 1024 or struct.unpack_from("<H", raw, 56)[0] != MAGIC:
        raise LayoutError("no ext2/3/4 superblock (bad magic)")

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", raw, off)[0])

    def u16(off: int) -> int:
        return int(struct.unpack_from("<H", raw, off)[0])

    compat, incompat, ro = u32(92), u32(96), u32(100)
    log_block = u32(24)
    if log_block > 6:
        raise LayoutError(f"ext superblock: implausible block size 2^{10 + log_block}")
    block_size = 1024 << log_block
    ratio = (1 << (u32(28) - log_block)) if ro & RO_COMPAT_BIGALLOC else 1
    blocks = u32(4) | ((u32(0x150) << 32) if incompat & INCOMPAT_64BIT else 0)
    desc_size = u16(0xFE) if incompat & INCOMPAT_64BIT and u16(0xFE) >= 64 else 32
    bpg = u32(32)
    cpg = u32(36) if ro & RO_COMPAT_BIGALLOC else bpg
    rev = u32(76)
    inode_size = u16(88) if rev >= 1 else 128
    if bpg == 0 or blocks == 0 or u32(40) == 0 or desc_size > block_size:
        raise LayoutError("ext superblock: zero blocks, blocks per group or inodes per group")
    return Superblock(
        block_size=block_size,
        cluster_ratio=ratio,
        blocks_count=blocks,
        first_data_block=u32(20),
        blocks_per_group=bpg,
        clusters_per_group=cpg,
        inodes_per_group=u32(40),
        inode_size=inode_size,
        desc_size=desc_size,
        reserved_gdt_blocks=u16(0xCE),
        first_meta_bg=u32(0x104),
        backup_bgs=(u32(0x24C), u32(0x250)),
        compat=compat,
        incompat=incompat,
        ro_compat=ro,
    )


def _desc_block_location(sb: Superblock, i: int) -> int:
    """Block number of descriptor block ``i`` (meta_bg spreads them over the disk)."""
    if not sb.incompat & INCOMPAT_META_BG or i < sb.first_meta_bg:
        return sb.first_data_block + 1 + i
    g = i * sb.descs_per_block
    return sb.group_first_block(g) + (1 if sb.has_super(g) else 0)


def read_group_descs(source: ByteSource, sb: Superblock) -> list[GroupDesc]:
    bs, out = sb.block_size, list[GroupDesc]()
    wide = sb.desc_size >= 64
    for i in range(sb.desc_blocks):
        block = source.read_at(_desc_block_location(sb, i) * bs, bs)
        if len(block) < bs:
            raise LayoutError(f"ext group descriptor block {i} is beyond the partition end")
        for j in range(sb.descs_per_block):
            if len(out) == sb.group_count:
                break
            d = block[j * sb.desc_size : (j + 1) * sb.desc_size]
            bb, ib, it = struct.unpack_from("<III", d, 0)
            flags = struct.unpack_from("<H", d, 0x12)[0]
            if wide:
                bbh, ibh, ith = struct.unpack_from("<III", d, 0x20)
                bb, ib, it = bb | bbh << 32, ib | ibh << 32, it | ith << 32
            out.append(GroupDesc(bb, ib, it, flags))
    return out


def reserved_super_and_bgd(sb: Superblock, g: int) -> list[tuple[int, int]]:
    """Blocks of group ``g`` holding superblock and descriptor copies (libext2fs' rule)."""
    start = sb.group_first_block(g)
    if start == 0 and sb.block_size == 1024:
        start = 1
    meta_bg = sb.incompat & INCOMPAT_META_BG
    old_desc = sb.first_meta_bg if meta_bg else sb.desc_blocks + sb.reserved_gdt_blocks
    has_super = sb.has_super(g)
    out = [(start, start + 1)] if has_super else []
    per = sb.descs_per_block
    if not meta_bg or g // per < sb.first_meta_bg:
        if has_super:
            out.append((start + 1, min(start + 1 + old_desc, sb.blocks_count)))
    elif g % per in (0, 1, per - 1):
        blk = start + (1 if has_super else 0)
        out.append((blk, blk + 1))
    return out


def used_blocks(source: ByteSource) -> tuple[Superblock, ExtentList]:
    """The superblock and the used blocks, as an ``ExtentList`` of block numbers."""
    sb = read_superblock(source)
    descs = read_group_descs(source, sb)
    bs, ratio = sb.block_size, sb.cluster_ratio
    group_meta = ExtentList(
        (blk, n)
        for d in descs
        for blk, n in ((d.block_bitmap, 1), (d.inode_bitmap, 1), (d.inode_table, sb.inode_table_blocks))
        if blk
    )
    used: list[tuple[int, int]] = []
    for g, d in enumerate(descs):
        first = sb.group_first_block(g)
        end = min(first + sb.blocks_per_group, sb.blocks_count)
        if sb.uninit_flags_valid and d.flags & BG_BLOCK_UNINIT:
            used += reserved_super_and_bgd(sb, g)
            own = ExtentList([(d.block_bitmap, 1), (d.inode_bitmap, 1), (d.inode_table, sb.inode_table_blocks)])
            inside = ExtentList([(first, end - first)]) & group_meta
            used += [(e.offset, e.end) for e in own | inside]
            continue
        if not 0 < d.block_bitmap < sb.blocks_count:
            raise LayoutError(f"ext group {g}: block bitmap at {d.block_bitmap} is out of range")
        bitmap = source.read_at(d.block_bitmap * bs, bs)
        for s, e in set_bit_runs(bitmap, sb.clusters_per_group):
            used.append((first + s * ratio, min(first + e * ratio, end)))
    return sb, ExtentList.from_bounds(used).clamp(sb.blocks_count)


def used_extents(source: ByteSource) -> ExtentList:
    """Used bytes of the file system, relative to its start, clamped to ``source.size``."""
    sb, blocks = used_blocks(source)
    bs = sb.block_size
    return (ExtentList((b.offset * bs, b.length * bs) for b in blocks) | ExtentList([(0, BOOT_AREA)])).clamp(
        source.size
    )


__all__ = [
    "GroupDesc",
    "Superblock",
    "read_group_descs",
    "read_superblock",
    "reserved_super_and_bgd",
    "used_blocks",
    "used_extents",
]
