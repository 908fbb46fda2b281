"""Append-only through the gateway: an agent token adds to its repository but cannot delete or
replace anything in it (storage hashes unchanged), removes only its own locks, and cannot see
another agent's repository; a recovery session token only reads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from e3backup.cli.main import main
from e3backup.errors import AccessDeniedError
from e3backup.repo.crypto import Key
from e3backup.repo.keys import make_key_file
from e3backup.repo.repository import Repository
from e3backup.store import FileType, Handle, Store, open_store
from tests.conftest import FAST_KDF
from tests.gateway.conftest import Actor, GatewayWorld
from tests.helpers import PASSWORD
from tests.plugins.seaweedfs import SeaweedServer


@dataclass
class Served:
    job_id: int
    actor: Actor
    hashes: object  # () -> {path: sha256} of everything in the storage
    direct: Store  # the storage itself, with full rights (what the maintenance worker uses)

    def client(self, w: GatewayWorld, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=f"{w.url}/gateway/job-{self.job_id}", auth=("e3backup", token or self.actor.token))


def _folder_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest, gateway_world: GatewayWorld,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A repository with one e3backup snapshot, written through the gateway by its agent: in a
    folder, or (parametrized) in an S3 bucket."""
    w = gateway_world
    actor = w.agent(w.tenant())
    if getattr(request, "param", "local") == "local":
        job_id, folder = w.local_job(actor, f"append-{os.urandom(3).hex()}")
        hashes = lambda: _folder_hashes(folder)  # noqa: E731
        direct = open_store(str(folder))
    else:
        s3: SeaweedServer = request.getfixturevalue("s3_server")
        bucket = s3.make_bucket()
        job_id = w.s3_job(actor, s3, bucket, "pc1")
        client = s3.client()
        direct = open_store(s3.url(bucket, "pc1"), **s3.store_options())

        def hashes() -> dict[str, str]:
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
            return {k: hashlib.sha256(client.get_object(Bucket=bucket, Key=k)["Body"].read()).hexdigest()
                    for k in keys}
    url = w.rest_url(job_id, actor.token)
    store = open_store(url)
    Repository.init(store, PASSWORD.encode(), FAST_KDF)
    store.close()
    src = tmp_path_factory.mktemp("append-src")
    (src / "f.bin").write_bytes(os.urandom(200_000))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E3BACKUP_PASSWORD", PASSWORD)
        assert main(["-r", url, "--no-cache", "backup", "--host", "pc1", str(src)]) == 0
    yield Served(job_id, actor, hashes, direct)
    direct.close()


@pytest.mark.parametrize("served", ["local", "s3"], indirect=True)
def test_each_delete_and_overwrite_is_refused_and_nothing_changes(served: Served, gateway_world: GatewayWorld) -> None:
    before = served.hashes()  # type: ignore[operator]
    with served.client(gateway_world) as c:
        for kind in ("data", "index", "snapshots", "keys"):
            listing = c.get(f"/{kind}/", headers={"Accept": "application/vnd.x.restic.rest.v2"})
            assert listing.status_code == 200, (kind, listing.text)
            name = listing.json()[0]["name"]
            content = c.get(f"/{kind}/{name}").content
            r = c.delete(f"/{kind}/{name}")
            assert r.status_code == 403 and f"deleting {'data/' + name[:2] + '/' if kind == 'data' else kind + '/'}" \
                in r.text and "append-only" in r.text, (kind, r.text)
            for body in (b"ransom note", content):  # other bytes, or the same bytes again
                r = c.post(f"/{kind}/{name}", content=body)
                assert r.status_code == 403 and "overwriting" in r.text and "never replaced" in r.text, (kind, r.text)
        r = c.delete("/config")
        assert r.status_code == 403 and "deleting config refused" in r.text
        r = c.post("/config", content=b"not a config")
        assert r.status_code == 403 and "overwriting config refused" in r.text
    store = open_store(gateway_world.rest_url(served.job_id, served.actor.token))
    try:  # e3backup's REST store says what the gateway refused
        snap = next(iter(store.list(FileType.SNAPSHOT)))[0]
        with pytest.raises(AccessDeniedError, match="append-only"):
            store.remove(Handle(FileType.SNAPSHOT, snap))
    finally:
        store.close()
    assert served.hashes() == before  # type: ignore[operator]


