"""Storage diagnostics (the preflight probe) on top of the storage layer."""

from .probe import ProbeResult, probe

__all__ = ["ProbeResult", "probe"]
