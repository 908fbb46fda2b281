"""Files picked in the dashboard's snapshot browser, restored by another agent of the tenant
into one of its restore folders (bytes equal), then again with keep-both and skip."""

from __future__ import annotations

from pathlib import Path

from .conftest import Harness


def _web(harness: Harness, method: str, url: str, **kw: object):  # type: ignore[no-untyped-def]
    harness.client.cookies.clear()
    headers = {"Cookie": harness.admin_headers["Cookie"], "Accept": "text/html"}
    return harness.client.request(method, url, headers=headers, follow_redirects=False, **kw)  # type: ignore[arg-type]


def _src(root: Path) -> Path:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha\n")
    (root / "docs" / "[draft] *b*.txt").write_bytes(b"beta " * 5000)
    (root / "docs" / "deep" / "c.bin").write_bytes(bytes(range(256)) * 400)
    (root / "docs" / "not-picked.txt").write_text("left behind\n")
    return root


def test_three_picked_files_restored_on_another_agent_then_keep_both_and_skip(
    harness: Harness, tmp_path: Path
) -> None:
    source, _ = harness.make_agent("a")
    other_root = tmp_path / "other-restores"
    other_root.mkdir()
    other, _ = harness.make_agent("b", restore_roots=[str(other_root)])
    other.report_disks()  # what the dashboard offers comes from this report
    src = _src(tmp_path / "src")
    job = harness.files_job(source, src)
    backup = harness.run_job(job["id"])
    assert source.poll_once()
    assert harness.finish(source, backup)["status"] == "success"

    docs = str(src / "docs").lstrip("/")
    picked = [f"{docs}/a.txt", f"{docs}/[draft] *b*.txt", f"{docs}/deep/c.bin"]
    form = {"base": docs, "paths": picked, "agent_id": str(other.config.agent_id), "where": "folder",
            "target_root": str(other_root), "target_sub": "ticket-7", "conflict": "keep_both"}
    page = _web(harness, "GET", f"/runs/{backup}/browse/restore", params=form)
    assert page.status_code == 200, page.text
    assert f"<code>{other_root}/ticket-7/deep/c.bin</code>" in page.text  # the preview: no parent path
    assert f"<code>{other_root}/ticket-7/[draft] *b*.txt</code>" in page.text

    def restore(**changes: str) -> int:
        body = {**form, **changes, "csrf_token": harness.admin_headers["X-CSRF-Token"]}
        r = _web(harness, "POST", f"/runs/{backup}/browse/restore", data=body)
        assert r.status_code == 303, r.text
        run_id = int(r.headers["location"].split("/")[2].split("?")[0])
        assert other.commands.poll_once() == 1
        done = harness.finish(other, run_id)
        assert done["status"] == "success", done
        return run_id

    restore()
    out = other_root / "ticket-7"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["[draft] *b*.txt", "a.txt", "deep",
                                                                        "deep/c.bin"]
    for name in ("a.txt", "[draft] *b*.txt", "deep/c.bin"):
        assert (out / name).read_bytes() == (src / "docs" / name).read_bytes()

    (out / "a.txt").write_text("changed on the target\n")
    restore()  # keep both: the restored copy goes beside the existing file
    assert (out / "a.txt").read_text() == "changed on the target\n"
    assert (out / "a (restored).txt").read_text() == "alpha\n"
    restore(conflict="skip")
    assert (out / "a.txt").read_text() == "changed on the target\n"
    assert not (out / "a (restored 2).txt").exists()
    restore(conflict="overwrite", keep_parents="1")  # with the original parent folders
    assert (out / docs / "a.txt").read_text() == "alpha\n"
    audit = harness.api("GET", "/api/audit", params={"action": "snapshot.restore"}).json()
    rows = audit["items"] if isinstance(audit, dict) else audit
    assert len(rows) == 4 and rows[0]["details"]["agent_id"] == other.config.agent_id
