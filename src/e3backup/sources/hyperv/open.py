"""``--host``: ``sim:DIR`` (the simulated host) or ``local`` (this machine's Hyper-V, through WMI)."""

from __future__ import annotations

import sys

from ...errors import UsageError
from .host import HyperVHost


def open_host(spec: str) -> HyperVHost:
    if spec.startswith("sim:"):
        from .sim import SimHost

        if not spec[4:]:
            raise UsageError("--host sim:DIR needs the simulated host's folder")
        return SimHost(spec[4:])
    if spec in ("local", ""):
        if sys.platform != "win32":
            raise UsageError(f"the local Hyper-V host needs Windows (this machine: {sys.platform}); "
                             "use --host sim:DIR for the simulated host")
        from .wmi import WmiHost

        host: HyperVHost = WmiHost()
        return host
    raise UsageError(f"unknown Hyper-V host {spec!r}: use local or sim:DIR")


__all__ = ["open_host"]
