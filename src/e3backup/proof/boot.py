"""The boot proof: boot the restored image headless and wait for a sign of life.

Uses the instant-restore VM (``e3backup.instant.vm``): QEMU with KVM where ``/dev/kvm`` works,
software emulation otherwise.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading

from .options import ProofOptions
from .result import Check

QEMU = "qemu-system-x86_64"


def boot_unavailable() -> str:
    """Why this machine cannot boot an image ('' when it can)."""
    if importlib.util.find_spec("e3backup.instant.vm") is None:
        return "this build has no instant-restore VM (e3backup.instant)"
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    return ""


def prove_boot(image: str, firmware: str, options: ProofOptions, cancel: threading.Event) -> tuple[Check, bytes | None]:
    raise RuntimeError(boot_unavailable() or "boot proof pending")


__all__ = ["QEMU", "boot_unavailable", "prove_boot"]
