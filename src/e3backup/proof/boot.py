"""The boot proof: boot the image snapshot headless and wait for a sign of life.

The VM is the instant-restore one (``instant.vm.boot_snapshot``: QEMU on the snapshot's NBD
export with a throw-away overlay, KVM where ``/dev/kvm`` works, else software emulation). Signs
of life, whichever comes first:

- the marker (default ``login:``) on the serial console: a Linux guest with a serial getty, or
  a test disk's init;
- the screen stops changing for ``screen_stable`` seconds (a Windows or graphical login
  screen), long enough that a firmware or boot-loader pause does not count.

Neither within ``boot_timeout``, or QEMU stopping first, fails the proof. The screen is taken
(QMP ``screendump``, PNG) either way, so a failed boot shows what the guest showed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Cancelled, E3Error
from ..repo.repository import Repository
from .options import ProofOptions
from .result import Check

if TYPE_CHECKING:
    from ..instant.vm import BootedVM

QEMU = "qemu-system-x86_64"
POLL = 1.0  # seconds between two looks at the screen while waiting for the marker
SETTLE = 0.5  # then: seconds between two screenshots until two are the same
SETTLE_MAX = 10.0


def boot_unavailable() -> str:
    """Why this machine cannot boot an image ('' when it can)."""
    if importlib.util.find_spec("e3backup.instant") is None:
        return "this build has no instant-restore VM (e3backup.instant)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    return ""


def prove_boot(repo: Repository, snapshot_id: str, options: ProofOptions,
               cancel: threading.Event) -> tuple[Check, bytes | None]:
    """Boot, wait for a sign of life, take the screen, stop: (the boot check, the PNG)."""
    from ..instant.vm import boot_snapshot

    started = time.monotonic()
    try:
        # the VM's work directory is its own short temporary one: a unix socket path is limited
        # to 107 bytes, which a deep scratch directory would exceed
        with boot_snapshot(repo, snapshot_id, memory_mb=options.memory_mb) as vm:
            work = vm.workdir
            how = f"{vm.firmware.upper()}, {'KVM' if vm.accel == 'kvm' else 'software emulation'}"
            sign = _wait_for_life(vm, options, cancel, work)
            took = time.monotonic() - started
            png = _settled_screen(vm, work) if vm.running else None
            errors = vm.disk_errors
    except Cancelled:
        raise
    except E3Error as e:
        return Check("boot", False, f"the VM could not be started: {e}"), None
    if errors:
        return Check("boot", False, f"the disk could not be read while booting: {errors[0]}"), png
    if sign:
        return Check("boot", True, f"{sign} after {took:.1f} s ({how})"), png
    return Check("boot", False, f"no sign of life within {options.boot_timeout:.0f} s ({how}): no "
                                f"{options.marker!r} on the serial console and the screen never settled"), png


def _settled_screen(vm: BootedVM, work: Path) -> bytes:
    """The screen once it has stopped changing (what the guest printed with its marker may
    reach the screen a moment after the serial console), at most ``SETTLE_MAX`` seconds on."""
    shot = work / "screen.png"
    last = vm.screendump(shot).read_bytes()
    for _ in range(int(SETTLE_MAX / SETTLE)):
        if vm.wait(SETTLE) is not None:  # waits SETTLE seconds unless QEMU exits
            break
        now = vm.screendump(shot).read_bytes()
        if now == last:
            break
        last = now
    return last


def _wait_for_life(vm: BootedVM, options: ProofOptions, cancel: threading.Event, work: Path) -> str:
    """What showed the guest is alive ('' if nothing did before the timeout or the VM's end)."""
    probe = work / "probe.png"
    deadline = time.monotonic() + options.boot_timeout
    last: bytes | None = None
    same_since = time.monotonic()
    while True:
        remaining = deadline - time.monotonic()
        if vm.wait_for_serial(options.marker, max(0.0, min(POLL, remaining))):
            return f"the serial console showed {options.marker!r}"
        if cancel.is_set():
            raise Cancelled("proof cancelled while the backup was booting")
        if not vm.running or remaining <= 0:
            return ""
        digest = hashlib.sha256(vm.screendump(probe).read_bytes()).digest()
        now = time.monotonic()
        if digest != last:
            last, same_since = digest, now
        elif now - same_since >= options.screen_stable:
            return f"the screen stopped changing for {options.screen_stable:.0f} s"


__all__ = ["QEMU", "boot_unavailable", "prove_boot"]
