"""Sync jobs through the agent: created with the jobs API, run by a real ``Agent`` against the
real server app and SeaweedFS; the policy's ``sync_*`` flags and ``limit_upload`` reach the
engine and change what happens; the run's counters reach the run page."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.engines import BACKUP, JobContext, _sync_options
from e3backup.agent.logs import RedactingFilter
from e3backup.api.common import Engine
from e3backup.engines.sync import Compare, S3Target
from tests.engines.sync.helpers import bucket_listing, make_tree, source_listing
from tests.plugins.seaweedfs import SeaweedServer
from tests.sources.faultyfuse import faulty_image

from .conftest import REPO_PASSWORD, Harness


def sync_job(h: Harness, agent: Any, sources: list[Path], s3: SeaweedServer, bucket: str, secret: str = "",
             **policy: Any) -> dict[str, Any]:
    body = {
        "name": "mirror", "engine": "sync", "agent_id": agent.config.agent_id,
        "source_paths": [str(s) for s in sources],
        "destination": {"type": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": "mirror/pc1",
                        "access_key_id": s3.access_key, "secret_access_key": secret or s3.secret_key,
                        "repository_password": REPO_PASSWORD},
        "policy": policy,
    }
    return dict(h.api("POST", "/api/jobs", json=body).json())


def run_once(h: Harness, agent: Any, job: dict[str, Any]) -> dict[str, Any]:
    run_id = h.run_job(job["id"])
    assert agent.poll_once()
    return h.finish(agent, run_id)


def mirror_of(s3: SeaweedServer, bucket: str) -> dict[str, tuple[int, str, int | None]]:
    return bucket_listing(s3.client(), bucket, "mirror/pc1")


def test_sync_job_full_then_again_through_the_agent(harness: Harness, s3_server: SeaweedServer, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactingFilter())
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    job = sync_job(harness, agent, [src], s3_server, bucket)

    first = run_once(harness, agent, job)
    assert first["status"] == "success", first
    assert mirror_of(s3_server, bucket) == source_listing(src)
    n = len(source_listing(src))
    assert first["backup_type"] == "full" and first["snapshot_id"] is None
    assert first["sync_result"]["files_transferred"] == n and first["sync_result"]["files_deleted"] == 0
    assert first["files_processed"] == n
    codes = harness.codes(first["id"])
    assert codes[0] == "STORAGE_OK" and codes[-2:] == ["SYNC_STARTED", "SYNC_COMPLETED"]

    (src / "a b c.txt").write_text("changed")
    (src / "hash#tag.txt").unlink()
    again = run_once(harness, agent, job)
    assert again["status"] == "success"
    s = again["sync_result"]
    assert (s["files_transferred"], s["files_deleted"], s["files_unchanged"]) == (1, 1, n - 2)
    assert again["backup_type"] == "incremental"
    assert mirror_of(s3_server, bucket) == source_listing(src)

    for kind, payload in (("restore", {"snapshot_id": "latest", "target_path": "/tmp/x"}), ("maintenance", {})):
        harness.client.cookies.clear()
        refused = harness.client.post(f"/api/agents/{agent.config.agent_id}/commands", headers=harness.admin_headers,
                                      json={"type": kind, "job_id": job["id"], "payload": payload})
        assert refused.status_code == 422, refused.text
        assert (f"is a sync job: its files are plain objects in bucket {bucket} under the prefix mirror/pc1/ "
                f"at {s3_server.endpoint}") in refused.text
    html = harness.client.get(f"/runs/{again['id']}", headers={**harness.admin_headers, "Accept": "text/html"}).text
    assert 'data-sync="deleted">1 files' in html and f"{n - 2} files" in html
    assert f"bucket <code>{bucket}</code> under the prefix <code>mirror/pc1/</code>" in html
    # the secret key never reaches a log line, an event or the run
    everything = caplog.text + str(harness.events(first["id"])) + str(harness.events(again["id"])) + str(again)
    assert s3_server.secret_key not in everything


def test_policy_flags_change_what_the_sync_does(harness: Harness, s3_server: SeaweedServer, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    dry = run_once(harness, agent, sync_job(harness, agent, [src], s3_server, bucket, sync_dry_run=True))
    assert dry["status"] == "success" and dry["sync_result"]["dry_run"] is True
    assert mirror_of(s3_server, bucket) == {}

    keep = sync_job(harness, agent, [src], s3_server, bucket, sync_delete=False)
    run_once(harness, agent, keep)
    (src / ".hidden").unlink()
    kept = run_once(harness, agent, keep)
    assert kept["sync_result"]["files_kept"] == 1 and ".hidden" in mirror_of(s3_server, bucket)

    # an emptied source: the default guard refuses, the run warns and says why
    guarded = sync_job(harness, agent, [src], s3_server, bucket)
    shutil.rmtree(src)
    src.mkdir()
    refused = run_once(harness, agent, guarded)
    assert refused["status"] == "warning"
    assert "deletion(s) refused by the max_delete guard" in refused["error_summary"]
    assert "SYNC_DELETE_REFUSED" in harness.codes(refused["id"])
    assert len(mirror_of(s3_server, bucket)) > 30
    unguarded = run_once(harness, agent, sync_job(harness, agent, [src], s3_server, bucket, sync_max_delete=100))
    assert unguarded["status"] == "success" and mirror_of(s3_server, bucket) == {}

    # checksum mode finds a change that kept size and modification time
    (src / "f").write_bytes(b"1234")
    run_once(harness, agent, guarded)
    st = (src / "f").stat()
    (src / "f").write_bytes(b"abcd")
    os.utime(src / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run_once(harness, agent, guarded)["sync_result"]["files_transferred"] == 0
    by_sum = run_once(harness, agent, sync_job(harness, agent, [src], s3_server, bucket, sync_compare="checksum"))
    assert by_sum["sync_result"]["files_changed"] == 1
    assert mirror_of(s3_server, bucket) == source_listing(src)


def test_the_edge_resolves_every_policy_flag(harness: Harness, s3_server: SeaweedServer, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = sync_job(harness, agent, [tmp_path], s3_server, "some-bucket", sync_compare="checksum",
                   sync_delete=False, sync_max_delete=7, sync_dry_run=True, limit_upload=300)
    run_id = harness.run_job(job["id"])
    assignment = agent.client.next_run(kind="backup")
    assert assignment.run is not None and assignment.run.run_id == run_id
    opts = _sync_options(JobContext(assignment.run, agent.config, "host"))
    assert (opts.compare, opts.delete, opts.max_delete_percent, opts.dry_run, opts.limit_upload) == (
        Compare.CHECKSUM, False, 7, True, 300)
    assert isinstance(opts.target, S3Target) and opts.target.prefix == "mirror/pc1"
    assert BACKUP[Engine.SYNC].available("linux") and BACKUP[Engine.SYNC].available("win32")


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs FUSE")
def test_unreadable_file_ends_the_run_warning_naming_it(harness: Harness, s3_server: SeaweedServer,
                                                        tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    make_tree(src)
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(1 << 20))
    bucket = s3_server.make_bucket()
    with faulty_image(image, [(0, 4096)]) as bad:
        r = run_once(harness, agent, sync_job(harness, agent, [src, bad.parent], s3_server, bucket))
    assert r["status"] == "warning"
    assert r["error_summary"] == f"1 file(s) could not be synced: {bad}: Input/output error"
    failed = [e for e in harness.events(r["id"]) if e["code"] == "SYNC_FILE_FAILED"]
    assert [e["details"]["path"] for e in failed] == [str(bad)]
    assert mirror_of(s3_server, bucket) == {f"src/{k}": v for k, v in source_listing(src).items()}


def test_limit_upload_reaches_the_files_engine_store(harness: Harness, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy's ``limit_upload`` is the same option as the CLI's ``--limit-upload`` for
    every engine: a files backup's store is paced by it."""
    from e3backup.store import url

    seen: list[tuple[float | None, float | None]] = []
    real = url.limit
    monkeypatch.setattr(url, "limit", lambda store, up, down: seen.append((up, down)) or real(store, up, down))
    agent, _ = harness.make_agent()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("a")
    job = harness.files_job(agent, tmp_path / "src", policy={"limit_upload": 250})
    assert run_once(harness, agent, job)["status"] == "success"
    assert seen == [(250, None)]


