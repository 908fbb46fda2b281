"""Defect 3 of issue #28: a corrupt data blob fails only the files that need it.

The files restore restores everything else (bytes, modes, times), removes each file it could not
restore and names it, says how many failed and exits 1, as ``restic restore`` does on the same
repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e3backup.repo import Repository
from e3backup.repo.blob import BlobType
from e3backup.store import LocalStore

from ..helpers import PASSWORD, e3, restic

pytestmark = pytest.mark.restic

ENV = {"E3BACKUP_PASSWORD": PASSWORD, "E3BACKUP_PACK_SIZE": "1"}


def _tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o7777, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_corrupt_blob_fails_only_its_file(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(30):
            f = src / f"d{d}" / f"f{i:02d}"
            f.write_bytes(os.urandom(20_000 + 997 * i))
            f.chmod(0o640 if i % 2 else 0o755)
            os.utime(f, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + 1000 * i + d))
    e3("-r", str(repo), "init", env=ENV)
    e3("-r", str(repo), "backup", str(src), env=ENV)

    # flip a byte in the middle of the victim's (one) data blob, inside its pack
    r = Repository.open(LocalStore(repo), PASSWORD.encode())
    r.load_index()
    snap = r.find_snapshot("latest")
    node = next(n for p, n in r.walk(snap.tree) if p.endswith(b"/d2/f07"))
    assert node.content is not None and len(node.content) == 1
    loc = r.index.lookup(BlobType.DATA, node.content[0])
    assert loc is not None
    pack = repo / "data" / loc.pack_id[:2] / loc.pack_id
    pack.chmod(0o600)
    with open(pack, "r+b") as f:
        f.seek(loc.blob.offset + loc.blob.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))

    out = tmp_path / "out"
    p = e3("-r", str(repo), "restore", "latest", "--target", str(out), env=ENV, check=False)
    assert p.returncode == 1
    restored = out / str(src).lstrip("/")
    assert f"{restored / 'd2' / 'f07'}: not restored" in p.stderr, p.stderr
    assert "1 file could not be restored" in p.stderr.splitlines()[-1]
    assert not (restored / "d2" / "f07").exists()  # absent, not zeros
    want = _tree(src)
    del want["d2/f07"]
    assert _tree(restored) == want  # every other file: bytes, mode and mtime

    # restic on the same repository: non-zero, the same file named
    rp = restic(repo, "restore", "latest", "--target", str(tmp_path / "restic-out"), check=False)
    assert rp.returncode == 1 and b"f07" in rp.stderr
    assert _tree(tmp_path / "restic-out" / str(src).lstrip("/")) == want  # restic 0.14 leaves it absent too


def test_the_agent_fails_a_restore_that_left_files_out() -> None:
    from e3backup.agent.engines import _files_restore_outcome
    from e3backup.api.common import RunStatus
    from e3backup.restore.files import RestoreResult

    bad = RestoreResult(files=3, failed_files=["/t/a"], errors=["/t/a: not restored: data blob 12 in pack 34: corrupt"])
    out = _files_restore_outcome(bad)
    assert out.status is RunStatus.FAILED and out.error == "1 file(s) could not be restored: " + bad.errors[0]
    meta_only = RestoreResult(files=3, errors=["/t/b: setting metadata: Operation not permitted"])
    assert _files_restore_outcome(meta_only).status is RunStatus.WARNING
