"""The boot proof: boot the image snapshot headless and wait for a sign of life.

The VM is the instant-restore one (``instant.vm.boot_snapshot``: QEMU on the snapshot's NBD
export with a throw-away overlay, KVM where ``/dev/kvm`` works, else software emulation). Signs
of life, whichever comes first:

- the marker (default ``login:``) on the serial console: a Linux guest with a serial getty, or
  a test disk's init;
- the screen stops changing for ``screen_stable`` seconds in a graphics mode (a Windows or
  graphical login screen). A screen that stops in VGA text mode does not count: that is where
  firmware and boot loaders stop with their errors ("Missing operating system"); a text-mode
  guest shows it is alive with its marker on the serial console.

Neither within ``boot_timeout``, or QEMU stopping first, fails the proof. The screen is taken
(QMP ``screendump``, PNG) either way, so a failed boot shows what the guest showed.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import threading
import time
import zlib
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
CURSOR_ROWS = 6  # scanlines two screens may differ in and still be the same screen


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
            sign, why_not = _wait_for_life(vm, options, cancel, work)
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
                                f"{options.marker!r} on the serial console and {why_not}"), png


def _settled_screen(vm: BootedVM, work: Path) -> bytes:
    """The screen once it has stopped changing (what the guest printed with its marker may
    reach the screen a moment after the serial console), at most ``SETTLE_MAX`` seconds on."""
    shot = work / "screen.png"
    last = vm.screendump(shot).read_bytes()
    for _ in range(int(SETTLE_MAX / SETTLE)):
        if vm.wait(SETTLE) is not None:  # waits SETTLE seconds unless QEMU exits
            break
        now = vm.screendump(shot).read_bytes()
        if same_screen(now, last):
            break
        last = now
    return last


def _wait_for_life(vm: BootedVM, options: ProofOptions, cancel: threading.Event, work: Path) -> tuple[str, str]:
    """(what showed the guest is alive, or '' with why not) by the timeout or the VM's end."""
    probe = work / "probe.png"
    begun = time.monotonic()
    deadline = begun + options.boot_timeout
    last: bytes | None = None
    same_since = begun
    stuck = ""
    while True:
        remaining = deadline - time.monotonic()
        if vm.wait_for_serial(options.marker, max(0.0, min(POLL, remaining))):
            return f"the serial console showed {options.marker!r}", ""
        if cancel.is_set():
            raise Cancelled("proof cancelled while the backup was booting")
        if not vm.running:
            return "", "the VM stopped on its own"
        if remaining <= 0:
            return "", stuck or "the screen never settled"
        screen = vm.screendump(probe).read_bytes()
        now = time.monotonic()
        if last is None or not same_screen(last, screen):
            last, same_since, stuck = screen, now, ""
        elif now - same_since >= options.screen_stable:
            if not text_mode(screen):
                return f"the screen stopped changing for {options.screen_stable:.0f} s", ""
            # firmware and boot loaders stop in text mode ("Missing operating system"), and a slow
            # boot may show the loader's screen for long: not a sign of life, keep waiting
            stuck = f"the screen stayed in text mode from {same_since - begun:.0f} s after power-on (a " \
                    "firmware or boot loader message: see the screenshot)"


def _rows(png: bytes) -> list[bytes]:
    """The PNG's filtered scanlines (IDAT inflated, cut by the stride); enough to compare two
    screens of the same size row by row without decoding the filters."""
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color, 3)
    stride = 1 + width * channels * max(depth // 8, 1)
    data, pos = b"", 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            data += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(data)
    return [raw[i:i + stride] for i in range(0, stride * height, stride)]


def same_screen(a: bytes, b: bytes) -> bool:
    """Whether two screendumps show the same screen, a blinking text cursor aside (it changes a
    couple of scanlines; a filter carries a change one line further)."""
    if a == b:
        return True
    if a[16:24] != b[16:24]:
        return False
    ra, rb = _rows(a), _rows(b)
    return sum(x != y for x, y in zip(ra, rb, strict=True)) <= CURSOR_ROWS


def text_mode(png: bytes) -> bool:
    """Whether a screendump is of a VGA text mode (80 columns of 8- or 9-pixel glyphs)."""
    width, height = struct.unpack(">II", png[16:24])
    return width in (640, 720) and height in (400, 800)


__all__ = ["QEMU", "boot_unavailable", "prove_boot"]
