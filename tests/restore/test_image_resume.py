"""A resumable image restore (``written``): a restore stopped by a repository that went away is run
again with the same ``WrittenSegments`` and writes only the segments it had not finished; a
size-limited restore writes (and verifies) only the first chunks of a smaller device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e3backup.errors import E3Error, UsageError
from e3backup.restore.image import ImageRestoreOptions, WrittenSegments, run_image_restore
from tests.engines.disk_image.conftest import MiB, backup, open_repo
from tests.sources.diskimages import loop_device


def _device_file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices)")
def test_a_stopped_restore_resumes_with_the_segments_not_yet_written(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image  # 64 MiB
    backup(repo_path, path, chunk_size=MiB)
    data_dir, away = repo_path / "data", repo_path / "data.away"

    def unplug(_first: int) -> None:
        if len(written) == 3 and data_dir.exists():
            data_dir.rename(away)  # the repository's packs are gone from here on

    written = WrittenSegments(unplug)
    target = _device_file(tmp_path, "disk.img", len(data))
    with loop_device(target) as dev:
        opts = ImageRestoreOptions(target=dev, workers=1, segment_size=8 * MiB)
        first = open_repo(repo_path)
        try:
            with pytest.raises(E3Error):
                run_image_restore(first, opts, written=written)
        finally:
            first.close()
        assert len(written) == 3
        away.rename(data_dir)
        second = open_repo(repo_path)
        try:
            r = run_image_restore(second, ImageRestoreOptions(target=dev, workers=1, segment_size=8 * MiB, verify=True),
                                  written=written)
        finally:
            second.close()
        assert len(written) == 8 and r.verified
        first_24 = sum(1 for i in range(24) if any(data[i * MiB : (i + 1) * MiB]))
        assert r.chunks_written == sum(1 for i in range(64) if any(data[i * MiB : (i + 1) * MiB])) - first_24
        with open(dev, "rb") as f:
            assert f.read() == data


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices)")
def test_a_size_limited_restore_writes_only_the_first_chunks(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path, chunk_size=MiB)
    target = _device_file(tmp_path, "small.img", 40 * MiB)
    with loop_device(target) as dev:
        rp = open_repo(repo_path)
        try:
            r = run_image_restore(rp, ImageRestoreOptions(target=dev, size_limit=40 * MiB, verify=True))
            assert r.verified and r.chunks_verified == 40
            with pytest.raises(UsageError, match="whole number of"):
                run_image_restore(rp, ImageRestoreOptions(target=dev, size_limit=40 * MiB - 512))
            with pytest.raises(UsageError, match="the disk image needs 67108864"):
                run_image_restore(rp, ImageRestoreOptions(target=dev))  # without the limit: too small
        finally:
            rp.close()
        with open(dev, "rb") as f:
            assert f.read() == data[: 40 * MiB]
    rp = open_repo(repo_path)
    try:
        with pytest.raises(UsageError, match="block devices only"):
            run_image_restore(rp, ImageRestoreOptions(target=str(tmp_path / "new.raw"), size_limit=40 * MiB))
    finally:
        rp.close()
    assert not (tmp_path / "new.raw").exists()
