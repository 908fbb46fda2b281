"""Image restore and export: sparse raw files, VHDX checked by qemu-img, incrementals as complete
disks, parallel workers, verification and clear errors."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from e3backup.errors import E3Error, IntegrityError, LockError, UsageError
from e3backup.progress import Progress
from e3backup.repo.blob import BlobType
from e3backup.repo.lock import Lock
from e3backup.restore.image import ImageRestoreOptions, run_image_restore
from tests.engines.disk_image.conftest import MiB, backup, dump, make_mixed_image, open_repo
from tests.helpers import PASSWORD, run_cli

pytestmark = pytest.mark.restic


def restore(repo_path: Path, target: Path | str, snap: str = "latest", **kw: object):  # type: ignore[no-untyped-def]
    repo = open_repo(repo_path)
    try:
        after = kw.pop("after_write", None)
        progress = kw.pop("progress", None)
        opts = ImageRestoreOptions(target=str(target), snapshot=snap, **kw)  # type: ignore[arg-type]
        return run_image_restore(repo, opts, progress, after_write=after)  # type: ignore[arg-type]
    finally:
        repo.close()


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_raw_restore_is_sparse_and_equals_dump(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path, chunk_size=MiB)
    out = tmp_path / "out.raw"
    r = restore(repo_path, out, verify=True)
    assert out.read_bytes() == data == dump(repo_path, "disk.raw.img")
    nonzero = sum(1 for i in range(0, len(data), 16384) if any(data[i : i + 16384]))
    assert allocated(out) <= nonzero * 16384 + MiB  # holes where the disk is zero
    assert r.verified and r.chunks_verified == r.chunks_total == 64
    assert r.chunks_written + r.chunks_zero == 64 and r.chunks_zero > 0
    assert r.bytes_written == r.chunks_written * MiB


def test_workers_1_and_8_give_identical_bytes(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path, chunk_size=MiB)
    one, eight = tmp_path / "one.raw", tmp_path / "eight.raw"
    restore(repo_path, one, workers=1, segment_size=MiB)
    restore(repo_path, eight, workers=8, segment_size=3 * MiB)
    assert one.read_bytes() == eight.read_bytes() == data


def test_incremental_restores_and_exports_as_the_second_state(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    first = backup(repo_path, path, chunk_size=MiB).result
    first_state = path.read_bytes()
    changes = [(5 * MiB + 100, 3000), (40 * MiB + 4000, 70_000)]
    with open(path, "r+b") as f:
        for off, n in changes:
            f.seek(off)
            f.write(random.Random(off).randbytes(n))
    cmap = tmp_path / "changes.json"
    cmap.write_text(json.dumps([list(c) for c in changes]))
    second = backup(repo_path, path, chunk_size=MiB, changed_extents=str(cmap)).result
    assert second.chunks_reused > 0
    out = tmp_path / "second.raw"
    restore(repo_path, out, second.snapshot_id)
    assert out.read_bytes() == path.read_bytes()
    exported = tmp_path / "second.vhdx"
    restore(repo_path, exported, second.snapshot_id, image_format="vhdx", verify=True)
    _qemu_check(exported)
    _qemu_compare(exported, out)
    older = tmp_path / "first.raw"
    restore(repo_path, older, first.snapshot_id)
    assert older.read_bytes() == first_state


def _qemu_check(path: Path) -> None:
    p = subprocess.run(["qemu-img", "check", "-f", "vhdx", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def _qemu_compare(vhdx: Path, raw: Path) -> None:
    p = subprocess.run(
        ["qemu-img", "compare", "-f", "vhdx", "-F", "raw", str(vhdx), str(raw)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img missing")
def test_vhdx_restore_is_clean_and_equal_to_raw(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path)
    raw, vhdx = tmp_path / "out.raw", tmp_path / "out.vhdx"
    restore(repo_path, raw)
    r = restore(repo_path, vhdx, image_format="vhdx", verify=True)
    assert r.verified
    _qemu_check(vhdx)
    _qemu_compare(vhdx, raw)
    conv = tmp_path / "conv.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(vhdx), str(conv)], check=True)
    assert conv.read_bytes() == data


def test_verify_catches_a_target_corrupted_after_writing(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path, chunk_size=MiB)
    out = tmp_path / "out.raw"
    first_data = next(i for i in range(0, len(data), MiB) if any(data[i : i + MiB]))

    def corrupt() -> None:
        with open(out, "r+b") as f:
            f.seek(first_data + 12345)
            f.write(b"\xff\x00\xfe")
            f.seek(next(i for i in range(0, len(data), MiB) if not any(data[i : i + MiB])) + 5)  # a zero chunk
            f.write(b"stale")

    with pytest.raises(IntegrityError, match=r"verify of .* failed: chunk"):
        restore(repo_path, out, verify=True, after_write=corrupt)
    assert not out.exists()  # a failed restore to a new file leaves nothing that looks complete


@pytest.mark.parametrize("workers", [1, 8])
def test_a_blob_that_decrypts_but_hashes_wrong_fails_the_restore(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path, workers: int
) -> None:
    """A random chunk's blob re-sealed with the repository key after one byte of its payload was
    changed: it passes its MAC, only the batched SHA-256 check can tell. The restore fails naming
    the blob, and leaves no file."""
    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    r = open_repo(repo_path)
    try:
        r.load_index()
        # a random chunk: stored as it is (incompressible), sealed it is longer than the chunk
        pack_id, victim = next(
            (p, b) for p, blobs in r.index.packs().items() for b in blobs if b.type is BlobType.DATA and b.length > MiB
        )
        pack = repo_path / "data" / pack_id[:2] / pack_id
        payload = bytearray(r.key.open(pack.read_bytes()[victim.offset : victim.offset + victim.length]))
        assert victim.uncompressed_length == 0
        payload[1000] ^= 0xFF
        sealed = r.key.seal(bytes(payload))
    finally:
        r.close()
    assert len(sealed) == victim.length
    pack.chmod(0o600)
    with open(pack, "r+b") as f:
        f.seek(victim.offset)
        f.write(sealed)
    out = tmp_path / "out.raw"
    with pytest.raises(IntegrityError, match=f"data blob {victim.id.hex()} in pack {pack_id}: hash mismatch"):
        restore(repo_path, out, workers=workers, segment_size=2 * MiB)
    assert not out.exists()


@pytest.mark.parametrize("image_format", ["raw", "vhdx"])
def test_a_failing_write_stops_the_restore_and_removes_the_file(
    repo_path: Path,
    repo: object,
    image: tuple[Path, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_format: str,
) -> None:
    """Writes run on I/O threads while the workers decode: a disk that fills up half-way still
    fails the restore with the disk's error, and the new file is removed."""
    from e3backup.formats.raw import RawWriter
    from e3backup.formats.vhdx.writer import VhdxWriter

    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    cls = RawWriter if image_format == "raw" else VhdxWriter
    real = cls.write_at
    calls: list[int] = []
    mu = threading.Lock()

    def full(self: object, offset: int, data: object) -> None:
        with mu:
            calls.append(offset)
            n = len(calls)
        if n == 5:
            raise OSError(28, "No space left on device")
        real(self, offset, data)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "write_at", full)
    out = tmp_path / "out.img"
    with pytest.raises(OSError, match="No space left on device"):
        restore(repo_path, out, image_format=image_format, workers=8, segment_size=2 * MiB)
    assert not out.exists()


