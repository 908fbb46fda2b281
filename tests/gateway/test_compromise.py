"""A compromised agent machine: with its config, tokens and caches, an attacker script (its own
process) tries to destroy the backups through everything it can reach. Afterwards the storage is
unchanged and every snapshot restores, byte for byte, with the stock restic binary."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.agent.config import AgentConfig, save_config
from e3backup.cli.main import main
from e3backup.repo.repository import Repository
from e3backup.server.security.tokens import gateway_token
from e3backup.store import open_store
from tests.conftest import FAST_KDF
from tests.gateway.conftest import GatewayWorld
from tests.helpers import PASSWORD, restic

pytestmark = [pytest.mark.restic, pytest.mark.slow]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_attacker_with_everything_the_agent_holds_cannot_destroy_the_backups(
    gateway_world: GatewayWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = gateway_world
    actor = w.agent(w.tenant(), hostname="victim")
    job_id, folder = w.local_job(actor, "victim")
    url = w.rest_url(job_id, actor.token)
    store = open_store(url)
    Repository.init(store, PASSWORD.encode(), FAST_KDF)
    store.close()

    # the agent host: its config file and its repository cache, filled by two backups
    host = tmp_path / "host"
    config = save_config(AgentConfig(server_url=w.url, agent_token=actor.agent_token, agent_id=actor.agent_id,
                                     state_dir=str(host / "state")), host / "agent.yaml")
    monkeypatch.setenv("E3BACKUP_CACHE_DIR", str(host / "cache"))
    monkeypatch.setenv("E3BACKUP_PASSWORD", PASSWORD)
    src = tmp_path / "src"
    src.mkdir()
    contents = []
    for i in range(2):
        (src / "ledger.db").write_bytes(os.urandom(200_000) + f"version {i}".encode())
        contents.append((src / "ledger.db").read_bytes())
        assert main(["-r", url, "backup", "--host", "victim", str(src)]) == 0
    assert any((host / "cache").rglob("*"))
    before = _hashes(folder)

    attack = subprocess.run([sys.executable, str(Path(__file__).with_name("attacker.py")), str(config),
                             str(host / "cache")], capture_output=True, text=True, timeout=300)
    assert attack.returncode == 0, attack.stderr
    seen = json.loads(attack.stdout)
    assert seen["repository found"] == 1, seen  # with the gateway token; the agent token opens nothing there
    assert gateway_token(actor.agent_token) == actor.token  # the attacker's derivation is the real one
    # nothing deleted or replaced; of the junk only a data pack got in (adding is the agent's right;
    # no index names it, so no restore reads it, and the worker's prune removes it)
    got_in = sorted(k for k in seen if k.endswith(" 200") and not k.startswith(("recreate", "next_run")))
    assert got_in == ["junk data 200"], seen
    assert {k for k in seen if k.startswith("user api")} == {"user api 401"}
    after = _hashes(folder)
    assert {k: after.get(k) for k in before} == before
    assert [k.split("/")[0] for k in set(after) - set(before)] == ["data"]

    snapshots = sorted(json.loads(restic(folder, "snapshots", "--json").stdout), key=lambda s: s["time"])
    assert len(snapshots) == 2
    for snap, content in zip(snapshots, contents, strict=True):
        out = tmp_path / f"restore-{snap['short_id']}"
        restic(folder, "restore", snap["id"], "--target", str(out))
        assert (out / str(src).lstrip("/") / "ledger.db").read_bytes() == content
    restic(folder, "check", "--read-data")
