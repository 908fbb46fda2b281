"""Browsing a disk image snapshot from the dashboard: its GPT partitions, and in them the folders
and files of ext4 and NTFS read by our readers from the stored image (nothing mounted)."""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.repo import Repository
from e3backup.store import LocalStore
from tests.conftest import FAST_KDF
from tests.server.conftest import FakeClock, World
from tests.sources.diskimages import GPT_LINUX_FS, GPT_MS_BASIC, make_ext, make_ntfs, random_bytes, run
from tests.web.conftest import HTML, form_post, page, text_of

REPO_PASSWORD = "image-browse-password"
EXT4 = {"notes.txt": b"ext4 says hello\n", "dir/sub/c.bin": random_bytes(200_000, 3), "dir/empty": b"",
        "many/" + "n" * 200: b"a long name\n"}
NTFS = {"report.txt": b"NTFS says hello\n", "big.bin": random_bytes(700_000, 4)}

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("sgdisk", "mkfs.ext4", "mkntfs", "ntfscp")),
                                reason="needs gdisk, e2fsprogs and ntfs-3g (scripts/setup.sh)")


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"browse_local_roots": [tmp_path / "repos"]}


def _disk(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(80 << 20)
    run("sgdisk", "-Z", path)
    run("sgdisk", "-n", "1:2048:+40M", "-t", f"1:{GPT_LINUX_FS}", "-c", "1:root",
        "-n", "2:0:+32M", "-t", f"2:{GPT_MS_BASIC}", "-c", "2:data", path)
    rows = dict((int(m[0]), (int(m[1]), int(m[2]))) for m in
                re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)", run("sgdisk", "-p", path), re.M))
    (s1, e1), (s2, e2) = rows[1], rows[2]
    make_ext(path, (e1 - s1 + 1) * 512, EXT4, offset=s1 * 512)
    part = path.with_suffix(".ntfs")
    make_ntfs(part, (e2 - s2 + 1) * 512, NTFS, start_sector=s2)
    run("dd", f"if={part}", f"of={path}", "bs=1M", f"seek={s2 * 512}", "oflag=seek_bytes", "conv=notrunc",
        "status=none")


def _image_run(world: World, clock: FakeClock, tmp_path: Path) -> int:
    disk = tmp_path / "disk.img"
    _disk(disk)
    repo_dir = tmp_path / "repos" / "img"
    repo = Repository.init(LocalStore(repo_dir), REPO_PASSWORD.encode(), FAST_KDF)
    result = run_image_backup(repo, ImageBackupOptions(source=str(disk), snapshot="none"))
    repo.close()
    job = world.job(engine="disk_image", disk_source_volume="/dev/sdb", source_path="/dev/sdb",
                    destination={"type": "local", "path": str(repo_dir), "repository_password": REPO_PASSWORD})
    assert world.admin.post(f"/api/jobs/{job['id']}/run").status_code == 201
    claimed = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    clock.advance(seconds=30)
    body = {"run_id": claimed["run_id"], "status": "success", "snapshot_id": result.snapshot_id}
    assert world.agent_a.post("/api/agent/update_run", json=body).status_code == 200
    return int(claimed["run_id"])


def _unpack(data: bytes, fmt: str) -> dict[str, bytes]:
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _paths(html: str) -> list[str]:
    return [p.split('"')[0] for p in html.split('<tr data-path="')[1:]]


def test_ext4_and_ntfs_partitions_of_an_image_snapshot(world: World, clock: FakeClock, tmp_path: Path) -> None:
    run_id = _image_run(world, clock, tmp_path)
    assert "Browse its partitions" in page(world.user_a, f"/runs/{run_id}")
    top = page(world.user_a, f"/runs/{run_id}/browse")
    assert _paths(top) == ["1-root", "2-data"] and 'id="image-hint"' in top
    assert _paths(page(world.user_a, f"/runs/{run_id}/browse?path=1-root")) == [
        "1-root/dir", "1-root/lost+found", "1-root/many", "1-root/notes.txt"]
    assert _paths(page(world.user_a, f"/runs/{run_id}/browse?path=1-root/dir/sub")) == ["1-root/dir/sub/c.bin"]
    ntfs = page(world.user_a, f"/runs/{run_id}/browse?path=2-data")
    assert _paths(ntfs) == ["2-data/big.bin", "2-data/report.txt"] and "683.6 KiB" in text_of(ntfs)
    for path, data in [*((f"1-root/{k}", v) for k, v in EXT4.items()), *((f"2-data/{k}", v) for k, v in NTFS.items())]:
        r = world.user_a.get(f"/runs/{run_id}/browse/file", params={"path": path})
        assert r.status_code == 200 and r.content == data, path
    preview = page(world.user_a, f"/runs/{run_id}/browse/preview?path=2-data/report.txt")
    assert ">NTFS says hello\n</pre>" in preview
    found = page(world.user_a, f"/runs/{run_id}/browse?q=.TXT")
    assert sorted(_paths(found)) == ["1-root/notes.txt", "2-data/report.txt"]
    assert "Download selected" in found and "Restore selected" in found
    # a selection as ZIP and as tar, read through the ext4 and NTFS readers: the bytes as written
    for fmt in ("zip", "tar"):
        r = form_post(world.user_a, f"/runs/{run_id}/browse/download",
                      {"paths": ["1-root", "2-data/report.txt"], "format": fmt})
        assert r.status_code == 200, r.text[:300]
        got = _unpack(r.content, fmt)
        for k, v in EXT4.items():
            assert got[f"1-root/{k}"] == v, k
        assert got["2-data/report.txt"] == NTFS["report.txt"] and "2-data/big.bin" not in got
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", {"paths": "1-root/dir", "base": "2-data"})
    assert r.status_code == 422 and "is not inside /2-data" in r.text
    # pick-and-restore: into a restore folder (the agent reads the partition), never "the original location"
    r = world.user_a.get(f"/runs/{run_id}/browse/restore", params={"paths": "1-root/notes.txt"}, headers=HTML)
    assert r.status_code == 200 and 'id="where-original"' not in r.text and "through the partition" in r.text
    r = world.user_a.get(f"/runs/{run_id}/browse/restore", params={"paths": "1-root/notes.txt", "where": "original"},
                         headers=HTML)
    assert "have no original folder on a machine: choose a restore folder" in r.text
    assert world.user_a.get(f"/runs/{run_id}/browse?path=3-none", headers=HTML).status_code == 404
    assert world.user_b.get(f"/runs/{run_id}/browse", headers=HTML).status_code == 404
