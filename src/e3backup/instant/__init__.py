"""Instant restore: an image snapshot served as a live disk over NBD, and booted in a VM
(``docs/instant.md``).

- ``export``: ``open_export`` serves a snapshot (read-only, or writable through a copy-on-write
  overlay that never touches the repository) on a unix socket or TCP;
- ``vm``: ``boot_snapshot`` boots a snapshot in QEMU on that export and returns a handle to
  watch the serial console, take screenshots and stop it.

The names below load their modules when first used: the command line checks an address
(``address``) before the heavy imports, which it makes while the key is derived.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .address import NbdAddress
    from .export import Export, open_export
    from .machine import MachineError
    from .overlay import OverlayError
    from .vm import BootedVM, BootError, boot_snapshot

_WHERE = {
    "NbdAddress": "address",
    "Export": "export",
    "open_export": "export",
    "MachineError": "machine",
    "OverlayError": "overlay",
    "BootedVM": "vm",
    "BootError": "vm",
    "boot_snapshot": "vm",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


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
