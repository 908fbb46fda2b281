"""`open_export`: an image snapshot served over NBD, on a unix socket or TCP (``docs/instant.md``).

The export holds a shared repository lock while it runs (a prune cannot remove its packs), loads
the index once, and serves until closed. Without an overlay it is read-only; with one, writes go
to the overlay file (``overlay.py``) and never to the repository.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import UsageError
from ..repo.repository import Repository
from ..repo.snapshot_filter import SnapshotFilter
from ..sources.stored_image import ImageSnapshot, image_snapshots, load_image_snapshot
from .disk import DEFAULT_READ_AHEAD, SnapshotDisk
from .nbdserver import Disk, NbdServer
from .overlay import OverlayDisk

MAX_ERRORS = 100


@dataclass(frozen=True)
class NbdAddress:
    """``unix:PATH`` or ``tcp:HOST:PORT`` (port 0: any free port)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> NbdAddress:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", path=rest)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if host and port.isdigit() and int(port) < 65536:
                return cls("tcp", host=host, port=int(port))
        raise UsageError(f"NBD address {text!r}: give unix:PATH or tcp:HOST:PORT")

    def listen(self) -> socket.socket:
        if self.kind == "unix":
            _remove_stale_socket(self.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.path)
            except OSError as e:
                sock.close()
                raise UsageError(f"cannot listen on unix socket {self.path}: {e.strerror}") from None
        else:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family = infos[0][0] if infos else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(infos[0][4])
            except OSError as e:
                sock.close()
                raise UsageError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        sock.listen(16)
        return sock


def _remove_stale_socket(path: str) -> None:
    """A socket nobody listens on (left by a killed server) is removed; anything else is refused."""
    if not os.path.lexists(path):
        return
    if stat.S_ISSOCK(os.lstat(path).st_mode):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
            return
        except OSError:
            pass
        finally:
            probe.close()
        raise UsageError(f"NBD socket {path} is in use by another server")
    raise UsageError(f"{path} exists and is not a socket: choose another path for the NBD socket")


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
