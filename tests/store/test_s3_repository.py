"""Repositories on S3 end to end: ours judged by restic, restic's read by us (real SeaweedFS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from e3backup.repo import BlobType, Node, Repository, Snapshot
from e3backup.store import open_store
from tests.conftest import FAST_KDF
from tests.helpers import PASSWORD, restic, run_cli
from tests.plugins.seaweedfs import SeaweedServer

pytestmark = [pytest.mark.restic, pytest.mark.slow]


@pytest.fixture
def aws_env(s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """Credentials in the environment, as restic and the CLI read them."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


def test_repository_written_to_s3_passes_restic_check(aws_env: SeaweedServer) -> None:
    server = aws_env
    url = server.url(server.make_bucket(), "repo")
    big = os.urandom(3 * 1024 * 1024)
    repo = Repository.init(open_store(url, upload_connections=4), PASSWORD.encode(), FAST_KDF)
    try:
        with repo.lock(), repo.writer(connections=4, pack_size=1024 * 1024) as w:
            c1, _ = w.save(BlobType.DATA, big[: 2 * 1024 * 1024])
            c2, _ = w.save(BlobType.DATA, big[2 * 1024 * 1024:])
            small, _ = w.save(BlobType.DATA, b"hello s3\n")
            root = repo.save_tree(w, [
                Node(name=b"big.bin", type="file", mode=0o644, size=len(big), content=[c1, c2],
                     mtime=10**18),
                Node(name=b"small.txt", type="file", mode=0o644, size=9, content=[small],
                     mtime=10**18),
            ])
        repo.save_snapshot(Snapshot(time=10**18, tree=root, paths=["/"], hostname="s3test"))
    finally:
        repo.close()
    restic(url, "check", "--read-data")
    assert restic(url, "dump", "latest", "/big.bin").stdout == big
    assert restic(url, "dump", "latest", "/small.txt").stdout == b"hello s3\n"


def test_cli_init_and_backup_on_s3_url(aws_env: SeaweedServer, tmp_path: Path,
                                       password_env: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    server = aws_env
    url = server.url(server.make_bucket(), "cli/repo")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(1_500_000))
    (src / "sub" / "b.txt").write_text("backed up to S3\n")
    assert run_cli(capsys, "-r", url, "init").code == 0
    r = run_cli(capsys, "-r", url, "backup", str(src))
    assert r.code == 0, r.err
    restic(url, "check", "--read-data")
    out = tmp_path / "out"
    restic(url, "restore", "latest", "--target", str(out))
    restored = out / src.relative_to("/")
    assert (restored / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (restored / "sub" / "b.txt").read_text() == "backed up to S3\n"


def test_restic_repository_on_s3_opens_with_us(aws_env: SeaweedServer, tmp_path: Path) -> None:
    server = aws_env
    url = server.url(server.make_bucket(), "from-restic")
    src = tmp_path / "data.txt"
    src.write_bytes(b"written by restic\n" * 1000)
    restic(url, "init")
    restic(url, "backup", str(src))
    repo = Repository.open(open_store(url), PASSWORD.encode())
    try:
        snaps = repo.snapshots()
        assert len(snaps) == 1 and snaps[0].paths == [str(src)]
    finally:
        repo.close()


def test_prune_on_s3_repacks_through_temporary_files(aws_env: SeaweedServer, tmp_path: Path,
                                                     password_env: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    server = aws_env
    url = server.url(server.make_bucket(), "prune/repo")
    src = tmp_path / "src"
    src.mkdir()
    kept, gone = os.urandom(300_000), os.urandom(300_000)
    (src / "kept.bin").write_bytes(kept)
    (src / "gone.bin").write_bytes(gone)
    assert run_cli(capsys, "-r", url, "init").code == 0
    assert run_cli(capsys, "-r", url, "--pack-size", "1", "backup", str(src)).code == 0
    (src / "gone.bin").unlink()
    assert run_cli(capsys, "-r", url, "--pack-size", "1", "backup", str(src)).code == 0
    r = run_cli(capsys, "-r", url, "forget", "--keep-last", "1", "--prune", "--max-unused", "0", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["prune"]["result"]["packs_repacked"] >= 1
    restic(url, "check", "--read-data")
    assert restic(url, "dump", "latest", str(src / "kept.bin")).stdout == kept
