"""Fixtures and helpers for the disk image engine tests (real images, real restic)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, ImageBackupResult, run_image_backup
from e3backup.events import Event, EventCode
from e3backup.repo import Repository
from e3backup.sources.device import Device, open_device
from e3backup.store import LocalStore
from tests.helpers import PASSWORD, restic
from tests.sources.conftest import gpt_disk, gpt_disk_loop  # noqa: F401  (fixtures)

MiB = 1 << 20


def make_mixed_image(path: Path, size: int = 64 * MiB, seed: int = 1) -> bytes:
    """A sparse image of random, compressible and zero regions (1 MiB granularity); returns it."""
    rnd = random.Random(seed)
    data = bytearray(size)
    text = b"".join(b"line %d of a log file: all is well\n" % i for i in range(40_000))
    for mib in range(size // MiB):
        kind = rnd.random()
        off = mib * MiB
        if kind < 0.35:
            data[off : off + MiB] = rnd.randbytes(MiB)
        elif kind < 0.7:
            data[off : off + MiB] = text[:MiB]
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, MiB):
            block = data[off : off + MiB]
            if any(block):
                f.seek(off)
                f.write(block)
    return bytes(data)


def open_repo(path: Path) -> Repository:
    return Repository.open(LocalStore(path), PASSWORD.encode())


@dataclass
class Run:
    result: ImageBackupResult
    events: list[Event] = field(default_factory=list)

    def codes(self) -> list[EventCode]:
        return [e.code for e in self.events]


def backup(repo_path: Path, source: Path | str, events: list[Event] | None = None, **kw: object) -> Run:
    """One ``run_image_backup`` on a freshly opened repository (as separate runs would be)."""
    seams = {k: kw.pop(k) for k in ("provider", "opener", "cancel") if k in kw}
    got: list[Event] = [] if events is None else events
    opts = ImageBackupOptions(source=str(source), snapshot=str(kw.pop("snapshot", "none")), **kw)  # type: ignore[arg-type]
    repo = open_repo(repo_path)
    try:
        result = run_image_backup(repo, opts, on_event=got.append, **seams)  # type: ignore[arg-type]
    finally:
        repo.close()
    return Run(result, got)


def dump(repo_path: Path, name: str, snapshot: str = "latest") -> bytes:
    return restic(repo_path, "dump", snapshot, "/" + name).stdout


class CountingDevice(Device):
    """A real device that records every read and can run a hook after each one."""

    def __init__(self, inner: Device, after_read: Callable[[int], None] | None = None) -> None:
        super().__init__(inner.path, inner.fd, inner.size, inner.sector_size, inner.is_block_device)
        self.reads: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._after = after_read

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        n = super().read_into(offset, buf)
        self._count(offset, len(memoryview(buf)))
        return n

    def read_at(self, offset: int, length: int) -> bytes:  # the parsers' and scans' reads
        data = super().read_at(offset, length)
        self._count(offset, length)
        return data

    def _count(self, offset: int, length: int) -> None:
        with self._lock:
            self.reads.append((offset, length))
            count = len(self.reads)
        if self._after is not None:
            self._after(count)


def counting_opener(
    after_read: Callable[[int], None] | None = None,
) -> tuple[Callable[[str], Device], list[CountingDevice]]:
    opened: list[CountingDevice] = []

    def opener(path: str) -> Device:
        dev = CountingDevice(open_device(path), after_read)
        opened.append(dev)
        return dev

    return opener, opened


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "disk.raw"
    return path, make_mixed_image(path)
