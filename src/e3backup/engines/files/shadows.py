"""Windows: a VSS shadow copy of every volume a files backup reads, for the run.

Each drive among the targets (``C:\\Users\\a`` -> ``C:``) gets a ClientAccessible shadow copy
(``sources.snapshot.vss``: journal, sweep, delete on every exit); the ``PathStyle`` the walker
gets then reads ``C:\\Users\\a`` from ``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN\\Users\\a``
(consistent, and files other processes hold open are readable) while the tree keeps the user's
names. A volume VSS cannot shadow (a share, FAT, a failure: ``VSS_SNAPSHOT_FAILED``) is read
live, as without VSS. ``join`` is the seam that places a shadow copy's files (tests: a folder).
"""

from __future__ import annotations

import ntpath
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from ...contract import OnEvent, emit
from ...events import EventCode
from ...platform.windows.shares import ShareError, connected
from ...platform.windows.vss import ShadowCopies
from ...platform.windows.win32 import Win32
from ...sources.errors import SnapshotError
from ...sources.snapshot.appvss import AppConsistentVss, AppVssError
from ...sources.snapshot.vss import VssSnapshotProvider
from .targets import PathStyle, long_path, windows_user_path


def _device_join(device: str, rest: str) -> bytes:
    return os.fsencode(device + rest)


@dataclass(frozen=True)
class VolumeShadows:
    shadows: ShadowCopies
    join: Callable[[str, str], bytes] = _device_join  # (DeviceObject, "\\Users\\a") -> where to read
    app: AppConsistentVss | None = None  # policy vss_consistency_level application: one set, with writers


@dataclass(frozen=True)
class ShareLogin:
    """Connect the run's UNC shares as ``user`` for the run (``platform.windows.shares``)."""

    api: Win32
    user: str
    password: str = field(repr=False)


@contextmanager
def shares_connected(paths: list[str], login: ShareLogin, on_event: OnEvent | None) -> Iterator[list[str]]:
    """``SHARE_CONNECT_FAILED`` (share, reason, Win32 code; never the password) and the error when a
    share cannot be connected: the run fails before anything is written."""
    try:
        with connected(login.api, paths, login.user, login.password) as shares:
            yield shares
    except ShareError as e:
        emit(on_event, EventCode.SHARE_CONNECT_FAILED, str(e), share=e.share, reason=e.reason, win32_error=e.code,
             user=login.user)
        raise


@contextmanager
def shadowed(paths: list[str], vss: VolumeShadows, on_event: OnEvent | None,
             warnings: list[str] | None = None, cancel: threading.Event | None = None) -> Iterator[PathStyle]:
    """``warnings`` gets what makes the run a warning: a failed VSS writer, a fallback;
    ``cancel`` (the run's) ends the VSS writers' sequence."""
    drives = sorted({d.upper() for d in (ntpath.splitdrive(p)[0] for p in paths) if len(d) == 2 and d[1] == ":"})
    with ExitStack() as stack:
        devices: dict[str, str] = {}
        if vss.app is not None and drives:
            devices = _app_consistent(stack, drives, vss.app, on_event, warnings if warnings is not None else [],
                                      cancel)
        provider = VssSnapshotProvider(vss.shadows, None, on_event)
        for drive in drives:
            if drive in devices:
                continue
            try:
                devices[drive] = stack.enter_context(provider.snapshot(drive)).device_path
            except SnapshotError:
                continue  # VSS_SNAPSHOT_FAILED said why; this volume is read live

        def to_fs(path: bytes) -> bytes:
            text = os.fsdecode(path)
            drive, rest = ntpath.splitdrive(text)
            device = devices.get(drive.upper())
            return vss.join(device, rest) if device is not None else long_path(path)

        roots = {os.fsdecode(vss.join(dev, "")): drive for drive, dev in devices.items()}

        def to_user(path: bytes) -> str:
            text = os.fsdecode(path)
            for root, drive in roots.items():
                if text.startswith(root):
                    return windows_user_path(os.fsencode(drive + text[len(root):].replace("/", "\\")))
            return windows_user_path(path)

        yield PathStyle(True, to_fs, to_user)


def _app_consistent(stack: ExitStack, drives: list[str], app: AppConsistentVss,
                    on_event: OnEvent | None, warnings: list[str], cancel: threading.Event | None) -> dict[str, str]:
    """Every drive in one application-consistent set; when the sequence fails, nothing (each
    drive then gets its crash-consistent copy, ``VSS_CONSISTENCY_FALLBACK``), unless the policy
    says a writer failure fails the run."""
    app = AppConsistentVss(app.create, app.settings, on_event, app.clock, None if cancel else app.pause,
                           cancel)  # this run's events and cancel
    try:
        shadow_set = stack.enter_context(app.snapshot_set(drives))
    except AppVssError as e:
        if e.writers or app.settings.writer_failure == "fail":
            emit(on_event, EventCode.VSS_SNAPSHOT_FAILED, str(e), volumes=drives, writers=list(e.writers))
            raise
        emit(on_event, EventCode.VSS_CONSISTENCY_FALLBACK, f"{e}; taking crash-consistent shadow copies instead",
             volumes=drives)
        warnings.append(f"application-consistent snapshot failed: {e}")
        return {}
    warnings.extend(shadow_set.warnings)
    emit(on_event, EventCode.VSS_SNAPSHOT_CREATED,
         f"application-consistent snapshot set {shadow_set.set_id} of {', '.join(drives)} "
         f"({len(shadow_set.selected)} component(s))",
         snapshot_set=shadow_set.set_id, consistency="application", devices=dict(shadow_set.devices),
         writers=sorted({w.name for w, _c in shadow_set.selected}), excluded_writers=shadow_set.excluded)
    return {drive: shadow_set.devices[drive + "\\"] for drive in drives}


__all__ = ["ShareLogin", "VolumeShadows", "shadowed", "shares_connected"]
