"""ext2/3/4 change tracking by inode-table compare: digests of every inode, blocks of changed ones.

Every inode table is read group by group; every inode gets a digest of its raw bytes
(``digest.py``) without the access time, its extra part and the checksum that covers it: mode,
owner, size, ctime/mtime (with nanoseconds), flags, generation, i_version, link count, the
extent tree root or block map, the extended-attribute block. A write right after the parent's
snapshot can leave ctime unchanged when the clock has not ticked since the write before it
(whole seconds in 128-byte inodes, a jiffy of a few milliseconds with nanosecond times); so an
inode whose ctime is no older than ``since`` (the parent's start, taken before its snapshot) minus
two seconds (one with nanosecond times) counts as changed too. This assumes the file system's
writer and the backup share a clock (the same machine); with a skewed clock the guard is off by
the skew and only such same-tick writes are at risk.

Read at every backup (``metadata``): the boot block and superblock, every superblock and
descriptor copy with the reserved GDT blocks, the block and inode bitmaps, the inode tables,
the MMP block, every block of the special inodes (below ``s_first_ino``: journal, resize inode...)
and of the quota and orphan files named by the superblock, every block of every directory, and
the interior extent-tree blocks of every file. Read because they changed (``changed``): every
block (data, extent tree, indirect blocks, xattr block) of every in-use inode whose digest
differs. Blocks that were freed or newly allocated also show in the block bitmaps (the plan
difference), and blocks freed and reused belong to an inode that changed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from e3backup.sources.changetrack.digest import Digests, record_digests
from e3backup.sources.changetrack.scan import FsScan
from e3backup.sources.changetrack.state import Identity
from e3backup.sources.device import ByteSource
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.ext4 import (
    BOOT_AREA,
    SUPERBLOCK_OFFSET,
    Superblock,
    read_group_descs,
    read_superblock,
    reserved_super_and_bgd,
)

S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0xF000, 0x4000, 0x8000, 0xA000
EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
EXTENT_MAGIC = 0xF30A
MAX_EXTENT_DEPTH = 5
BG_INODE_UNINIT = 0x1
INCOMPAT_MMP = 0x100
RECENT_SECONDS = 2.0  # inodes with whole-second times
RECENT_SECONDS_FINE = 1.0  # inodes with nanosecond times (ctime_extra): far more than a jiffy
# superblock fields naming inodes whose blocks change in place: journal, quota files, orphan file
SPECIAL_INODE_FIELDS = (0xE0, 0x240, 0x244, 0x26C, 0x280)

BlockReader = Callable[[int], bytes]
Blocks = list[tuple[int, int]]


def _superblock_bytes(source: ByteSource) -> bytes:
    return source.read_at(SUPERBLOCK_OFFSET, 1024)


def identity(source: ByteSource) -> Identity:
    """What must stay the same for two scans' digests to be comparable."""
    sb = read_superblock(source)
    raw = _superblock_bytes(source)
    return {
        "uuid": raw[0x68:0x78].hex(),
        "block_size": sb.block_size,
        "blocks_count": sb.blocks_count,
        "inodes_count": struct.unpack_from("<I", raw, 0)[0],
        "inode_size": sb.inode_size,
        "inodes_per_group": sb.inodes_per_group,
    }


def _masked_ranges(inode_size: int) -> list[tuple[int, int]]:
    """atime, checksum_lo, and (large inodes) checksum_hi and atime_extra."""
    out = [(0x08, 0x0C), (0x7C, 0x7E)]
    if inode_size >= 0x84:
        out.append((0x82, 0x84))
    if inode_size >= 0x90:
        out.append((0x8C, 0x90))
    return out


