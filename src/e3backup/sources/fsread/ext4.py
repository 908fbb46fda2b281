"""Read folders and files of an ext2/3/4 file system from a byte source, without mounting.

Inodes are found through the group descriptors (``layout.ext4``); a file's blocks through its
extent tree (ext4) or its direct and indirect block maps (ext2/3); holes and unwritten extents
read as zeros. Directories are read as linear entry lists, which also covers hashed (htree)
directories: their index blocks look like one empty entry to a linear reader. Inline data
(small files kept in the inode, an optional ext4 feature) is read from the inode's block area.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..device import ByteSource
from ..layout.ext4 import read_group_descs, read_superblock
from .model import FsEntry, FsReadError

ROOT_INODE = 2
EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
EXTENT_MAGIC = 0xF30A
_TYPES = {0x4000: "dir", 0x8000: "file", 0xA000: "link"}
MAX_DIR_BYTES = 256 << 20


class Ext4Reader:
    kind = "ext4"

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.sb = read_superblock(source)
        self.descs = read_group_descs(source, self.sb)
        self.bs = self.sb.block_size

    def root(self) -> int:
        return ROOT_INODE

    def _inode(self, n: int) -> bytes:
        if n < 1 or n > self.sb.inodes_per_group * len(self.descs):
            raise FsReadError(f"ext: inode {n} out of range")
        group, index = divmod(n - 1, self.sb.inodes_per_group)
        raw = self.source.read_at(self.descs[group].inode_table * self.bs + index * self.sb.inode_size,
                                  self.sb.inode_size)
        if len(raw) < 128:
            raise FsReadError(f"ext: inode {n} is beyond the partition end")
        return raw

    @staticmethod
    def _size(raw: bytes) -> int:
        return int(struct.unpack_from("<I", raw, 4)[0]) | int(struct.unpack_from("<I", raw, 0x6C)[0]) << 32

    def _block(self, b: int) -> bytes:
        data = self.source.read_at(b * self.bs, self.bs)
        if len(data) < self.bs:
            raise FsReadError(f"ext: block {b} is beyond the partition end")
        return data

    # -- block maps ------------------------------------------------------------------------------

    def _extents(self, node: bytes, depth_left: int = 8) -> Iterator[tuple[int, int, int]]:
        """(logical block, physical block, count) of initialised extents, in tree order."""
        magic, entries, _max, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXTENT_MAGIC or depth_left < 0:
            raise FsReadError("ext: corrupt extent tree")
        for i in range(entries):
            off = 12 + 12 * i
            if depth == 0:
                logical, length, hi, lo = struct.unpack_from("<IHHI", node, off)
                if length <= 32768:  # above: unwritten (reads as zeros)
                    yield logical, lo | hi << 32, length
            else:
                _logical, lo, hi = struct.unpack_from("<IIH", node, off)
                yield from self._extents(self._block(lo | hi << 32), depth_left - 1)

    def _mapped(self, ptr: int, level: int, logical: int) -> Iterator[tuple[int, int, int]]:
        per = self.bs // 4
        if ptr == 0:
            return
        if level == 0:
            yield logical, ptr, 1
            return
        table = struct.unpack(f"<{per}I", self._block(ptr))
        span = per ** (level - 1)
        for i, p in enumerate(table):
            yield from self._mapped(p, level - 1, logical + i * span)

    def _runs(self, raw: bytes) -> Iterator[tuple[int, int, int]]:
        flags = struct.unpack_from("<I", raw, 0x20)[0]
        area = raw[0x28:0x28 + 60]
        if flags & EXTENTS_FL:
            yield from self._extents(area)
            return
        ptrs = struct.unpack("<15I", area)
        per = self.bs // 4
        for i in range(12):
            if ptrs[i]:
                yield i, ptrs[i], 1
        yield from self._mapped(ptrs[12], 1, 12)
        yield from self._mapped(ptrs[13], 2, 12 + per)
        yield from self._mapped(ptrs[14], 3, 12 + per + per * per)

    def _data(self, n: int, limit: int | None = None) -> Iterator[bytes]:
        raw = self._inode(n)
        size = self._size(raw)
        if limit is not None and size > limit:
            raise FsReadError(f"ext: inode {n} is larger than {limit} bytes")
        flags = struct.unpack_from("<I", raw, 0x20)[0]
        if flags & INLINE_DATA_FL:
            yield raw[0x28:0x28 + min(size, 60)]
            return
        pos = 0  # bytes produced so far
        for logical, physical, count in sorted(self._runs(raw)):
            start = logical * self.bs
            if start >= size:
                break
            while pos < start:  # a hole
                n_zero = min(start - pos, 1 << 20)
                yield bytes(n_zero)
                pos += n_zero
            for k in range(0, count, 256):
                blocks = min(256, count - k)
                want = min(blocks * self.bs, size - pos)
                if want <= 0:
                    break
                data = self.source.read_at((physical + k) * self.bs, want)
                if len(data) < want:
                    raise FsReadError(f"ext: inode {n}: data beyond the partition end")
                yield data
                pos += want
        while pos < size:
            n_zero = min(size - pos, 1 << 20)
            yield bytes(n_zero)
            pos += n_zero

    # -- the reader interface --------------------------------------------------------------------

    def list(self, ref: int) -> list[FsEntry]:
        raw = self._inode(ref)
        mode = struct.unpack_from("<H", raw, 0)[0]
        if mode & 0xF000 != 0x4000:
            raise FsReadError(f"ext: inode {ref} is not a directory")
        flags = struct.unpack_from("<I", raw, 0x20)[0]
        data = b"".join(self._data(ref, MAX_DIR_BYTES))
        pos = 4 if flags & INLINE_DATA_FL else 0  # inline: the parent's inode number first
        out: list[FsEntry] = []
        while pos + 8 <= len(data):
            ino, rec_len, name_len = struct.unpack_from("<IHB", data, pos)
            if rec_len < 8:
                break
            name = data[pos + 8 : pos + 8 + name_len]
            if ino and name not in (b".", b".."):
                out.append(self._entry(ino, name))
            pos += rec_len
        return out

    def _entry(self, ino: int, name: bytes) -> FsEntry:
        raw = self._inode(ino)
        mode = struct.unpack_from("<H", raw, 0)[0]
        kind = _TYPES.get(mode & 0xF000, "other")
        mtime = struct.unpack_from("<I", raw, 0x10)[0]
        return FsEntry(name.decode("utf-8", "surrogateescape"), kind, self._size(raw) if kind == "file" else 0,
                       mtime * 1_000_000_000, ino)

    def read(self, ref: int) -> Iterator[bytes]:
        return self._data(ref)


__all__ = ["Ext4Reader"]
