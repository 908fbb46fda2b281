"""``open_export``: an image snapshot served over NBD, judged by qemu-img and libnbd's tools."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e3backup.instant import NbdAddress, open_export
from e3backup.repo import Repository
from e3backup.restore.image import ImageRestoreOptions, run_image_restore
from e3backup.store import LocalStore
from tests.conftest import FAST_KDF
from tests.engines.disk_image.conftest import backup, make_mixed_image
from tests.helpers import PASSWORD

from .conftest import open_repo

MiB = 1 << 20


@dataclass
class Served:
    repo_path: Path
    source: Path
    data: bytes
    snapshot: str
    restored: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A 12 MiB image of random, text and zero MiB (1 MiB chunks), backed up and restored raw."""
    d = tmp_path_factory.mktemp("export")
    repo_path = d / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode(), FAST_KDF).close()
    source = d / "disk.img"
    data = make_mixed_image(source, 12 * MiB, seed=7)
    snap = backup(repo_path, source, chunk_size=MiB, read_plan="full").result.snapshot_id
    restored = d / "restored.img"
    repo = open_repo(repo_path)
    try:
        run_image_restore(repo, ImageRestoreOptions(target=str(restored), snapshot=snap))
    finally:
        repo.close()
    return Served(repo_path, source, data, snap, restored)


@pytest.fixture
def repo_of(served: Served) -> Iterator[Repository]:
    repo = open_repo(served.repo_path)
    yield repo
    repo.close()


def qemu_img_compare(uri: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, str(path)], capture_output=True, text=True
    )


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_the_export_is_identical_to_a_raw_restore(
    served: Served, repo_of: Repository, tmp_path: Path, kind: str
) -> None:
    address = NbdAddress("unix", path=str(tmp_path / "nbd.sock")) if kind == "unix" else NbdAddress.parse(
        "tcp:127.0.0.1:0"
    )
    with open_export(repo_of, served.snapshot[:8], address) as export:
        assert export.address.kind == kind
        if kind == "tcp":
            assert export.address.port > 0
        p = qemu_img_compare(export.uri, served.restored)
        assert p.returncode == 0 and "identical" in p.stdout, p.stderr
        assert qemu_img_compare(export.uri, served.source).returncode == 0
    if kind == "unix":
        assert not (tmp_path / "nbd.sock").exists()


def test_block_status_reports_the_holes(served: Served, repo_of: Repository, tmp_path: Path) -> None:
    with open_export(repo_of, served.snapshot, NbdAddress("unix", path=str(tmp_path / "s"))) as export:
        out = subprocess.run(["nbdinfo", "--map", export.uri], capture_output=True, text=True, check=True).stdout
    holes = []
    for line in out.splitlines():
        offset, length, state, *_ = line.split()
        if int(state) & 1:
            holes += range(int(offset) // MiB, (int(offset) + int(length)) // MiB)
    zero_mib = [i for i in range(12) if not any(served.data[i * MiB : (i + 1) * MiB])]
    assert zero_mib and holes == zero_mib
