"""restic's REST protocol v2 through the gateway: the real restic binary and e3backup, on one
repository, see each other's snapshots; restic restores e3backup's bytes and checks every pack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from e3backup.repo.repository import Repository
from e3backup.store import open_store
from tests.conftest import FAST_KDF
from tests.gateway.conftest import GatewayWorld
from tests.helpers import PASSWORD, restic, run_cli

pytestmark = pytest.mark.restic


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_bytes(b"alpha\n" * 1000)
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # several blobs, a real pack
    (root / "empty").write_bytes(b"")
    return root


def test_restic_and_e3backup_share_a_repository_through_the_gateway(
    gateway_world: GatewayWorld, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = gateway_world
    actor = w.agent(w.tenant())
    job_id, folder = w.local_job(actor, "shared")
    url = w.rest_url(job_id, actor.token)

    store = open_store(url)  # e3backup creates the repository through the gateway (cheap KDF: fast opens)
    try:
        Repository.init(store, PASSWORD.encode(), FAST_KDF)
    finally:
        store.close()
    assert (folder / "config").is_file() and len(list((folder / "keys").iterdir())) == 1

    restic(url, "backup", "--host", "pc1", str(source))
    monkeypatch.setenv("E3BACKUP_PASSWORD", PASSWORD)
    assert run_cli(capsys, "-r", url, "--no-cache", "backup", "--host", "pc1", "--tag", "e3", str(source)).code == 0

    by_restic = {s["id"] for s in json.loads(restic(url, "snapshots", "--json").stdout)}
    store = open_store(url)
    try:
        repo = Repository.open(store, PASSWORD.encode())
        by_e3 = {s.id for s in repo.snapshots()}
        e3_snap = next(s for s in repo.snapshots() if "e3" in s.tags)
    finally:
        store.close()
    assert len(by_restic) == 2 and by_restic == by_e3

    # restic restores what e3backup wrote (ranged reads through the gateway) and reads every pack
    restic(url, "restore", e3_snap.id, "--target", str(tmp_path / "out"))
    assert _tree(tmp_path / "out" / str(source).lstrip("/")) == _tree(source)
    restic(url, "check", "--read-data")
    assert run_cli(capsys, "-r", url, "--no-cache", "check", "--read-data").code == 0


def test_restic_init_through_the_gateway_and_no_second_init(gateway_world: GatewayWorld) -> None:
    w = gateway_world
    actor = w.agent(w.tenant())
    job_id, folder = w.local_job(actor, "by-restic")
    url = w.rest_url(job_id, actor.token)
    restic(url, "init")
    config = (folder / "config").read_bytes()
    again = restic(url, "init", check=False)
    assert again.returncode != 0 and (folder / "config").read_bytes() == config
