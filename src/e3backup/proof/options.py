"""Options of a proof (``run_proof``), resolved by the caller (the agent from the job's policy)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SAMPLE_FILES = 20
DEFAULT_SAMPLE_BYTES = 256 << 20
DEFAULT_BOOT_TIMEOUT = 180.0
DEFAULT_MARKER = "login:"
DEFAULT_SCREEN_STABLE = 30.0


@dataclass(frozen=True)
class ProofOptions:
    snapshot: str
    """Snapshot ID (or unique prefix) to prove."""
    scratch_dir: str
    """Where restored samples and the raw image go; removed when the proof ends. An image proof
    needs room for the disk's used bytes (the scratch image is sparse)."""
    sample_files: int = DEFAULT_SAMPLE_FILES
    """Files restored and hashed (files snapshots) or read (each partition of an image)."""
    sample_bytes: int = DEFAULT_SAMPLE_BYTES
    """Bytes the sample may hold in all: large files are skipped once it is full."""
    seed: int | None = None
    """Seed of the random sample (tests); None: a fresh sample every time."""
    boot: bool = True
    """Boot a bootable image (else, or where QEMU is missing, check its file systems)."""
    boot_timeout: float = DEFAULT_BOOT_TIMEOUT
    """Seconds the guest has to show a sign of life."""
    marker: str = DEFAULT_MARKER
    """Text on the serial console that means the guest is alive (policy ``verify_boot_marker``)."""
    screen_stable: float = DEFAULT_SCREEN_STABLE
    """Seconds the screen must stay the same to count as a sign of life (a login screen)."""
    memory_mb: int = 1024
    """Memory of the VM."""


__all__ = [
    "DEFAULT_BOOT_TIMEOUT",
    "DEFAULT_MARKER",
    "DEFAULT_SAMPLE_BYTES",
    "DEFAULT_SAMPLE_FILES",
    "DEFAULT_SCREEN_STABLE",
    "ProofOptions",
]