class _InodeBlocks:
    """Blocks of one inode: ``tree`` (extent-tree, indirect and xattr blocks) and ``data``."""

    def __init__(self, sb: Superblock, read_block: BlockReader) -> None:
        self.sb = sb
        self.read_block = read_block

    def _check(self, block: int, count: int = 1) -> None:
        if block <= 0 or block + count > self.sb.blocks_count:
            raise LayoutError(f"ext inode points at block {block} (+{count}), outside the file system")

    def blocks(self, raw: bytes, special: bool) -> tuple[Blocks, Blocks]:
        tree: Blocks = []
        data: Blocks = []
        mode, size_lo = struct.unpack_from("<HxxI", raw, 0)
        (flags,) = struct.unpack_from("<I", raw, 0x20)
        acl = struct.unpack_from("<I", raw, 0x68)[0] | struct.unpack_from("<H", raw, 0x76)[0] << 32
        if acl:
            self._check(acl)
            tree.append((acl, 1))
        kind = mode & S_IFMT
        if flags & INLINE_DATA_FL or not (special or kind in (S_IFDIR, S_IFREG, S_IFLNK)):
            return tree, data
        if kind == S_IFLNK and not flags & EXTENTS_FL and size_lo < 60:
            return tree, data  # fast symlink: the target is in i_block
        i_block = raw[0x28:0x64]
        if flags & EXTENTS_FL:
            self._extent_node(i_block, None, tree, data)
        else:
            ptrs = struct.unpack_from("<15I", i_block)
            data += [(b, 1) for b in ptrs[:12] if b]
            for level, b in ((1, ptrs[12]), (2, ptrs[13]), (3, ptrs[14])):
                if b:
                    self._indirect(b, level, tree, data)
        for b, n in data:
            self._check(b, n)
        return tree, data

    def _extent_node(self, node: bytes, depth_expected: int | None, tree: Blocks, data: Blocks) -> None:
        magic, entries, maximum, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXTENT_MAGIC or entries > maximum or 12 + 12 * entries > len(node) or depth > MAX_EXTENT_DEPTH:
            raise LayoutError("ext extent tree: bad node header")
        if depth_expected is not None and depth != depth_expected:
            raise LayoutError("ext extent tree: inconsistent depth")
        for i in range(entries):
            pos = 12 + 12 * i
            if depth == 0:
                _lblk, length, hi, lo = struct.unpack_from("<IHHI", node, pos)
                start = hi << 32 | lo
                length = length - 32768 if length > 32768 else length
                if length:
                    self._check(start, length)
                    data.append((start, length))
            else:
                _lblk, lo, hi = struct.unpack_from("<IIH", node, pos)
                child = hi << 32 | lo
                self._check(child)
                tree.append((child, 1))
                self._extent_node(self.read_block(child), depth - 1, tree, data)

    def _indirect(self, block: int, level: int, tree: Blocks, data: Blocks) -> None:
        self._check(block)
        tree.append((block, 1))
        ptrs = np.frombuffer(self.read_block(block), dtype="<u4")
        for b in ptrs[ptrs != 0].tolist():
            if level == 1:
                data.append((b, 1))
            else:
                self._indirect(b, level - 1, tree, data)


def _recent(rows: np.ndarray, inode_size: int, since: float) -> np.ndarray:
    """Inodes whose ctime is too close to ``since`` to trust the digest (see the docstring)."""
    ctime = rows[:, 0x0C:0x10].copy().view("<u4").ravel().astype(np.float64)
    window = np.full(len(rows), RECENT_SECONDS)
    if inode_size >= 0x88:
        extra_isize = rows[:, 0x80].astype(np.uint16) | (rows[:, 0x81].astype(np.uint16) << 8)
        fine = extra_isize >= 0x08  # i_ctime_extra (0x84) is there: nanoseconds in its upper 30 bits
        nanos = (rows[:, 0x84:0x88].copy().view("<u4").ravel() >> 2).astype(np.float64)
        ctime = np.where(fine, ctime + nanos / 1e9, ctime)
        window = np.where(fine, RECENT_SECONDS_FINE, window)
    return ctime >= since - window


