"""A simulated Hyper-V host with real VHDX files, and judges for what comes back."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from e3backup.sources.hyperv.sim import SimHost

MiB = 1 << 20


@pytest.fixture
def sim(tmp_path: Path) -> SimHost:
    return SimHost.create(tmp_path / "host")


def fill(sim: SimHost, vm: str, disk: int, offset: int, length: int, seed: int) -> None:
    """A guest write of ``length`` pseudo-random bytes."""
    sim.guest_write(vm, disk, offset, random.Random(seed).randbytes(length))


def web_vm(sim: SimHost) -> None:
    """VM ``web``: two dynamic disks with data, the second read through a differencing AVHDX."""
    sim.create_vm("web", [40 * MiB, 24 * MiB])
    fill(sim, "web", 0, 0, 3 * MiB, 1)
    fill(sim, "web", 0, 20 * MiB + 512, 2 * MiB, 2)
    fill(sim, "web", 1, 1 * MiB, 5 * MiB, 3)
    sim.make_differencing("web", 1)  # from here on disk 1's writes land in an AVHDX
    fill(sim, "web", 1, 3 * MiB, 64 * 1024, 4)
    fill(sim, "web", 1, 16 * MiB, 1 * MiB, 5)


def qemu_img(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)


def assert_same_disk(restored: Path, expected: bytes, tmp: Path) -> None:
    """qemu-img's verdict: the restored VHDX is clean and identical to the guest's disk."""
    check = qemu_img("check", "-f", "vhdx", str(restored))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No errors were found" in check.stdout
    raw = tmp / f"expected-{os.getpid()}-{restored.name}.raw"
    raw.write_bytes(expected)
    try:
        cmp = qemu_img("compare", "-f", "vhdx", "-F", "raw", str(restored), str(raw))
        assert cmp.returncode == 0, cmp.stdout + cmp.stderr
        assert "Images are identical" in cmp.stdout
    finally:
        raw.unlink()
