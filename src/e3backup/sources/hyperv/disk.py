"""A checkpoint's frozen disk as the image engine's `Device` and snapshot provider.

The image engine reads through `Device.read_into`; here that is our `VhdxReader` over the frozen
VHDX and its AVHDX parents (never the host's mounted disk), so what the repository stores is the
virtual disk the guest sees. The checkpoint itself is the point-in-time view, so the provider only
hands over the frozen file: the checkpoint's lifetime is the engine's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ...formats.vhdx.reader import VhdxReader
from ..device import Device
from ..snapshot.base import Snapshot


class VhdxDevice(Device):
    """The virtual disk inside a VHDX chain, read-only, thread-safe (positional reads)."""

    def __init__(self, path: str) -> None:
        self._reader = VhdxReader(path)
        super().__init__(path, -1, self._reader.virtual_size, self._reader.logical_sector_size, False)

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        view = memoryview(buf).cast("B")
        n = max(0, min(len(view), self.size - offset))
        if n:
            self._reader.read_into(offset, view[:n])
        return n

    def read_uncached(self, offset: int, buf: bytearray | memoryview) -> int:
        return self.read_into(offset, buf)  # the VHDX file's own reads; no device cache to bypass

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(max(0, min(length, self.size - offset)))
        self.read_into(offset, buf)
        return bytes(buf)

    def close(self) -> None:
        self._reader.close()

    def __repr__(self) -> str:
        return f"VhdxDevice({self.path!r}, size={self.size})"


class CheckpointDiskProvider:
    """Snapshot provider for `run_image_backup`: the source is the VM's disk, the device to read
    the checkpoint's frozen file."""

    name = "hyperv-checkpoint"

    def __init__(self, frozen_path: str, checkpoint_id: str) -> None:
        self.frozen_path = frozen_path
        self.checkpoint_id = checkpoint_id

    @contextmanager
    def snapshot(self, source: str) -> Iterator[Snapshot]:
        yield Snapshot(self.frozen_path, source, self.name, self.checkpoint_id)


__all__ = ["CheckpointDiskProvider", "VhdxDevice"]