def scan(source: ByteSource, parent: Digests | None = None, since: float | None = None) -> FsScan:
    """Digest every inode; with ``parent`` (taken at ``since``), map the inodes that changed."""
    sb = read_superblock(source)
    raw_sb = _superblock_bytes(source)
    descs = read_group_descs(source, sb)
    bs, isz, ipg = sb.block_size, sb.inode_size, sb.inodes_per_group
    rev = struct.unpack_from("<I", raw_sb, 76)[0]
    first_ino = struct.unpack_from("<I", raw_sb, 0x54)[0] if rev >= 1 else 11
    special = {struct.unpack_from("<I", raw_sb, off)[0] for off in SPECIAL_INODE_FIELDS} - {0}
    special_arr = np.array(sorted(special), dtype=np.int64)

    def read_block(b: int) -> bytes:
        raw = source.read_at(b * bs, bs)
        if len(raw) != bs:
            raise LayoutError(f"ext block {b} is beyond the partition end")
        return raw

    walker = _InodeBlocks(sb, read_block)
    meta: Blocks = []
    changed_blocks: Blocks = []
    if sb.incompat & INCOMPAT_MMP:
        meta.append((struct.unpack_from("<Q", raw_sb, 0x168)[0], 1))
    for g, d in enumerate(descs):
        meta += [(s, e - s) for s, e in reserved_super_and_bgd(sb, g)]
        meta += [(d.block_bitmap, 1), (d.inode_bitmap, 1), (d.inode_table, sb.inode_table_blocks)]
    count = len(descs) * ipg
    digests = np.zeros(count, dtype=np.uint64)
    masked = _masked_ranges(isz)
    records_changed = 0
    for g, d in enumerate(descs):
        table = source.read_at(d.inode_table * bs, ipg * isz)
        if len(table) != ipg * isz:
            raise LayoutError(f"ext group {g}: inode table is beyond the partition end")
        rows = np.frombuffer(table, dtype=np.uint8).reshape(ipg, isz)
        first = g * ipg
        dg = record_digests(rows, masked)
        digests[first : first + ipg] = dg
        if sb.uninit_flags_valid and d.flags & BG_INODE_UNINIT:
            in_use = np.zeros(ipg, dtype=bool)
        else:
            bitmap = np.frombuffer(read_block(d.inode_bitmap), dtype=np.uint8)
            in_use = np.unpackbits(bitmap, bitorder="little")[:ipg].astype(bool)
        ino = np.arange(first + 1, first + ipg + 1, dtype=np.int64)
        mode = rows[:, 0].astype(np.uint16) | (rows[:, 1].astype(np.uint16) << 8)
        iflags = rows[:, 0x20:0x24].copy().view("<u4").ravel()
        depth = rows[:, 0x2E].astype(np.uint16) | (rows[:, 0x2F].astype(np.uint16) << 8)
        always = in_use & (((mode & S_IFMT) == S_IFDIR) | (ino < first_ino) | np.isin(ino, special_arr))
        tree_only = in_use & ~always & ((iflags & EXTENTS_FL) != 0) & (depth > 0)
        changed = np.zeros(ipg, dtype=bool)
        if parent is not None:
            have = max(0, min(ipg, len(parent) - first))
            changed[:] = True
            changed[:have] = parent[first : first + have] != dg[:have]
            if since is not None:
                changed |= in_use & _recent(rows, isz, since)
            records_changed += int(changed.sum())
        for r in np.flatnonzero(always):
            tree, data = walker.blocks(rows[r].tobytes(), bool(ino[r] < first_ino))
            meta += tree + data
        for r in np.flatnonzero(changed & in_use & ~always):
            tree, data = walker.blocks(rows[r].tobytes(), False)
            changed_blocks += tree + data
        for r in np.flatnonzero(tree_only & ~changed):
            tree, _ = walker.blocks(rows[r].tobytes(), False)
            meta += tree
    metadata = ExtentList((b * bs, n * bs) for b, n in meta if n) | ExtentList([(0, BOOT_AREA)])
    changed_bytes = ExtentList((b * bs, n * bs) for b, n in changed_blocks)
    return FsScan(
        identity(source),
        digests,
        metadata.clamp(source.size),
        changed_bytes.clamp(source.size),
        records_changed,
        parent is not None,
    )


__all__ = ["identity", "scan"]
