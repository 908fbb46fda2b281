"""``open_export``: an image snapshot served over NBD, judged by qemu-img and libnbd's tools."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e3backup.instant import NbdAddress, OverlayError, open_export
from e3backup.repo import BlobType, Repository
from e3backup.restore.image import ImageRestoreOptions, run_image_restore
from e3backup.sources.stored_image import load_image_snapshot
from e3backup.store import LocalStore
from tests.conftest import FAST_KDF
from tests.engines.disk_image.conftest import backup, make_mixed_image
from tests.helpers import PASSWORD, restic

from .conftest import open_repo, pack_hashes

MiB = 1 << 20


@dataclass
class Served:
    repo_path: Path
    source: Path
    data: bytes
    snapshot: str
    restored: Path
    incremental: str
    source2: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A 12 MiB image of random, text and zero MiB (1 MiB chunks), backed up and restored raw;
    then two MiB changed and backed up again (an incremental)."""
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
    source2 = d / "disk2.img"
    subprocess.run(["cp", "--sparse=always", str(source), str(source2)], check=True)
    with open(source2, "r+b") as f:
        for mib in (1, 10):
            f.seek(mib * MiB)
            f.write(bytes([mib]) * MiB)
    run = backup(repo_path, source2, chunk_size=MiB, read_plan="full", parent=snap)
    assert not run.result.full
    return Served(repo_path, source, data, snap, restored, run.result.snapshot_id, source2)


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


def test_an_incremental_serves_its_own_state(served: Served, repo_of: Repository, tmp_path: Path) -> None:
    with open_export(repo_of, served.incremental, NbdAddress("unix", path=str(tmp_path / "i"))) as export:
        assert export.snapshot_id == served.incremental
        assert qemu_img_compare(export.uri, served.source2).returncode == 0
        assert qemu_img_compare(export.uri, served.source).returncode == 1  # differs from its parent
    with open_export(repo_of, served.snapshot, NbdAddress("unix", path=str(tmp_path / "f"))) as export:
        assert qemu_img_compare(export.uri, served.source).returncode == 0


def qemu_io(uri: str, *commands: str) -> subprocess.CompletedProcess[str]:
    args = [a for c in commands for a in ("-c", c)]
    return subprocess.run(["qemu-io", "-f", "raw", *args, uri], capture_output=True, text=True)


def nbdcopy(uri: str, out: Path) -> bytes:
    subprocess.run(["nbdcopy", uri, str(out)], check=True, capture_output=True)
    return out.read_bytes()


def test_writes_go_to_the_overlay_and_never_to_the_repository(
    served: Served, repo_of: Repository, tmp_path: Path
) -> None:
    before = pack_hashes(served.repo_path)
    overlay = tmp_path / "overlay.e3bovl"
    sock = NbdAddress("unix", path=str(tmp_path / "w"))
    expected = bytearray(served.data)
    hole = next(i * MiB for i in range(12) if not any(served.data[i * MiB : (i + 1) * MiB]))
    expected[hole : hole + 65536] = b"\xab" * 65536  # a whole overlay block, in a hole
    expected[3 * MiB + 100 : 3 * MiB + 107] = b"\xcd" * 7  # part of a block: the rest comes from below
    expected[8 * MiB : 9 * MiB] = bytes(MiB)  # write zeroes
    with open_export(repo_of, served.snapshot, sock, overlay=str(overlay)) as export:
        p = qemu_io(export.uri, f"write -P 0xab {hole} 65536", f"write -P 0xcd {3 * MiB + 100} 7",
                    f"write -z {8 * MiB} {MiB}", "flush")  # fmt: skip
        assert p.returncode == 0 and "error" not in p.stdout.lower(), p.stdout + p.stderr
        assert nbdcopy(export.uri, tmp_path / "a.img") == expected
        status = subprocess.run(["nbdinfo", "--map", export.uri], capture_output=True, text=True, check=True)
        runs = [tuple(int(v) for v in line.split()[:3]) for line in status.stdout.splitlines()]
        assert any(off <= hole and off + n >= hole + 65536 and state == 0 for off, n, state in runs)  # data now
        assert (hole + 65536, MiB - 65536, 3) in runs  # the rest of that hole is still a hole
    with open_export(repo_of, served.snapshot[:8], sock, overlay=str(overlay)) as export:
        assert nbdcopy(export.uri, tmp_path / "b.img") == expected  # the overlay is kept and reused
    with open_export(repo_of, served.snapshot, sock) as export:
        assert nbdcopy(export.uri, tmp_path / "c.img") == served.data  # the snapshot is as it was
        # libnbd checks the read-only flag itself; with strict mode off the write reaches the server
        script = f"import nbd; h = nbd.NBD(); h.set_strict_mode(0); h.connect_uri({export.uri!r}); h.pwrite(b'x', 0)"
        p = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True)  # python3-libnbd
        assert p.returncode != 0 and "Operation not permitted" in p.stderr, p.stderr
    assert pack_hashes(served.repo_path) == before
    restic(served.repo_path, "check", "--read-data")
    with (
        pytest.raises(OverlayError, match=f"belongs to snapshot {served.snapshot[:8]}"),
        open_export(repo_of, served.incremental, sock, overlay=str(overlay)),
    ):
        pass


def test_an_unknown_export_name_is_refused_by_name(served: Served, repo_of: Repository, tmp_path: Path) -> None:
    with open_export(repo_of, served.snapshot, NbdAddress("unix", path=str(tmp_path / "n"))) as export:
        p = subprocess.run(["qemu-img", "info", f"nbd+unix:///nosuch?socket={export.address.path}"],
                           capture_output=True, text=True)  # fmt: skip
        assert p.returncode != 0  # qemu shows the server's message
        assert f"server reported: no export named 'nosuch': this server exports '{served.snapshot[:8]}'" in p.stderr
        named = subprocess.run(["nbdinfo", "--size", f"nbd+unix:///{served.snapshot[:8]}?socket={export.address.path}"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        assert int(named.stdout) == 12 * MiB


def test_a_damaged_pack_fails_the_reads_of_its_blobs_by_name(served: Served, tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    shutil.copytree(served.repo_path, repo_path)
    # one byte flipped inside the blob of the image's first data chunk: the pack may also hold the
    # image's own metadata (which packs the workers fill varies per run), which stays intact
    repo = open_repo(repo_path)
    try:
        repo.load_index()
        image = load_image_snapshot(repo, repo.find_snapshot(served.snapshot))
        zeros = image.zero_ids()
        blob_id = next(b for b in image.content if b not in zeros)
        loc = repo.index.lookup(BlobType.DATA, blob_id)
        assert loc is not None
    finally:
        repo.close()
    pack = repo_path / "data" / loc.pack_id[:2] / loc.pack_id
    raw = bytearray(pack.read_bytes())
    raw[loc.blob.offset + loc.blob.length // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    repo = open_repo(repo_path)
    try:
        with open_export(repo, served.snapshot, NbdAddress("unix", path=str(tmp_path / "d"))) as export:
            p = subprocess.run(["nbdcopy", export.uri, str(tmp_path / "out.img")], capture_output=True, text=True)
            assert p.returncode != 0 and "Input/output error" in p.stderr
            assert export.errors and f"in pack {loc.pack_id}" in export.errors[0]
    finally:
        repo.close()
