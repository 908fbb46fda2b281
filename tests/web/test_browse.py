"""Browsing a files snapshot from the dashboard, search, preview and downloads (a file, ZIP,
tar) read from a real repository; hostile names in the snapshot never show up or escape."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from e3backup.errors import AccessDeniedError
from e3backup.repo import BlobType, Node, Repository, Snapshot
from e3backup.server.db.models import AuditEvent, GatewayReadToken, Job, Run
from e3backup.server.security.roles import Role
from e3backup.server.services import gateway_readers, repository_access
from e3backup.server.web import browse as browse_web
from e3backup.store import FileType, Handle, LocalStore, Store
from e3backup.store.url import open_store
from tests.conftest import FAST_KDF
from tests.plugins.seaweedfs import SeaweedServer
from tests.server.conftest import FakeClock, World
from tests.server.test_authorization import role_user
from tests.web.conftest import HTML, form_post, page, text_of

REPO_PASSWORD = "browse-repo-password-4711"
LONG = "L" * 300  # longer than most file systems allow; still one safe component
HOSTILE = ["..", "../escape", "/etc/passwd", "nul\x00byte", ".", ""]
BIN = os.urandom(300_000)


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"browse_local_roots": [tmp_path / "repos"]}


def _raw_tree(nodes: list[dict[str, object]]) -> bytes:
    # hand-written JSON: encode_tree() refuses the names a hostile writer would put here
    return ('{"nodes":[' + ",".join(json.dumps(n) for n in nodes) + "]}\n").encode()


def _file(name: bytes, data_ids: list[bytes], size: int) -> Node:
    return Node(name=name, type="file", mode=0o644, size=size, content=data_ids, mtime=1_700_000_000 * 10**9)


def _snapshot(path: Path | Store) -> str:
    repo = Repository.init(path if not isinstance(path, Path) else LocalStore(path), REPO_PASSWORD.encode(), FAST_KDF)
    with repo.lock(), repo.writer() as w:
        text_id, _ = w.save(BlobType.DATA, b"hello from the snapshot\n")
        bin_ids = [w.save(BlobType.DATA, BIN[i : i + 100_000])[0] for i in range(0, len(BIN), 100_000)]
        sub = repo.save_tree(w, [_file(b"b.bin", bin_ids, len(BIN))])
        docs = repo.save_tree(w, [
            _file(b"a.txt", [text_id], 24),
            Node(name=b"sub", type="dir", mode=0o755 | (1 << 31), subtree=sub, mtime=1),
        ])
        nodes = [Node(name=b"docs", type="dir", mode=0o755 | (1 << 31), subtree=docs, mtime=1).to_json(),
                 _file(LONG.encode(), [text_id], 24).to_json()]
        for bad in HOSTILE:
            evil = _file(b"x", [text_id], 24).to_json()
            evil["name"] = bad
            nodes.append(evil)
        root, _ = w.save(BlobType.TREE, _raw_tree(nodes))
    snap_id = repo.save_snapshot(Snapshot(time=1_700_000_000 * 10**9, tree=root, paths=["/data"]))
    repo.close()
    return snap_id


def _browsable_run(world: World, clock: FakeClock, tmp_path: Path, where: str = "repos",
                   s3: SeaweedServer | None = None, **job: Any) -> tuple[int, str]:
    repo_dir = tmp_path / where / "acme"
    destination: dict[str, Any] = {"type": "local", "path": str(repo_dir), "repository_password": REPO_PASSWORD}
    if s3 is not None:
        bucket = s3.make_bucket()
        snap_id = _snapshot(open_store(s3.url(bucket, "acme"), **s3.store_options()))
        destination = {"type": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": "acme",
                       "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
                       "repository_password": REPO_PASSWORD}
    else:
        snap_id = _snapshot(repo_dir)
    job = world.job(destination=destination, **job)
    assert world.admin.post(f"/api/jobs/{job['id']}/run").status_code == 201
    claimed = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    clock.advance(seconds=30)
    body = {"run_id": claimed["run_id"], "status": "success", "snapshot_id": snap_id, "files_total": 3}
    assert world.agent_a.post("/api/agent/update_run", json=body).status_code == 200
    return int(claimed["run_id"]), snap_id


def _audit(world: World) -> list[tuple[str, dict[str, Any]]]:
    with world.client.app.state.e3.sessions() as s:  # type: ignore[attr-defined]
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action.startswith("snapshot.")).order_by(AuditEvent.id))
        return [(r.action, r.details) for r in rows]


def test_browse_search_and_preview_hide_hostile_names(
    world: World, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = _browsable_run(world, clock, tmp_path)
    html = page(world.user_a, f"/runs/{run_id}/browse")
    paths = [p.split('"')[0] for p in html.split('<tr data-path="')[1:]]
    assert paths == ["docs", LONG]  # folders first; the hostile nodes are not shown
    assert "passwd" not in html and "escape" not in html and "nul" not in html
    assert [p.split('"')[0] for p in page(world.user_a, f"/runs/{run_id}/browse?path=docs").split(
        '<tr data-path="')[1:]] == ["docs/sub", "docs/a.txt"]
    monkeypatch.setattr(browse_web, "PAGE", 1)
    paged = page(world.user_a, f"/runs/{run_id}/browse?path=docs&offset=1").replace("&amp;", "&")
    assert 'data-path="docs/a.txt"' in paged and 'data-path="docs/sub"' not in paged  # PAGE is 1 here
    assert "Entries 2\u20132 of 2." in text_of(paged) and f"/runs/{run_id}/browse?path=docs&offset=0" in paged
    found = page(world.user_a, f"/runs/{run_id}/browse?q=B.BIN")
    assert 'data-path="docs/sub/b.bin"' in found and "1 entry named like" in text_of(found)
    assert "293.0 KiB" in text_of(found)
    preview = page(world.user_a, f"/runs/{run_id}/browse/preview?path=docs/a.txt")
    assert '<pre class="preview" id="preview" tabindex="0">hello from the snapshot' in preview
    assert 'id="no-preview"' in page(world.user_a, f"/runs/{run_id}/browse/preview?path=docs/sub/b.bin")
    for bad in ("../escape", "docs/../..", "/etc/passwd"):
        r = world.user_a.get(f"/runs/{run_id}/browse/preview", params={"path": bad}, headers=HTML)
        assert r.status_code in (404, 422), bad
    assert world.user_b.get(f"/runs/{run_id}/browse", headers=HTML).status_code == 404
    assert world.user_b.get(f"/runs/{run_id}/browse/file?path=docs/a.txt").status_code == 404
    actions = _audit(world)
    assert actions[:5] == [("snapshot.browse", {"path": "/"}), ("snapshot.browse", {"path": "/docs"}),
                           ("snapshot.browse", {"path": "/docs"}), ("snapshot.search", {"path": "/", "q": "B.BIN"}),
                           ("snapshot.preview", {"path": "/docs/a.txt"})]


def test_downloads_stream_the_bytes_and_archives_stay_inside(world: World, clock: FakeClock, tmp_path: Path) -> None:
    run_id, _ = _browsable_run(world, clock, tmp_path)
    r = world.user_a.get(f"/runs/{run_id}/browse/file", params={"path": "docs/sub/b.bin"})
    assert r.status_code == 200 and r.content == BIN
    assert r.headers["content-disposition"].startswith('attachment; filename="b.bin"')
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", {"base": "docs", "paths": "docs", "format": "zip"})
    assert r.status_code == 422  # a selection is below the folder it was picked in
    r = world.user_a.post(f"/runs/{run_id}/browse/download", data={
        "csrf_token": world.user_a.headers["X-CSRF-Token"], "base": "", "paths": ["docs", LONG], "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.testzip() is None
        names = sorted(z.namelist())
        assert names == sorted(["docs/", "docs/a.txt", "docs/sub/", "docs/sub/b.bin", LONG])
        assert z.read("docs/sub/b.bin") == BIN and z.read(LONG) == b"hello from the snapshot\n"
    r = world.user_a.post(f"/runs/{run_id}/browse/download", data={
        "csrf_token": world.user_a.headers["X-CSRF-Token"], "base": "docs", "paths": ["docs/sub"], "format": "tar"})
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        out = tmp_path / "untar"
        t.extractall(out, filter="data")  # the strict filter refuses any escaping member
    assert (out / "sub" / "b.bin").read_bytes() == BIN and sorted(os.listdir(out)) == ["sub"]
    for bad in (["../escape"], ["docs/../../x"], ["/etc/passwd"], ["nul\x00byte"]):
        r = world.user_a.post(f"/runs/{run_id}/browse/download", data={
            "csrf_token": world.user_a.headers["X-CSRF-Token"], "base": "", "paths": bad, "format": "tar"})
        assert r.status_code in (404, 422), bad
    downloads = [d for a, d in _audit(world) if a == "snapshot.download"]
    assert [d["format"] for d in downloads] == ["file", "zip", "tar"]
    assert downloads[1]["files"] == 3 and downloads[1]["bytes"] == len(BIN) + 48


def test_a_large_selection_asks_first_and_readers_may_not_download(
    app: FastAPI, world: World, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = _browsable_run(world, clock, tmp_path)
    reader = role_user(app, world, "rita@acme.example", world.tenant_a, Role.READ_ONLY)
    listing = page(reader, f"/runs/{run_id}/browse?path=docs")  # names and sizes: yes
    assert 'data-path="docs/a.txt"' in listing and "Download selected" not in listing
    assert reader.get(f"/runs/{run_id}/browse/file?path=docs/a.txt", headers=HTML).status_code == 403
    assert reader.get(f"/runs/{run_id}/browse/preview?path=docs/a.txt", headers=HTML).status_code == 403
    assert form_post(reader, f"/runs/{run_id}/browse/download", {"paths": "docs", "format": "zip"}).status_code == 403
    monkeypatch.setattr(browse_web, "LARGE_DOWNLOAD", 100_000)
    form = {"base": "docs", "paths": "docs/sub", "format": "zip"}
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", form)
    assert r.status_code == 200 and 'id="size-warning"' in r.text and "1 files, 293.0 KiB" in text_of(r.text)
    assert [a for a, _ in _audit(world)] == ["snapshot.browse"]  # the reader's listing; nothing downloaded yet
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", {**form, "confirmed": "1"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert form_post(world.user_a, f"/runs/{run_id}/browse/download", {**form, "confirmed": "1"},
                     csrf=False).status_code == 403


def test_a_repository_out_of_the_servers_reach_is_said(world: World, clock: FakeClock, tmp_path: Path) -> None:
    run_id, _ = _browsable_run(world, clock, tmp_path, where="elsewhere")
    r = world.user_a.get(f"/runs/{run_id}/browse", headers=HTML)
    assert r.status_code == 409 and "out of the server&#39;s reach (browse_local_roots)" in r.text


def _bucket_hashes(s3: SeaweedServer, bucket: str) -> dict[str, str]:
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: hashlib.sha256(client.get_object(Bucket=bucket, Key=k)["Body"].read()).hexdigest() for k in keys}


def _read_everything(world: World, run_id: int) -> None:
    """Browse, a file, a ZIP and a tar of the S3 snapshot: every byte as backed up."""
    assert [p.split('"')[0] for p in page(world.user_a, f"/runs/{run_id}/browse?path=docs/sub").split(
        '<tr data-path="')[1:]] == ["docs/sub/b.bin"]
    r = world.user_a.get(f"/runs/{run_id}/browse/file", params={"path": "docs/sub/b.bin"})
    assert r.status_code == 200 and r.content == BIN
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", {"base": "", "paths": "docs", "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.read("docs/sub/b.bin") == BIN and z.read("docs/a.txt") == b"hello from the snapshot\n"
    r = form_post(world.user_a, f"/runs/{run_id}/browse/download", {"base": "docs", "paths": "docs/sub",
                                                                      "format": "tar"})
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        member = t.extractfile("sub/b.bin")
        assert member is not None and member.read() == BIN


def test_a_direct_mode_s3_repository_is_read_through_the_tenants_endpoint(
    world: World, clock: FakeClock, tmp_path: Path, s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, _ = _browsable_run(world, clock, tmp_path, s3=s3_server, storage_mode="direct")
    issued: list[str] = []
    monkeypatch.setattr(gateway_readers, "issue", lambda *a: issued.append("token") or "")
    _read_everything(world, run_id)
    assert issued == []  # no gateway involved: the job's agent holds the credentials anyway


def test_a_gateway_mode_repository_is_read_through_the_gateway_with_a_read_only_token(
    world: World, clock: FakeClock, tmp_path: Path, s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's downloads of a gateway-mode job never touch the storage credentials: each
    opening of the repository gets its own read-only token, with which writing is refused (403)
    and nothing in the bucket changes; the token ends with the request, opens no other job and
    expires."""
    run_id, _ = _browsable_run(world, clock, tmp_path, s3=s3_server)
    with world.client.app.state.e3.sessions() as s:  # type: ignore[attr-defined]
        job = s.get(Job, s.get(Run, run_id).job_id)  # type: ignore[union-attr]
        assert job is not None and job.storage_mode == "gateway"
        job_id, bucket = job.id, job.destination["bucket"]
    before = _bucket_hashes(s3_server, bucket)
    snapshot = next(k for k in before if "/snapshots/" in k).rsplit("/", 1)[1]
    opened = repository_access._gateway_store
    tokens: list[str] = []
    refusals: list[str] = []

    def spying(reader: repository_access.GatewayReader, job: int, token: str) -> Store:
        store = opened(reader, job, token)
        tokens.append(token)
        junk = b"written by a dashboard request"
        for attempt in (lambda: store.save(Handle(FileType.SNAPSHOT, hashlib.sha256(junk).hexdigest()), junk),
                        lambda: store.remove(Handle(FileType.SNAPSHOT, snapshot)),
                        lambda: store.save(Handle(FileType.LOCK, hashlib.sha256(junk).hexdigest()), junk)):
            with pytest.raises(AccessDeniedError) as refused:
                attempt()
            refusals.append(str(refused.value))
        return store

    monkeypatch.setattr(repository_access, "_gateway_store", spying)
    _read_everything(world, run_id)
    assert len(tokens) >= 4 and all(t.startswith("e3d_") for t in tokens)
    assert all("HTTP 403" in r and "read-only" in r for r in refusals), refusals
    assert _bucket_hashes(s3_server, bucket) == before
    for token in tokens:  # ended with its request; over HTTP it is refused like any unknown token
        r = world.client.post(f"/gateway/job-{job_id}/snapshots/{'0' * 64}", content=b"x", auth=("", token))
        assert r.status_code == 404
        assert world.client.get(f"/gateway/job-{job_id}/config", auth=("", token)).status_code == 404
    with world.client.app.state.e3.sessions() as s:  # type: ignore[attr-defined]
        assert s.scalar(select(func.count(GatewayReadToken.id))) == 0
    # a reader token opens only its job, only to read, and not past its expiry
    token = gateway_readers.issue(world.client.app.state.e3.sessions, clock.now(), job_id, None)  # type: ignore[attr-defined]
    assert world.client.get(f"/gateway/job-{job_id}/config", auth=("", token)).status_code == 200
    r = world.client.post(f"/gateway/job-{job_id}/snapshots/{hashlib.sha256(b'x').hexdigest()}", content=b"x",
                          auth=("", token))
    assert r.status_code == 403 and "read-only" in r.text
    assert world.client.delete(f"/gateway/job-{job_id}/config", auth=("", token)).status_code == 403
    other = world.job(destination={"type": "local", "path": str(tmp_path / "repos" / "x"),
                                   "repository_password": REPO_PASSWORD}, storage_mode="direct")
    assert world.client.get(f"/gateway/job-{other['id']}/config", auth=("", token)).status_code == 404
    clock.advance(seconds=int(gateway_readers.LIFETIME.total_seconds()))
    assert world.client.get(f"/gateway/job-{job_id}/config", auth=("", token)).status_code == 404
    assert _bucket_hashes(s3_server, bucket) == before


def test_no_repository_key_or_password_outlives_the_request(
    world: World, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import gc

    from e3backup.repo.crypto import Key

    def alive() -> list[object]:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, Repository | Key)]

    run_id, _ = _browsable_run(world, clock, tmp_path)
    before = alive()  # other tests of the session may keep theirs; only these requests' count
    caplog.set_level("DEBUG")
    page(world.user_a, f"/runs/{run_id}/browse?path=docs")
    assert world.user_a.get(f"/runs/{run_id}/browse/file", params={"path": "docs/a.txt"}).status_code == 200
    assert [o for o in alive() if not any(o is b for b in before)] == []
    assert REPO_PASSWORD not in caplog.text
