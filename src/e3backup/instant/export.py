"""`open_export`: an image snapshot served over NBD, on a unix socket or TCP (``docs/instant.md``).

The export holds a shared repository lock while it runs (a prune cannot remove its packs), loads
the index once, and serves until closed. Without an overlay it is read-only; with one, writes go
to the overlay file (``overlay.py``) and never to the repository.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..repo.repository import Repository
from ..repo.snapshot_filter import SnapshotFilter
from ..sources.stored_image import ImageSnapshot, image_snapshots, load_image_snapshot
from .address import NbdAddress
from .disk import DEFAULT_READ_AHEAD, SnapshotDisk
from .nbdserver import Disk, NbdServer
from .overlay import OverlayDisk

MAX_ERRORS = 100


@dataclass
class Export:
    """A running export: where it listens, what it serves."""

    image: ImageSnapshot
    address: NbdAddress
    """Where it listens (for TCP, the port actually bound)."""
    disk: Disk
    overlay: OverlayDisk | None
    errors: list[str] = field(default_factory=list)
    """Requests that failed on the repository side (each names what broke)."""

    @property
    def uri(self) -> str:
        """The NBD URI clients take (``qemu-img``, ``nbdinfo``, ``nbdcopy``)."""
        if self.address.kind == "unix":
            return f"nbd+unix:///?socket={self.address.path}"
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"nbd://{host}:{self.address.port}"

    @property
    def snapshot_id(self) -> str:
        return self.image.snapshot.id


@contextlib.contextmanager
def open_export(
    repo: Repository,
    snapshot: str,
    address: NbdAddress,
    *,
    overlay: str | None = None,
    select: SnapshotFilter | None = None,
    cache_bytes: int = 256 << 20,
    read_ahead: int = DEFAULT_READ_AHEAD,
    on_error: Callable[[str], None] | None = None,
) -> Iterator[Export]:
    """Serve image snapshot ``snapshot`` (an ID, a prefix or ``latest``, narrowed by ``select``)
    at ``address`` until the block ends. ``overlay``: the copy-on-write file that makes the
    export writable. A unix socket made here is removed at the end."""
    with repo.lock():
        repo.load_index()
        snap = repo.find_snapshot(snapshot, filter=image_snapshots(select))
        image = load_image_snapshot(repo, snap)
        base = SnapshotDisk(repo, image, cache_bytes, read_ahead)
        layer: OverlayDisk | None = None
        try:
            layer = OverlayDisk(base, overlay, snap.id) if overlay else None
            listener = address.listen()
        except BaseException:
            base.close()
            if layer is not None:
                layer.close()
            raise
        if address.kind == "tcp":
            address = NbdAddress("tcp", host=address.host, port=listener.getsockname()[1])
        disk: Disk = layer or base
        export = Export(image, address, disk, layer)

        def failed(message: str) -> None:
            if len(export.errors) < MAX_ERRORS:  # a damaged blob fails every read of it: keep the first
                export.errors.append(message)
            if on_error is not None:
                on_error(message)

        server = NbdServer(
            disk, listener, name=snap.short_id, description=f"e3backup snapshot {snap.id}", on_error=failed
        )
        server.start()
        try:
            yield export
        finally:
            server.close()
            base.close()
            if layer is not None:
                layer.close()
            if address.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)


__all__ = ["Export", "NbdAddress", "open_export"]
