"""What a VM of an image snapshot needs from the host: the accelerator and the firmware.

KVM is used when it *works*, which an open ``/dev/kvm`` does not prove: in a nested VM KVM can
start and then fail in the firmware's first instructions ("KVM internal error", seen on these
machines). So the probe boots SeaBIOS with KVM and no disk and waits for its "No bootable
device" on the debug port; anything else (an error, an exit, 20 s of silence) means software
emulation (TCG). The verdict is cached per host boot, in the temp directory.

The firmware follows the disk: a GPT disk with an EFI system partition boots UEFI (OVMF); every
other disk (MBR, GPT with a BIOS boot partition) boots BIOS (SeaBIOS).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import E3Error
from ..sources.layout.model import DiskLayout

QEMU = "qemu-system-x86_64"
OVMF_CODE = ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = ("/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd")
PROBE_SECONDS = 20.0


class MachineError(E3Error):
    """The host cannot run the VM (QEMU or its firmware missing, an accelerator refused)."""


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg"
    reason: str


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise MachineError(f"{QEMU} is missing: install the Debian package qemu-system-x86")
    return path


def choose_accel(wanted: str = "auto") -> Accel:
    """``auto``: KVM if it works here, else TCG; ``kvm`` refuses to fall back; ``tcg`` always."""
    if wanted == "tcg":
        return Accel("tcg", "software emulation asked for")
    ok, why = kvm_works()
    if ok:
        return Accel("kvm", why)
    if wanted == "kvm":
        raise MachineError(f"KVM was asked for but does not work here: {why}")
    return Accel("tcg", f"software emulation: {why}")


@functools.cache
def kvm_works() -> tuple[bool, str]:
    """(usable, why); probed once per process and cached per host boot (see the docstring)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    cache = _probe_cache()
    if cache is not None and cache.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            doc = json.loads(cache.read_text())
            return bool(doc["ok"]), str(doc["why"])
    ok, why = _probe_kvm()
    if cache is not None:
        with contextlib.suppress(OSError):
            tmp = cache.with_name(cache.name + f".{os.getpid()}")
            tmp.write_text(json.dumps({"ok": ok, "why": why}))
            os.replace(tmp, cache)
    return ok, why


def _probe_cache() -> Path | None:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        qemu = os.stat(qemu_binary())
    except (OSError, MachineError):
        return None
    return Path(tempfile.gettempdir()) / f"e3backup-kvm-probe-{boot_id}-{qemu.st_mtime_ns}.json"


def _probe_kvm() -> tuple[bool, str]:
    cmd = [
        qemu_binary(),
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-machine",
        "q35",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "std",
        "-m",
        "64",
        "-chardev",
        "stdio,id=dbg,signal=off",
        "-device",
        "isa-debugcon,chardev=dbg,iobase=0x402",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = err = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + PROBE_SECONDS
    try:
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if key.fileobj is proc.stdout:
                    out += data
                else:
                    err += data
                if b"No bootable device" in out or b"Booting from" in out:
                    return True, "KVM runs the firmware (probed)"
                if b"KVM internal error" in err or b"error" in err.lower():
                    line = err.decode(errors="replace").strip().splitlines()[0]
                    return False, f"KVM fails to run the firmware ({line})"
                if not data:
                    sel.unregister(key.fileobj)
            if not sel.get_map():
                return False, f"KVM probe exited early ({err.decode(errors='replace').strip()[:200]})"
        return False, f"KVM did not get through the firmware in {PROBE_SECONDS:.0f} s"
    finally:
        sel.close()
        proc.kill()
        proc.wait()


def firmware_for(layout: DiskLayout) -> str:
    """``uefi`` for a GPT disk with an EFI system partition, else ``bios``."""
    if layout.table == "gpt" and any(p.type_name == "efi-system" for p in layout.partitions):
        return "uefi"
    return "bios"


def ovmf_files() -> tuple[str, str]:
    """(code, variables template) of OVMF."""
    for code, varstore in zip(OVMF_CODE, OVMF_VARS, strict=True):
        if os.path.exists(code) and os.path.exists(varstore):
            return code, varstore
    raise MachineError("UEFI firmware (OVMF) is missing: install the Debian package ovmf")


__all__ = ["Accel", "MachineError", "choose_accel", "firmware_for", "kvm_works", "ovmf_files", "qemu_binary"]