def test_own_locks_go_others_stay(served: Served, gateway_world: GatewayWorld) -> None:
    w = gateway_world
    store = open_store(w.rest_url(served.job_id, served.actor.token))
    try:
        repo = Repository.open(store, PASSWORD.encode())
        with repo.lock(exclusive=False):
            assert len(list(store.list(FileType.LOCK))) == 1
        assert list(store.list(FileType.LOCK)) == []  # its own lock: removed through the gateway
    finally:
        store.close()
    key = Repository.open(served.direct, PASSWORD.encode()).key
    foreign = key.seal(b'{"hostname": "the maintenance worker"}')  # written to the storage directly
    name = hashlib.sha256(foreign).hexdigest()
    served.direct.save(Handle(FileType.LOCK, name), foreign)
    mine = key.seal(b'{"hostname": "pc1"}')
    with served.client(w) as c:
        r = c.delete(f"/locks/{name}")
        assert r.status_code == 403 and "not a lock this agent created" in r.text
        assert c.head(f"/locks/{name}").status_code == 200
        with served.client(w, w.agent(w.tenant()).token) as stranger:
            assert stranger.delete(f"/locks/{name}").status_code == 404
        own = hashlib.sha256(mine).hexdigest()
        assert c.post(f"/locks/{own}", content=mine).status_code == 200
        assert c.delete(f"/locks/{own}").status_code == 200 and c.head(f"/locks/{own}").status_code == 404
    served.direct.remove(Handle(FileType.LOCK, name))


def test_garbage_that_would_break_a_restore_is_refused(served: Served, gateway_world: GatewayWorld) -> None:
    """Adding is allowed, but only what decrypts with the repository's key: a junk index or
    snapshot would stop restores, junk keys would hide the real one from restic's key search."""
    before = served.hashes()  # type: ignore[operator]
    junk = os.urandom(300)
    name = hashlib.sha256(junk).hexdigest()
    with served.client(gateway_world) as c:
        for kind in ("index", "snapshots", "locks"):
            r = c.post(f"/{kind}/{name}", content=junk)
            assert r.status_code == 400 and "does not decrypt with the repository's key" in r.text, (kind, r.text)
        r = c.post(f"/keys/{name}", content=junk)
        assert r.status_code == 400 and "not a key file" in r.text
        other = make_key_file(b"the intruder's password", Key.random(), FAST_KDF)
        r = c.post(f"/keys/{hashlib.sha256(other).hexdigest()}", content=other)
        assert r.status_code == 400 and "does not open with the job's repository password" in r.text
    assert served.hashes() == before  # type: ignore[operator]


def test_another_agents_repository_is_invisible(served: Served, gateway_world: GatewayWorld) -> None:
    w = gateway_world
    before = served.hashes()  # type: ignore[operator]
    for token in (w.agent(w.tenant()).token, "e3g_not-a-token-at-all-0123456789"):
        with served.client(w, token) as c:
            assert c.head("/config").status_code == 404
            assert c.get("/snapshots/").status_code == 404
            blob = b"x"
            assert c.post(f"/data/{hashlib.sha256(blob).hexdigest()}", content=blob).status_code == 404
            assert c.post("/?create=true").status_code == 404
    assert httpx.get(f"{w.url}/gateway/job-{served.job_id}/config").status_code == 401
    assert served.hashes() == before  # type: ignore[operator]


def test_recovery_session_token_reads_only(served: Served, gateway_world: GatewayWorld) -> None:
    w = gateway_world
    token = w.recovery_token(served.job_id)
    before = served.hashes()  # type: ignore[operator]
    with served.client(w, token) as c:
        assert c.get("/config").status_code == 200
        snaps = c.get("/snapshots/", headers={"Accept": "application/vnd.x.restic.rest.v2"}).json()
        assert snaps
        blob = b"new object"
        r = c.post(f"/data/{hashlib.sha256(blob).hexdigest()}", content=blob)
        assert r.status_code == 403 and "read-only" in r.text
        assert c.delete(f"/snapshots/{snaps[0]['name']}").status_code == 403
    store = open_store(w.rest_url(served.job_id, token))
    try:  # the console's way in: the whole repository opens and reads
        assert [s.id for s in Repository.open(store, PASSWORD.encode()).snapshots()] == [snaps[0]["name"]]
    finally:
        store.close()
    assert served.hashes() == before  # type: ignore[operator]


def test_a_name_that_is_not_the_contents_hash_is_refused(served: Served, gateway_world: GatewayWorld) -> None:
    with served.client(gateway_world) as c:
        r = c.post(f"/data/{'ab' * 32}", content=b"something else")
        assert r.status_code == 400 and "SHA-256" in r.text
        assert c.head(f"/data/{'ab' * 32}").status_code == 404
