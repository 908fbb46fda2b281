"""What NTFS itself says about a volume (a shadow copy): its used clusters and a file's extents.

``used_clusters`` pages ``FSCTL_GET_VOLUME_BITMAP``: each answer starts at a StartingLcn rounded
down to a multiple of 8 and holds BitmapSize = the clusters left to the end of the volume, but
with ``ERROR_MORE_DATA`` only ``(bytes returned - 16) * 8`` of them; the next call starts after
the last valid bit. ``file_runs`` pages ``FSCTL_GET_RETRIEVAL_POINTERS`` the same way (the next
StartingVcn is the last extent's NextVcn); a file with no clusters answers
``ERROR_HANDLE_EOF``. Both return plain tuples; ``sources.windows`` turns them into byte extents
and cross-checks them with our own ``$Bitmap`` reader.
"""

from __future__ import annotations

import numpy as np

from .ioctl import (
    FSCTL_GET_NTFS_VOLUME_DATA,
    FSCTL_GET_RETRIEVAL_POINTERS,
    FSCTL_GET_VOLUME_BITMAP,
    StructError,
    parse_cluster_size,
    parse_retrieval_pointers,
    parse_volume_bitmap,
    starting_lcn,
    starting_vcn,
)
from .win32 import ERROR_HANDLE_EOF, ERROR_MORE_DATA, Win32, Win32Error

BITMAP_BUFFER = 16 + (1 << 20)  # 8 Mi clusters (32 GiB of 4 KiB clusters) per call
RETRIEVAL_BUFFER = 16 + 16 * 1024
MAX_PAGES = 1 << 20


def cluster_size(api: Win32, handle: int, path: str = "") -> int:
    error, out = api.device_io_control(handle, FSCTL_GET_NTFS_VOLUME_DATA, b"", 512)
    if error:
        raise Win32Error("FSCTL_GET_NTFS_VOLUME_DATA", error, path)
    return parse_cluster_size(out)


def used_clusters(api: Win32, handle: int, path: str = "", buffer: int = BITMAP_BUFFER) -> list[tuple[int, int]]:
    """Runs of allocated clusters as (first LCN, count), in order."""
    runs: list[tuple[int, int]] = []
    lcn = 0
    for _ in range(MAX_PAGES):
        error, out = api.device_io_control(handle, FSCTL_GET_VOLUME_BITMAP, starting_lcn(lcn), buffer)
        if error not in (0, ERROR_MORE_DATA):
            raise Win32Error("FSCTL_GET_VOLUME_BITMAP", error, path)
        page = parse_volume_bitmap(out)
        if page.starting_lcn > lcn or lcn - page.starting_lcn >= 8:
            raise StructError(f"VOLUME_BITMAP_BUFFER: StartingLcn {page.starting_lcn} for a request at {lcn}")
        if error == ERROR_MORE_DATA and page.bits <= lcn - page.starting_lcn:
            raise StructError("VOLUME_BITMAP_BUFFER: ERROR_MORE_DATA without a single new bit")
        _add_runs(runs, page.bitmap, page.starting_lcn, max(lcn - page.starting_lcn, 0), page.bits)
        if error == 0:
            return runs
        lcn = page.starting_lcn + page.bits
    raise StructError(f"FSCTL_GET_VOLUME_BITMAP on {path}: more than {MAX_PAGES} pages")


def _add_runs(runs: list[tuple[int, int]], bitmap: bytes, base: int, first: int, bits: int) -> None:
    """Append the set bits ``first..bits`` of ``bitmap`` (LSB first, as NTFS stores them)."""
    flags = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=bits, bitorder="little")[first:]
    edges = np.flatnonzero(np.diff(flags, prepend=np.uint8(0), append=np.uint8(0)))
    for s, e in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        start = base + first + s
        if runs and runs[-1][0] + runs[-1][1] == start:
            runs[-1] = (runs[-1][0], runs[-1][1] + e - s)
        else:
            runs.append((start, e - s))


def file_runs(api: Win32, handle: int, path: str = "") -> list[tuple[int, int, int]]:
    """The file's extents as (VCN, clusters, LCN); LCN -1 for sparse or compressed holes."""
    runs: list[tuple[int, int, int]] = []
    vcn = 0
    for _ in range(MAX_PAGES):
        error, out = api.device_io_control(handle, FSCTL_GET_RETRIEVAL_POINTERS, starting_vcn(vcn), RETRIEVAL_BUFFER)
        if error == ERROR_HANDLE_EOF:
            return runs  # resident, or empty: no clusters of its own
        if error not in (0, ERROR_MORE_DATA):
            raise Win32Error("FSCTL_GET_RETRIEVAL_POINTERS", error, path)
        page = parse_retrieval_pointers(out)
        runs.extend(page.runs)
        if error == 0:
            return runs
        if page.next_vcn <= vcn:
            raise StructError("RETRIEVAL_POINTERS_BUFFER: ERROR_MORE_DATA without progress")
        vcn = page.next_vcn
    raise StructError(f"FSCTL_GET_RETRIEVAL_POINTERS on {path}: more than {MAX_PAGES} pages")


__all__ = ["cluster_size", "file_runs", "used_clusters"]
