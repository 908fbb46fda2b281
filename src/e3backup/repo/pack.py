"""Pack files: blobs back to back, then the encrypted header and its length (spec section 5).

    pack   = seal(blob_1) || ... || seal(blob_n) || seal(header) || u32le(len(seal(header)))
    header = entry_1 || ... || entry_n, one per blob in pack order
    entry  = type(1) || length(u32le) [|| uncompressed_length(u32le) if compressed] || id(32)

Types: 0 data, 1 tree (37-byte entries); 2 compressed data, 3 compressed tree (41 bytes).
``PackWriter`` assembles one pack in memory and re-parses its own header before handing it out;
``parse_header`` is pure; ``read_header`` does the one tail read (plus one if the header is long).
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass

from ..errors import InvalidPackError
from ..store.base import FileType, Handle, Store
from .blob import BlobType
from .crypto import OVERHEAD, Key, MacError

ENTRY_SIZE = 37
COMPRESSED_ENTRY_SIZE = 41
HEADER_LENGTH_SIZE = 4
MAX_HEADER_SIZE = 16 * 1024 * 1024
MIN_PACK_SIZE = ENTRY_SIZE + OVERHEAD + HEADER_LENGTH_SIZE
_EAGER_TAIL = 15 * COMPRESSED_ENTRY_SIZE + OVERHEAD + HEADER_LENGTH_SIZE


@dataclass(frozen=True, slots=True)
class PackedBlob:
    """Where a blob sits in a pack; ``uncompressed_length`` is 0 for uncompressed blobs."""

    type: BlobType
    id: bytes
    offset: int
    length: int
    uncompressed_length: int = 0

    @property
    def plaintext_length(self) -> int:
        return self.uncompressed_length or self.length - OVERHEAD


def _encode_entry(b: PackedBlob) -> bytes:
    if b.uncompressed_length:
        return struct.pack("<BII", b.type + 2, b.length, b.uncompressed_length) + b.id
    return struct.pack("<BI", b.type, b.length) + b.id


class PackWriter:
    """Collects sealed blobs of one type into one pack."""

    def __init__(self, key: Key, blob_type: BlobType) -> None:
        self.key = key
        self.blob_type = blob_type
        self._parts: list[bytes] = []
        self._blobs: list[PackedBlob] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes of blobs written so far (the header is added by ``finish``)."""
        return self._size

    @property
    def count(self) -> int:
        return len(self._blobs)

    def add_sealed(self, blob_id: bytes, sealed: bytes, uncompressed_length: int) -> None:
        """Append an already sealed blob; ``uncompressed_length`` 0 means not compressed."""
        self._parts.append(sealed)
        self._blobs.append(PackedBlob(self.blob_type, blob_id, 0, len(sealed), uncompressed_length))
        self._size += len(sealed)

    def finish(self, shuffle: bool = True) -> tuple[str, bytes, list[PackedBlob]]:
        """Return ``(pack_id, pack_bytes, blobs)``; checks its own header first.

        Blobs are written in random order so that a pack does not reveal the order of a file's
        chunks (the chunking side channel, spec 10.5).
        """
        order = list(range(len(self._blobs)))
        if shuffle:
            random.shuffle(order)
        self._parts = [self._parts[i] for i in order]
        offset = 0
        blobs = []
        for i in order:
            b = self._blobs[i]
            blobs.append(PackedBlob(b.type, b.id, offset, b.length, b.uncompressed_length))
            offset += b.length
        self._blobs = blobs
        tail = pack_tail(self.key, blobs)
        self._parts.append(tail)
        data = b"".join(self._parts)
        self._parts = []
        pack_id = hashlib.sha256(data).hexdigest()
        check_tail(self.key, tail, len(data), pack_id, blobs)
        return pack_id, data, self._blobs


def pack_tail(key: Key, blobs: list[PackedBlob]) -> bytes:
    """What follows a pack's blobs: the sealed header of ``blobs`` and its length."""
    sealed_header = key.seal(b"".join(_encode_entry(b) for b in blobs))
    return sealed_header + struct.pack("<I", len(sealed_header))