def test_cancel_from_the_dashboard_stops_a_sync_and_deletes_nothing(harness: Harness, s3_server: SeaweedServer,
                                                                    tmp_path: Path) -> None:
    """40 files of 256 KiB at 256 KiB/s would take 40 s; cancel ends the run within the bounded
    wait, with the stale object (which a finished run deletes) still there."""
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(256 * 1024))
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="mirror/pc1/stale", Body=b"old")
    job = sync_job(harness, agent, [src], s3_server, bucket, limit_upload=256, sync_max_delete=100)
    run_id = harness.run_job(job["id"])
    agent.start()
    harness.wait_for(lambda: "SYNC_STARTED" in harness.codes(run_id), message="sync started")
    harness.api("POST", f"/api/runs/{run_id}/cancel")
    harness.wait_for(lambda: harness.run(run_id)["status"] == "cancelled", timeout=20, message="cancelled")
    assert "RUN_CANCELLED" in harness.codes(run_id)
    left = mirror_of(s3_server, bucket)
    assert "stale" in left and len(left) < 41


def test_a_destination_that_refuses_fails_the_run_with_sync_failed(harness: Harness, s3_server: SeaweedServer,
                                                                   tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    wrong = "W" + s3_server.secret_key[1:]
    job = sync_job(harness, agent, [src], s3_server, bucket, secret=wrong)
    r = run_once(harness, agent, job)
    assert r["status"] == "failed" and "access denied" in r["error_summary"].lower()
    codes = harness.codes(r["id"])
    assert "SYNC_FAILED" in codes and "REPOSITORY_FAILED" not in codes
    assert wrong not in str(harness.events(r["id"])) + str(r)
