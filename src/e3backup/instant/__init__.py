"""Instant restore: an image snapshot served as a live disk over NBD, and booted in a VM
(``docs/instant.md``).

- ``export``: ``open_export`` serves a snapshot (read-only, or writable through a copy-on-write
  overlay that never touches the repository) on a unix socket or TCP;
- ``vm``: ``boot_snapshot`` boots a snapshot in QEMU on that export and returns a handle to
  watch the serial console, take screenshots and stop it.
"""

from .export import Export, NbdAddress, open_export
from .machine import MachineError
from .overlay import OverlayError
from .vm import BootedVM, BootError, boot_snapshot

__all__ = [
    "BootError",
    "BootedVM",
    "Export",
    "MachineError",
    "NbdAddress",
    "OverlayError",
    "boot_snapshot",
    "open_export",
]