def check_tail(key: Key, tail: bytes, pack_size: int, pack_id: str, blobs: list[PackedBlob]) -> None:
    """A writer re-parses the header it wrote: it must give back exactly ``blobs``."""
    if parse_header(key, tail, pack_size, pack_id) != blobs:
        raise InvalidPackError(pack_id, "written header does not parse back to its entries")


def header_size(blobs: list[PackedBlob]) -> int:
    """Size of the encrypted header plus length field for these entries."""
    n = sum(COMPRESSED_ENTRY_SIZE if b.uncompressed_length else ENTRY_SIZE for b in blobs)
    return n + OVERHEAD + HEADER_LENGTH_SIZE


def parse_header(key: Key, tail: bytes, pack_size: int, pack_id: str = "") -> list[PackedBlob]:
    """Parse the header from the last ``len(tail)`` bytes of a pack of ``pack_size`` bytes."""
    if pack_size < MIN_PACK_SIZE:
        raise InvalidPackError(pack_id, f"file is too small ({pack_size} bytes)")
    if len(tail) < HEADER_LENGTH_SIZE:
        raise InvalidPackError(pack_id, "short tail read")
    (hlen,) = struct.unpack("<I", tail[-4:])
    if hlen < OVERHEAD or hlen > pack_size - 4 or hlen > MAX_HEADER_SIZE:
        raise InvalidPackError(pack_id, f"invalid header length {hlen}")
    if hlen + 4 > len(tail):
        raise InvalidPackError(pack_id, f"tail of {len(tail)} bytes does not hold header of {hlen}")
    try:
        header = key.open(tail[len(tail) - 4 - hlen : len(tail) - 4])
    except MacError as e:
        raise InvalidPackError(pack_id, "header MAC verification failed (corrupt or foreign pack)") from e
    blobs: list[PackedBlob] = []
    pos = 0
    offset = 0
    while pos < len(header):
        t = header[pos]
        if t > 3:
            raise InvalidPackError(pack_id, f"invalid blob type {t} in header entry {len(blobs)}")
        size = COMPRESSED_ENTRY_SIZE if t >= 2 else ENTRY_SIZE
        if pos + size > len(header):
            raise InvalidPackError(pack_id, f"truncated header entry {len(blobs)}")
        if t >= 2:
            length, ulen = struct.unpack_from("<II", header, pos + 1)
            bid = header[pos + 9 : pos + 41]
        else:
            (length,) = struct.unpack_from("<I", header, pos + 1)
            ulen = 0
            bid = header[pos + 5 : pos + 37]
        blobs.append(PackedBlob(BlobType(t & 1), bytes(bid), offset, length, ulen))
        offset += length
        pos += size
    if offset != pack_size - 4 - hlen:
        raise InvalidPackError(pack_id, f"blobs cover {offset} bytes, but the header starts at {pack_size - 4 - hlen}")
    return blobs


def read_header(store: Store, key: Key, pack_id: str, size: int | None = None) -> list[PackedBlob]:
    """Read and parse a stored pack's header: one tail read, a second if the header is long."""
    h = Handle(FileType.PACK, pack_id)
    if size is None:
        size = store.stat(h)
    if size < MIN_PACK_SIZE:
        raise InvalidPackError(pack_id, f"file is too small ({size} bytes)")
    want = min(size, _EAGER_TAIL)
    tail = store.load(h, size - want, want)
    (hlen,) = struct.unpack("<I", tail[-4:])
    if hlen + 4 > want and hlen + 4 <= size and hlen <= MAX_HEADER_SIZE:
        tail = store.load(h, size - hlen - 4, hlen + 4)
    return parse_header(key, tail, size, pack_id)


__all__ = [
    "COMPRESSED_ENTRY_SIZE",
    "ENTRY_SIZE",
    "MAX_HEADER_SIZE",
    "PackWriter",
    "PackedBlob",
    "check_tail",
    "header_size",
    "pack_tail",
    "parse_header",
    "read_header",
]
