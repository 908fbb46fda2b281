"""VSS snapshots of Windows volumes (``C:``, ``\\\\?\\Volume{GUID}\\``) for a run.

The shadow copy is created before anything is read and deleted when the context exits, whatever
the exit (an error, ``Cancelled``, a service stop); one that cannot be deleted stays in the
journal and is swept at the next agent start. With a ``Win32`` seam the provider also asks NTFS,
on the shadow copy, for its used clusters (cross-checked against our ``$Bitmap`` reader by
``sources.volume_hints``) and for the extents of ``pagefile.sys``, ``hiberfil.sys`` and
``swapfile.sys``, which are not imaged. Failures there only lose the hint, never the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from e3backup.events import Event, EventCode
from e3backup.platform.windows.ioctl import StructError
from e3backup.platform.windows.volume import cluster_size, file_runs, used_clusters
from e3backup.platform.windows.vss import ShadowCopies, ShadowCopy, ShadowCopyError, volume_root
from e3backup.platform.windows.win32 import Win32, Win32Error
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.base import Snapshot

SKIPPED_FILES = ("pagefile.sys", "hiberfil.sys", "swapfile.sys")


class VssSnapshotProvider:
    name = "vss"

    def __init__(
        self, shadows: ShadowCopies, api: Win32 | None = None, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.shadows = shadows
        self.api = api
        self._emit = on_event or (lambda _e: None)

    @contextmanager
    def snapshot(self, source: str) -> Iterator[Snapshot]:
        try:
            shadow = self.shadows.create(source)
        except ShadowCopyError as e:
            self._emit(Event(EventCode.VSS_SNAPSHOT_FAILED, str(e),
                             details={"volume": e.volume or source, "return_code": e.code}))
            raise SnapshotError(str(e)) from e
        self._emit(Event(EventCode.VSS_SNAPSHOT_CREATED,
                         f"shadow copy {shadow.id} of {volume_root(source)} at {shadow.device_object}",
                         details={"volume": source, "shadow_id": shadow.id, "device": shadow.device_object}))
        try:
            used, skip, names = self._hints(shadow)
            yield Snapshot(shadow.device_object, source, self.name, shadow.id, used, skip, names, consistency="crash")
        finally:
            try:
                self.shadows.delete(shadow.id)
            except ShadowCopyError as e:
                self._emit(Event(EventCode.VSS_SNAPSHOT_DELETE_FAILED,
                                 f"{e}; it is deleted at the agent's next start",
                                 details={"shadow_id": shadow.id}))

    def _hints(
        self, shadow: ShadowCopy
    ) -> tuple[tuple[tuple[int, int], ...] | None, tuple[tuple[int, int], ...], tuple[str, ...]]:
        return ntfs_hints(self.api, shadow.device_object)


def ntfs_hints(
    api: Win32 | None, device: str
) -> tuple[tuple[tuple[int, int], ...] | None, tuple[tuple[int, int], ...], tuple[str, ...]]:
    """NTFS's used clusters and the page/hibernation files' extents on the shadow ``device``;
    ``(None, (), ())`` without a seam or an answer (our own bitmap reader then decides alone)."""
    if api is None:
        return None, (), ()
    try:
        handle = api.open_device(device)
    except Win32Error:
        return None, (), ()
    try:
        cluster = cluster_size(api, handle, device)
        used = tuple((lcn * cluster, n * cluster) for lcn, n in used_clusters(api, handle, device))
    except (Win32Error, StructError):
        return None, (), ()  # not NTFS, or no answer: our own bitmap reader decides alone
    finally:
        api.close(handle)
    skip: list[tuple[int, int]] = []
    names: list[str] = []
    for name in SKIPPED_FILES:
        path = f"{device}\\{name}"
        try:
            fh = api.open_device(path)
        except Win32Error:
            continue  # absent (or unreadable): nothing to skip
        try:
            runs = file_runs(api, fh, path)
        except (Win32Error, StructError):
            continue
        finally:
            api.close(fh)
        skip += [(lcn * cluster, n * cluster) for _vcn, n, lcn in runs if lcn >= 0]
        names.append(name)
    return used, tuple(skip), tuple(names)


__all__ = ["SKIPPED_FILES", "VssSnapshotProvider", "ntfs_hints"]
