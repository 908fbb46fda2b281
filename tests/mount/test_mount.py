"""``e3backup mount``: file snapshots as trees, image snapshots as disk and partition files that
loop-mount, hostile names left out, clean unmount on SIGINT and SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3backup.mount.blobcache import BlobCache
from e3backup.mount.tree import RepositoryTree, resolve
from e3backup.repo import BlobType, Repository, Snapshot
from tests.engines.disk_image.conftest import backup
from tests.engines.test_restore_safety import _node, _raw_tree
from tests.helpers import run_cli
from tests.sources.diskimages import GptDisk, random_bytes

from .conftest import mounted_repo


def _files_snapshot(repo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, bytes]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"hello\n", "sub/big.bin": random_bytes(3_000_000, 3), "empty": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)
    os.chmod(src / "a.txt", 0o640)
    os.symlink("a.txt", src / "link")
    assert run_cli(capsys, "-r", str(repo_path), "backup", "--tag", "daily", str(src)).code == 0
    return files


def test_files_snapshot_browsed_and_read_back(
    repo_path: Path, repo: Repository, tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files_snapshot(repo_path, tmp_path, capsys)
    src = tmp_path / "src"
    rel = str(src).lstrip("/")
    mnt = tmp_path / "mnt"
    with mounted_repo(repo_path, mnt, signal.SIGTERM):
        assert sorted(os.listdir(mnt)) == ["hosts", "ids", "snapshots", "tags"]
        snap_id = repo.snapshots()[-1].short_id
        assert os.listdir(mnt / "ids") == [snap_id]
        latest = mnt / "snapshots" / "latest"
        assert os.path.islink(latest)
        for base in (latest, mnt / "ids" / snap_id, mnt / "tags" / "daily" / "latest"):
            root = base / rel
            for name, data in files.items():
                assert (root / name).read_bytes() == data, name
        root = latest / rel
        st, orig = os.stat(root / "a.txt"), os.stat(src / "a.txt")
        assert (st.st_mode & 0o7777, st.st_size, st.st_mtime_ns) == (0o640, 6, orig.st_mtime_ns)
        assert os.readlink(root / "link") == "a.txt"
        with open(root / "sub" / "big.bin", "rb") as f:  # random access
            f.seek(1_234_567)
            assert f.read(100_000) == files["sub/big.bin"][1_234_567:1_334_567]
        with pytest.raises(OSError):
            os.close(os.open(root / "a.txt", os.O_RDWR))
        with pytest.raises(OSError):
            (root / "new").write_bytes(b"x")


def test_hostile_names_are_not_exposed(repo: Repository, tmp_path: Path) -> None:
    with repo.lock(), repo.writer() as w:
        data_id, _ = w.save(BlobType.DATA, b"evil")
        nodes = [_node(n, content=[data_id.hex()]) for n in ("..", "a/b", ".", "", "nul\\x00", "good")]
        tree_id, _ = w.save(BlobType.TREE, _raw_tree(nodes))
    repo.save_snapshot(Snapshot(time=10**18, tree=tree_id, paths=["/x"]))
    repo.load_index()
    tree = RepositoryTree(repo, repo.snapshots(), BlobCache(lambda i: repo.load_blob(BlobType.DATA, i)))
    snap = resolve(tree.root, "/ids/" + repo.snapshots()[0].short_id)
    assert list(snap.children()) == ["good"]
    good = snap.children()["good"]
    assert good.open_content is not None and good.open_content().read(0, 100) == b"evil"


@pytest.mark.root
@pytest.mark.slow
def test_image_snapshot_partition_loop_mounts_and_files_read_back(
    repo_path: Path, repo: Repository, gpt_disk: GptDisk, tmp_path: Path
) -> None:
    backup(repo_path, gpt_disk.path)
    mnt = tmp_path / "mnt"
    with mounted_repo(repo_path, mnt):
        snap = mnt / "snapshots" / "latest"
        assert sorted(os.listdir(snap)) == ["disk.img", "layout.json", "partitions"]
        layout = json.loads((snap / "layout.json").read_bytes())
        assert layout["image"]["file"] == "disk.img"
        parts = sorted(os.listdir(snap / "partitions"))
        assert parts == ["1-root.img", "2-data.img", "3-mystery.img"]
        assert os.path.getsize(snap / "disk.img") == gpt_disk.size
        assert os.path.getsize(snap / "partitions" / "1-root.img") == gpt_disk.ext4_size
        with open(snap / "disk.img", "rb") as f:  # GPT header at LBA 1, random access
            f.seek(512)
            assert f.read(8) == b"EFI PART"
        part = snap / "partitions" / "3-mystery.img"
        with open(gpt_disk.path, "rb") as f:
            f.seek(gpt_disk.raw_start)
            assert part.read_bytes()[: 1 << 20] == f.read(1 << 20)
        with _loop_ro(snap / "partitions" / "1-root.img") as fs:  # file-level restore from an image
            for name, data in gpt_disk.ext4_files.items():
                assert (fs / name).read_bytes() == data, name


@contextlib.contextmanager
def _loop_ro(path: Path) -> Iterator[Path]:
    """``mount -o loop,ro`` of a file on the FUSE mount."""
    with tempfile.TemporaryDirectory(prefix="e3fs-") as d:
        subprocess.run(["mount", "-o", "loop,ro", "-t", "ext4", str(path), d], check=True)
        try:
            yield Path(d)
        finally:
            subprocess.run(["umount", d], check=False)