def test_a_write_that_never_happens_cannot_pass_as_a_finished_restore(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes are queued to I/O threads; should one ever be lost (a bug), the restore counts the
    chunks written against its plan and fails instead of reporting a disk with a hole in it."""
    from e3backup.restore.image import ImageRestorer

    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    real = ImageRestorer._write_blob
    dropped: list[bool] = []

    def lossy(self: ImageRestorer, writer: object, spans: object, d: object) -> None:
        if not dropped:
            dropped.append(True)
            self._batches.release([d.buffer])  # type: ignore[attr-defined]
            return
        real(self, writer, spans, d)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageRestorer, "_write_blob", lossy)
    out = tmp_path / "out.raw"
    with pytest.raises(E3Error, match=r"wrote \d+ of \d+ data chunks: the target is incomplete"):
        restore(repo_path, out)
    assert dropped and not out.exists()


def test_missing_pack_is_a_clear_error_naming_it(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    backup(repo_path, path)
    packs = sorted((repo_path / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    victim = packs[-1]  # the largest pack holds disk data
    victim.unlink()
    out = tmp_path / "out.raw"
    with pytest.raises(IntegrityError, match=f"pack {victim.name} is missing"):
        restore(repo_path, out)
    assert not out.exists()


def test_a_prune_locking_at_the_same_moment_stops_the_restore(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's re-check runs while the restore writes: a competitor that locked at the same
    moment stops it with the lock error, and the half-written file is removed."""
    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.05)
    cancel = threading.Event()
    rp = open_repo(repo_path)
    write = Lock._write

    def and_a_prune_at_the_same_moment(self: Lock) -> str:
        # the competitor's lock lands right after ours, before the one background re-check:
        # the re-check finds it however slowly the restore starts writing (a loaded machine)
        lock_id = write(self)
        if not self.exclusive:
            write(Lock(rp.store, rp.key, exclusive=True))
        return lock_id

    monkeypatch.setattr(Lock, "_write", and_a_prune_at_the_same_moment)

    class CompetitorAppears(Progress):
        def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
            super().add(files, nbytes, current)
            assert cancel.wait(10)  # the background re-check finds it and stops the workers

    out = tmp_path / "out.raw"
    try:
        with pytest.raises(LockError, match="exclusive lock"):
            opts = ImageRestoreOptions(target=str(out))
            run_image_restore(rp, opts, CompetitorAppears(mode="quiet"), None, cancel)
    finally:
        rp.close()
    assert not out.exists()


