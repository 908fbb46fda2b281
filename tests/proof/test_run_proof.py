"""``run_proof`` on real repositories: files samples, data disks checked, damage never green."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.engines.files import BackupOptions, run_backup
from e3backup.proof import ProofOptions, run_proof
from e3backup.proof.checkers import loop_device
from e3backup.repo import Repository
from e3backup.repo.blob import BlobType

from .disks import EXT4_START, NTFS_START


def _flip_in_pack(repo_path: Path, repo: Repository, blob_id: bytes) -> str:
    """Flip one byte inside ``blob_id``'s ciphertext; returns the pack's ID."""
    loc = repo.index.lookup(BlobType.DATA, blob_id)
    assert loc is not None
    pack = repo_path / "data" / loc.pack_id[:2] / loc.pack_id
    pack.chmod(0o600)
    with open(pack, "r+b") as f:
        f.seek(loc.blob.offset + loc.blob.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    return loc.pack_id


@pytest.fixture
def files_snapshot(repo: Repository, tmp_path: Path) -> str:
    src = tmp_path / "src"
    rnd = random.Random(3)
    for d in range(3):
        (src / f"d[{d}]").mkdir(parents=True)  # a glob special in the name: matched literally
        for i in range(8):
            (src / f"d[{d}]" / f"f{i}*.bin").write_bytes(rnd.randbytes(5_000 + 3_000 * i))
    return run_backup(repo, BackupOptions(paths=[str(src)])).snapshot_id


def test_files_proof_restores_and_hashes_a_sample(repo: Repository, files_snapshot: str, tmp_path: Path) -> None:
    result = run_proof(repo, ProofOptions(files_snapshot, str(tmp_path / "scratch"), sample_files=5, seed=1))
    assert result.kind == "files" and result.verdict == "passed", result.reason
    sampled = [c for c in result.checks if c.name.startswith("file ")]
    assert len(sampled) == 5 and all("hash as recorded" in c.detail for c in sampled)
    assert result.checks[0].detail.endswith(", 24 files")
    assert not any((tmp_path / "scratch").iterdir())  # scratch cleaned


def test_files_proof_sample_follows_the_byte_budget(repo: Repository, files_snapshot: str, tmp_path: Path) -> None:
    result = run_proof(repo, ProofOptions(files_snapshot, str(tmp_path / "s"), sample_files=24,
                                          sample_bytes=30_000, seed=2))
    sampled = [c for c in result.checks if c.name.startswith("file ")]
    assert result.passed and 1 <= len(sampled) < 24
    assert sum(int(c.detail.split()[0]) for c in sampled) <= 30_000


def test_files_proof_with_a_corrupt_pack_fails_naming_the_pack(repo: Repository, repo_path: Path,
                                                              files_snapshot: str, tmp_path: Path) -> None:
    repo.load_index()
    snap = repo.find_snapshot(files_snapshot)
    node = next(n for p, n in repo.walk(snap.tree) if p.endswith(b"/f7*.bin"))
    assert node.content
    pack = _flip_in_pack(repo_path, repo, node.content[0])
    result = run_proof(repo, ProofOptions(files_snapshot, str(tmp_path / "s"), sample_files=24, seed=3))
    assert result.verdict == "failed"
    assert pack in result.reason and "not restored" in result.reason


def _image_snapshot(repo: Repository, disk: Path) -> str:
    return run_image_backup(repo, ImageBackupOptions(source=str(disk), snapshot="none")).snapshot_id


def test_data_disk_gets_its_file_systems_checked(repo: Repository, data_disk: Path, tmp_path: Path) -> None:
    snap = _image_snapshot(repo, data_disk)
    result = run_proof(repo, ProofOptions(snap, str(tmp_path / "s"), seed=1))
    assert result.kind == "fsck" and result.verdict == "passed", result.checks
    by_name = {c.name: c for c in result.checks}
    assert by_name["boot sector"].detail.startswith("a data disk, not booted")
    assert "e2fsck -f -n: clean" in by_name["partition 1 (ext4)"].detail
    assert "ntfsfix -n: clean" in by_name["partition 2 (ntfs)"].detail
    assert by_name["partition 1 files"].detail.startswith("6 of 6 files read to the end")
    assert by_name["partition 2 files"].detail.startswith("3 of 3 files read to the end")


def test_damaged_file_systems_fail_their_checks(repo: Repository, data_disk: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.img"
    shutil.copyfile(data_disk, broken)
    with loop_device(str(broken), EXT4_START, 8 << 20) as dev:
        block_bitmap = int(os.popen(f"dumpe2fs {dev} 2>/dev/null | grep -m1 'Block bitmap at'").read().split()[3])
    with open(broken, "r+b") as f:
        f.seek(EXT4_START + block_bitmap * 1024)  # zero an ext4 metadata block: e2fsck stops at it
        f.write(b"\0" * 1024)
        f.seek(NTFS_START)
        boot = f.read(512)
        cluster = struct.unpack_from("<H", boot, 0x0B)[0] * boot[0x0D]
        f.seek(NTFS_START + struct.unpack_from("<q", boot, 0x30)[0] * cluster)  # the $MFT's first records
        f.write(b"\0" * 4096)
    result = run_proof(repo, ProofOptions(_image_snapshot(repo, broken), str(tmp_path / "s"), seed=1))
    assert result.verdict == "failed"
    assert re.match(r"partition 1 \(ext4\): e2fsck -f -n exit code (4|8|12): .*corrupt", result.reason), result.reason
    ntfs = next(c for c in result.checks if c.name == "partition 2 (ntfs)")
    assert not ntfs.ok and ntfs.detail.startswith("ntfsfix -n exit code 1:") and "Volume is corrupt" in ntfs.detail


def test_a_zeroed_boot_sector_fails_with_the_reason(repo: Repository, data_disk: Path, tmp_path: Path) -> None:
    zeroed = tmp_path / "zeroed.img"
    shutil.copyfile(data_disk, zeroed)
    with open(zeroed, "r+b") as f:
        f.write(b"\0" * 512)
    result = run_proof(repo, ProofOptions(_image_snapshot(repo, zeroed), str(tmp_path / "s")))
    assert result.verdict == "failed" and result.kind == "boot"
    assert result.reason == ("the disk cannot boot and holds no partition or file system to check: sector 0 is all "
                             "zeros: no boot code, no partition table, no 55 AA signature")


def test_image_with_a_corrupt_pack_fails_naming_the_pack(repo: Repository, repo_path: Path, data_disk: Path,
                                                        tmp_path: Path) -> None:
    snap_id = _image_snapshot(repo, data_disk)
    repo.load_index()
    from e3backup.sources.stored_image import load_image_snapshot

    img = load_image_snapshot(repo, repo.find_snapshot(snap_id))
    zero = img.zero_ids()
    victim = next(b for b in img.content if b not in zero)
    pack = _flip_in_pack(repo_path, repo, victim)
    result = run_proof(repo, ProofOptions(snap_id, str(tmp_path / "s")))
    assert result.verdict == "failed"
    assert result.reason.startswith("the image could not be restored:") and pack in result.reason, result.reason


def test_an_image_proof_without_scratch_room_fails_saying_so(repo: Repository, data_disk: Path, tmp_path: Path) -> None:
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    snap = _image_snapshot(repo, data_disk)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        result = run_proof(repo, ProofOptions(snap, str(small)))
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert result.verdict == "failed"
    why = (r"not enough scratch space in .*small/e3backup-proof-\w+ to restore the image: it holds \d+ bytes of data, "
           r"\d+ bytes are free \(give the job a disk_temp_dir with room\)$")
    assert re.match(why, result.reason), result.reason
