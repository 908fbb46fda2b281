"""Read folders and files of an NTFS from a byte source, without mounting.

Folders are the ``$I30`` index of a directory's MFT record: the entries of ``$INDEX_ROOT`` and of
every ``INDX`` block of ``$INDEX_ALLOCATION`` (read in full, so the B-tree's order does not
matter); each entry's key is a ``$FILE_NAME`` (DOS 8.3 aliases are skipped). A file is its
unnamed ``$DATA``: resident bytes, or runs of clusters (sparse runs read as zeros). Compressed
or encrypted data, and ``$DATA`` moved to other records by an attribute list, are refused by
name rather than read wrongly. The MFT itself is located through ``layout.ntfs``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ..device import ByteSource
from ..errors import LayoutError
from ..layout.ntfs import BootSector, DataAttribute, Run, decode_runs, find_data, read_boot_sector, read_mft_record
from .model import FsEntry, FsReadError

ROOT_RECORD = 5
FIRST_USER_RECORD = 24
ATTR_ATTRIBUTE_LIST = 0x20
ATTR_DATA = 0x80
ATTR_INDEX_ROOT = 0x90
ATTR_INDEX_ALLOCATION = 0xA0
ATTR_END = 0xFFFFFFFF
DIRECTORY = 0x10000000
REPARSE = 0x400
NAMESPACE_DOS = 2
EPOCH_DIFF = 116444736000000000  # 1601-01-01 to 1970-01-01 in 100 ns
PIECE = 1 << 20
MAX_INDEX_BYTES = 256 << 20


def _attributes(record: bytes) -> Iterator[tuple[int, str, bytes]]:
    pos = struct.unpack_from("<H", record, 0x14)[0]
    while pos + 16 <= len(record):
        atype, alen = struct.unpack_from("<II", record, pos)
        if atype == ATTR_END or alen == 0 or pos + alen > len(record):
            return
        attr = record[pos : pos + alen]
        name_len, name_off = attr[9], struct.unpack_from("<H", attr, 0x0A)[0]
        name = attr[name_off : name_off + 2 * name_len].decode("utf-16-le", "replace")
        yield atype, name, attr
        pos += alen


def _resident_value(attr: bytes) -> bytes:
    vlen, voff = struct.unpack_from("<IH", attr, 0x10)
    return attr[voff : voff + vlen]


def _fixed_up_index(block: bytearray) -> bytearray:
    if block[:4] != b"INDX":
        raise FsReadError("NTFS index block: bad magic")
    usa_off, usa_count = struct.unpack_from("<HH", block, 4)
    usn = block[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * 512
        if end > len(block) or block[end - 2 : end] != usn:
            raise FsReadError("NTFS index block: torn write (fixup does not match)")
        block[end - 2 : end] = block[usa_off + 2 * i : usa_off + 2 * i + 2]
    return block


def _ntfs_time(value: int) -> int:
    return max(value - EPOCH_DIFF, 0) * 100


class NtfsReader:
    kind = "ntfs"

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        try:
            self.boot: BootSector = read_boot_sector(source)
            self.mft = find_data(read_mft_record(source, self.boot, None, 0))
        except LayoutError as e:
            raise FsReadError(f"NTFS: {e}") from e

    def root(self) -> int:
        return ROOT_RECORD

    def _record(self, n: int) -> bytes:
        try:
            return read_mft_record(self.source, self.boot, self.mft, n)
        except LayoutError as e:
            raise FsReadError(f"NTFS: {e}") from e

    def _runs_data(self, runs: tuple[Run, ...] | list[Run], size: int) -> Iterator[bytes]:
        cs, pos = self.boot.cluster_size, 0
        for run in runs:
            start = run.vcn * cs
            end = min((run.vcn + run.length) * cs, size)
            while pos < start and pos < size:  # a gap in the run list reads as zeros
                n = min(start - pos, size - pos, PIECE)
                yield bytes(n)
                pos += n
            while pos < end:
                n = min(end - pos, PIECE)
                if run.lcn is None:
                    yield bytes(n)
                else:
                    data = self.source.read_at(run.lcn * cs + (pos - start), n)
                    if len(data) != n:
                        raise FsReadError("NTFS: a data run points beyond the partition end")
                    yield data
                pos += n
        while pos < size:
            n = min(size - pos, PIECE)
            yield bytes(n)
            pos += n

    # -- folders ---------------------------------------------------------------------------------

    @staticmethod
    def _node_entries(data: bytes | bytearray, node: int) -> Iterator[tuple[int, bytes]]:
        """(record number, $FILE_NAME key) of the entries of an index node header at ``node``."""
        first, total = struct.unpack_from("<II", data, node)
        pos, end = node + first, min(node + total, len(data))
        while pos + 16 <= end:
            ref, length, key_len, flags = struct.unpack_from("<QHHI", data, pos)
            if length < 16:
                break
            if not flags & 0x2 and key_len >= 0x42:
                yield ref & 0xFFFFFFFFFFFF, bytes(data[pos + 16 : pos + 16 + key_len])
            if flags & 0x2:
                break
            pos += length

    def list(self, ref: int) -> list[FsEntry]:
        record = self._record(ref)
        keys: list[tuple[int, bytes]] = []
        block_size = 4096
        is_dir = False
        for atype, name, attr in _attributes(record):
            if atype == ATTR_INDEX_ROOT and name == "$I30":
                is_dir = True
                value = _resident_value(attr)
                block_size = struct.unpack_from("<I", value, 8)[0]
                keys.extend(self._node_entries(value, 16))
            elif atype == ATTR_INDEX_ALLOCATION and name == "$I30":
                size = struct.unpack_from("<Q", attr, 0x30)[0]
                if size > MAX_INDEX_BYTES:
                    raise FsReadError(f"NTFS: the index of record {ref} is larger than {MAX_INDEX_BYTES} bytes")
                runs = decode_runs(attr[struct.unpack_from("<H", attr, 0x20)[0]:])
                data = b"".join(self._runs_data(runs, size))
                for off in range(0, len(data) - block_size + 1, block_size):
                    if data[off : off + 4] != b"INDX":
                        continue  # an unused block of the allocation
                    block = _fixed_up_index(bytearray(data[off : off + block_size]))
                    keys.extend(self._node_entries(block, 0x18))
        if not is_dir:
            raise FsReadError(f"NTFS: record {ref} is not a folder")
        out: dict[int, FsEntry] = {}
        for number, key in keys:
            namespace = key[0x41]
            if namespace == NAMESPACE_DOS or number == ref or number in out:
                continue
            name = key[0x42 : 0x42 + 2 * key[0x40]].decode("utf-16-le", "surrogatepass")
            if number < FIRST_USER_RECORD and name.startswith("$"):
                continue  # the file system's own metadata files
            flags = struct.unpack_from("<I", key, 0x38)[0]
            kind = "dir" if flags & DIRECTORY else "link" if flags & REPARSE else "file"
            size = self._size(number) if kind == "file" else 0
            out[number] = FsEntry(name, kind, size, _ntfs_time(struct.unpack_from("<Q", key, 0x10)[0]), number)
        return sorted(out.values(), key=lambda e: e.name.lower())

    # -- files -----------------------------------------------------------------------------------

    def _data(self, ref: int) -> DataAttribute:
        record = self._record(ref)
        for atype, name, attr in _attributes(record):
            if atype == ATTR_DATA and not name and attr[8]:
                flags = struct.unpack_from("<H", attr, 0x0C)[0]
                if flags & 0x0001:
                    raise FsReadError(f"NTFS: record {ref} is compressed; this reader does not decompress")
                if flags & 0x4000:
                    raise FsReadError(f"NTFS: record {ref} is encrypted (EFS)")
        try:
            return find_data(record)
        except LayoutError:
            if any(atype == ATTR_ATTRIBUTE_LIST for atype, _, _ in _attributes(record)):
                raise FsReadError(f"NTFS: the data of record {ref} is spread over several records "
                                  "(attribute list); not read by this reader") from None
            raise FsReadError(f"NTFS: record {ref} has no data") from None

    def _size(self, ref: int) -> int:
        try:
            return self._data(ref).size
        except FsReadError:
            return 0

    def read(self, ref: int) -> Iterator[bytes]:
        data = self._data(ref)
        if data.resident is not None:
            yield data.resident
            return
        yield from self._runs_data(data.runs, data.size)


__all__ = ["NtfsReader"]