def test_odd_sizes_and_zero_runs_inside_chunks_restore_exactly_and_sparse(
    repo_path: Path, repo: object, tmp_path: Path
) -> None:
    """A chunk size that is no power of two, a disk that ends mid-page and 16 KiB zero runs inside
    data chunks: raw and VHDX give the bytes back, and the zero runs end up as holes again after
    the up-front allocation (raw) or inside allocated blocks (VHDX, checked by qemu-img)."""
    rnd = random.Random(7)
    size = 5 * MiB + 3 * 4096 + 512
    data = bytearray(rnd.randbytes(size))
    zero_runs = [(off, 16384 * rnd.randint(1, 4)) for off in range(65536, size - 200_000, 300_000)]
    for off, n in zero_runs:
        data[off // 16384 * 16384 : off // 16384 * 16384 + n] = bytes(n)
    data[2 * MiB : 3 * MiB] = bytes(MiB)  # whole zero chunks too
    src = tmp_path / "odd.img"
    src.write_bytes(data)
    backup(repo_path, src, chunk_size=3 * 65536)
    raw, vhdx = tmp_path / "out.raw", tmp_path / "out.vhdx"
    r = restore(repo_path, raw, verify=True)
    assert r.verified and raw.read_bytes() == bytes(data)
    nonzero = sum(1 for i in range(0, size, 16384) if any(data[i : i + 16384]))
    assert allocated(raw) <= nonzero * 16384 + 64 * 1024
    restore(repo_path, vhdx, image_format="vhdx", verify=True)
    subprocess.run(["qemu-img", "check", "-q", "-f", "vhdx", str(vhdx)], check=True)
    cmp = subprocess.run(["qemu-img", "compare", "-f", "vhdx", "-F", "raw", str(vhdx), str(raw)], capture_output=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr


def test_an_existing_target_is_untouched_when_a_competitor_locked_at_the_same_moment(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restoring over an existing file (``force``) waits for the lock's re-check before it writes:
    a prune that locked at the same moment refuses the restore and the old file is intact."""
    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    out = tmp_path / "existing.raw"
    out.write_bytes(b"precious" * 100_000)
    rp = open_repo(repo_path)
    real_load = rp.load_index

    def load_while_a_prune_locks(*a: object, **kw: object) -> None:
        Lock(rp.store, rp.key, exclusive=True)._write()
        real_load()

    monkeypatch.setattr(rp, "load_index", load_while_a_prune_locks)
    try:
        with pytest.raises(LockError, match="exclusive lock"):
            run_image_restore(rp, ImageRestoreOptions(target=str(out), force=True))
    finally:
        rp.close()
    assert out.read_bytes() == b"precious" * 100_000


def test_target_rules(repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path) -> None:
    path, _ = image
    backup(repo_path, path)
    existing = tmp_path / "exists.raw"
    existing.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="use --force"):
        restore(repo_path, existing)
    assert existing.read_bytes() == b"keep me"
    restore(repo_path, existing, force=True)
    assert existing.read_bytes() == path.read_bytes()
    with pytest.raises(UsageError, match="is a directory"):
        restore(repo_path, tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        restore(repo_path, tmp_path / "no" / "such.raw")


def test_file_snapshot_is_refused(
    repo_path: Path, repo: object, tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello")
    assert run_cli(capsys, "-r", str(repo_path), "backup", str(src)).code == 0
    snap_id = run_cli(capsys, "-r", str(repo_path), "snapshots", "--json").out.split('"id": "')[1][:64]
    res = run_cli(capsys, "-r", str(repo_path), "image", "restore", snap_id, "--target", str(tmp_path / "x.raw"))
    assert res.code == 1 and "is not a disk image snapshot" in res.err
    assert not (tmp_path / "x.raw").exists()
    # latest means the newest image snapshot: there is none (issue #28)
    res = run_cli(capsys, "-r", str(repo_path), "image", "restore", "latest", "--target", str(tmp_path / "x.raw"))
    assert res.code == 1 and "no image snapshot found" in res.err


def test_cli_json_progress_and_summary_and_export(
    repo_path: Path,
    repo: object,
    image: tuple[Path, bytes],
    tmp_path: Path,
    password_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, data = image
    backup(repo_path, path)
    out = tmp_path / "cli.raw"
    res = run_cli(
        capsys,
        "-r",
        str(repo_path),
        "image",
        "restore",
        "latest",
        "--target",
        str(out),
        "--json",
        "--workers",
        "2",
        "--verify",
    )
    assert res.code == 0, res.err
    lines = [json.loads(x) for x in res.out.splitlines()]
    assert lines[-1]["message_type"] == "summary"
    assert all(x["message_type"] == "status" for x in lines[:-1]) and lines[-2]["percent_done"] == 1.0
    assert lines[-2]["total_bytes"] == len(data)
    s = lines[-1]
    assert s["device_size"] == len(data) and s["verified"] and s["workers"] == 2 and s["format"] == "raw"
    assert out.read_bytes() == data
    vhdx = tmp_path / "cli.vhdx"
    res = run_cli(capsys, "-r", str(repo_path), "image", "export", "latest", str(vhdx))
    assert res.code == 0, res.err
    assert "Exported" in res.out and vhdx.read_bytes()[:8] == b"vhdxfile"
    res = run_cli(capsys, "-r", str(repo_path), "image", "export", "latest", str(vhdx))
    assert res.code == 2 and "--force" in res.err


def test_progress_counts_the_whole_device(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = image
    backup(repo_path, path)
    p = Progress(mode="quiet")
    restore(repo_path, tmp_path / "p.raw", progress=p)
    s = p.snapshot()
    assert s["bytes_done"] == s["total_bytes"] == len(data) and s["percent_done"] == 1.0


def test_policy_flags_map_to_options() -> None:
    """The policy is resolved into typed options at the agent's edge (``agent.image_options``)."""
    from dataclasses import replace

    from e3backup.agent.image_options import image_restore_options
    from e3backup.api.agent import RunAssignment
    from e3backup.api.requests import RestoreRequest

    def run(policy: dict[str, int]) -> RunAssignment:
        dest = {"type": "local", "path": "/r", "repository_password": "12345678"}
        body = {"run_id": 1, "job_id": 1, "job_name": "j", "engine": "disk_image", "destination": dest}
        return RunAssignment.model_validate({**body, "policy": policy})

    req = RestoreRequest(snapshot_id="latest", target_path="/x")
    o = image_restore_options(run({"restore_parallel_workers": 3, "restore_segment_size_mb": 64}), req)
    assert (o.workers, o.segment_size) == (3, 64 * MiB)
    o = replace(image_restore_options(run({}), req), workers=2)
    assert (o.workers, o.segment_size) == (2, 32 * MiB)


_ = (E3Error, PASSWORD, make_mixed_image)
