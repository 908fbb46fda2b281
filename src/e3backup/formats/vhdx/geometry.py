"""The arithmetic of a VHDX's BAT ([MS-VHDX] 2.5): blocks, chunks and the interleaved entries.

Payload block i covers virtual bytes [i * BlockSize, (i + 1) * BlockSize). A chunk is
`chunk_ratio` payload blocks, the span one 1 MiB sector bitmap block describes:
chunk_ratio = 2^23 * LogicalSectorSize / BlockSize. In the BAT, the entries of a chunk's payload
blocks are followed by the entry of its sector bitmap block:

    P0 P1 ... P(cr-1) SB0 P(cr) ... P(2cr-1) SB1 ...

Dynamic and fixed files end with the last payload entry; differencing files end with a whole
chunk, that is with a sector bitmap entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from e3backup.formats.vhdx.constants import (
    MAX_BLOCK_SIZE,
    MAX_VIRTUAL_DISK_SIZE,
    MIN_BLOCK_SIZE,
    SECTOR_SIZES,
    SECTORS_PER_BITMAP_BLOCK,
)


@dataclass(frozen=True)
class Geometry:
    """Block size, sector size and virtual size, with everything derived from them."""

    virtual_size: int
    block_size: int
    logical_sector_size: int
    has_parent: bool = False

    def __post_init__(self) -> None:
        problem = geometry_problem(self.virtual_size, self.block_size, self.logical_sector_size)
        if problem:
            raise ValueError(problem)

    @property
    def chunk_ratio(self) -> int:
        return SECTORS_PER_BITMAP_BLOCK * self.logical_sector_size // self.block_size

    @property
    def payload_blocks(self) -> int:
        return -(-self.virtual_size // self.block_size)

    @property
    def sector_bitmap_blocks(self) -> int:
        return -(-self.payload_blocks // self.chunk_ratio)

    @property
    def sectors_per_block(self) -> int:
        return self.block_size // self.logical_sector_size

    @property
    def bat_entries(self) -> int:
        """How many BAT entries the file needs (2.5: TotalBATEntries)."""
        if self.has_parent:
            return self.sector_bitmap_blocks * (self.chunk_ratio + 1)
        if self.payload_blocks == 0:
            return 0
        return self.payload_blocks + (self.payload_blocks - 1) // self.chunk_ratio

    def payload_entry_index(self, block: int) -> int:
        """Index in the BAT of payload block `block`."""
        return block + block // self.chunk_ratio

    def sector_bitmap_entry_index(self, chunk: int) -> int:
        """Index in the BAT of the sector bitmap block of chunk `chunk`."""
        return chunk * (self.chunk_ratio + 1) + self.chunk_ratio

    def block_length(self, block: int) -> int:
        """Virtual bytes payload block `block` covers (the last one may be short)."""
        return min(self.block_size, self.virtual_size - block * self.block_size)


def geometry_problem(virtual_size: int, block_size: int, logical_sector_size: int) -> str | None:
    """Why these parameters make no valid VHDX, or None when they do."""
    if logical_sector_size not in SECTOR_SIZES:
        return f"logical sector size {logical_sector_size} is not 512 or 4096"
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
        return f"block size {block_size} is not a power of two between 1 MiB and 256 MiB"
    if virtual_size <= 0 or virtual_size > MAX_VIRTUAL_DISK_SIZE:
        return f"virtual size {virtual_size} is not between 1 byte and 64 TiB"
    if virtual_size % logical_sector_size:
        return f"virtual size {virtual_size} is not a multiple of the sector size {logical_sector_size}"
    return None


__all__ = ["Geometry", "geometry_problem"]
