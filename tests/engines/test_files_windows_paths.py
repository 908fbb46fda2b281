"""Windows paths in the files engine, judged by the real restic: a snapshot of ``C:\\Users\\a``
and ``\\\\srv\\share\\docs`` lists and restores as restic (0.14 and later) lays out a Windows
backup (``pathComponents`` in restic's internal/archiver/tree.go): the drive without its colon
(``/C/Users/a``), a share as its volume name. On Linux the drive and the share are folders the
``PathStyle`` seam maps the Windows names to; everything else is the engine as it runs."""

from __future__ import annotations

import json
import ntpath
import os
from pathlib import Path

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.engines.files.targets import PathStyle, components, long_path, windows_user_path
from e3backup.repo import Repository
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.sources.excludes import Excluder
from e3backup.store import LocalStore
from tests.helpers import PASSWORD, restic


def _style(roots: dict[str, Path]) -> PathStyle:
    """``C:\\...`` -> roots["C:"]/..., ``\\\\srv\\share\\...`` -> roots["\\\\srv\\share"]/..."""

    def to_fs(path: bytes) -> bytes:
        drive, rest = ntpath.splitdrive(os.fsdecode(path))
        return os.fsencode(str(roots[drive]) + rest.replace("\\", "/"))

    def to_user(path: bytes) -> str:
        p = os.fsdecode(path)
        for drive, root in roots.items():
            if p.startswith(str(root)):
                return windows_user_path(os.fsencode(drive + p[len(str(root)):]))
        raise AssertionError(p)

    return PathStyle(windows=True, to_fs=to_fs, to_user=to_user)


def test_windows_paths_list_and_restore_like_restic_on_windows(tmp_path: Path) -> None:
    c, share = tmp_path / "drive-c", tmp_path / "share"
    files = {
        c / "Users/a/Documents/report.docx": os.urandom(70_000),
        c / "Users/a/notes.txt": "naïve café, 日本語\n".encode(),
        c / "Users/a/AppData/cache.tmp": b"skip me",
        share / "docs/plan.pdf": os.urandom(5000),
    }
    for p, data in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        result = run_backup(repo, BackupOptions(
            paths=["C:\\Users\\a", "\\\\srv\\share\\docs"], host="win10",
            excluder=Excluder(["C:/Users/*/AppData"]),
            path_style=_style({"C:": c, "\\\\srv\\share": share}),
        ))
    finally:
        repo.close()
    assert result.errors == []

    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert snaps[0]["paths"] == ["C:\\Users\\a", "\\\\srv\\share\\docs"]
    listed = [json.loads(line).get("path") for line in restic(repo_path, "ls", "--json", "latest").stdout.splitlines()]
    assert {"/C", "/C/Users", "/C/Users/a", "/C/Users/a/notes.txt", "/C/Users/a/Documents/report.docx",
            "/\\\\srv\\share", "/\\\\srv\\share/docs/plan.pdf"} <= set(listed)
    assert not any("AppData" in (p or "") for p in listed)  # the exclude matched the Windows path
    restic(repo_path, "check", "--read-data")

    out = tmp_path / "restic-out"
    restic(repo_path, "restore", "latest", "--target", str(out))
    ours = tmp_path / "ours"
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        run_restore(repo, RestoreOptions(target=str(ours)))
    finally:
        repo.close()
    for tree in (out, ours):
        assert (tree / "C/Users/a/notes.txt").read_bytes() == files[c / "Users/a/notes.txt"]
        assert (tree / "C/Users/a/Documents/report.docx").read_bytes() == files[c / "Users/a/Documents/report.docx"]
        assert (tree / "\\\\srv\\share/docs/plan.pdf").read_bytes() == files[share / "docs/plan.pdf"]
        assert not (tree / "C/Users/a/AppData").exists()


def test_restic_path_components() -> None:
    assert components(b"C:\\Users\\a", windows=True) == (b"", [b"C", b"Users", b"a"])
    assert components(b"\\\\?\\C:\\Users\\a", windows=True) == (b"", [b"C", b"Users", b"a"])
    assert components(b"\\\\srv\\share\\d", windows=True) == (b"", [b"\\\\srv\\share", b"d"])
    assert components(b"\\\\?\\UNC\\srv\\share\\d", windows=True) == (b"", [b"\\\\srv\\share", b"d"])
    assert long_path(b"C:\\" + b"x\\" * 200) .startswith(b"\\\\?\\C:\\x\\x")
    assert long_path(b"\\\\srv\\share\\d") == b"\\\\?\\UNC\\srv\\share\\d"
    assert windows_user_path(b"\\\\?\\C:\\Users\\a") == "/C:/Users/a"
    assert Excluder(["C:/Users/*/AppData"]).excluded(windows_user_path(b"C:\\Users\\b\\AppData"))


def test_files_are_read_from_a_shadow_copy_of_their_volume(tmp_path: Path) -> None:
    """Windows files jobs read each volume through a VSS shadow copy (the provider and WMI double of
    tests/platform); here the shadow copy's device is a folder, and what the live volume holds
    differs from it, so the bytes restored prove where they were read."""
    from e3backup.engines.files.shadows import VolumeShadows
    from e3backup.events import Event, EventCode
    from e3backup.platform.windows.vss import Journal, ShadowCopies
    from tests.platform.win32_double import FakePowerShell

    shell = FakePowerShell()
    shadows = ShadowCopies(shell, Journal(tmp_path / "journal.json"))
    frozen = tmp_path / "HarddiskVolumeShadowCopy1"  # the first copy the double makes
    (frozen / "Users/a").mkdir(parents=True)
    (frozen / "Users/a/db.mdf").write_bytes(b"consistent pages")  # open and changing on the live C:

    def join(device: str, rest: str) -> bytes:
        return os.fsencode(str(tmp_path / device.rsplit("\\", 1)[-1]) + rest.replace("\\", "/"))

    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    events: list[Event] = []
    try:
        result = run_backup(repo, BackupOptions(paths=["C:\\Users\\a"], host="win10",
                                                path_style=PathStyle(windows=True),
                                                shadows=VolumeShadows(shadows, join)), on_event=events.append)
    finally:
        repo.close()
    assert result.errors == []
    assert EventCode.VSS_SNAPSHOT_CREATED in [e.code for e in events]
    assert shell.shadows == {} and shadows.journal.ids() == []  # deleted after the run
    assert restic(repo_path, "dump", "latest", "/C/Users/a/db.mdf").stdout == b"consistent pages"


def test_shares_are_connected_for_the_run_and_failures_end_it(tmp_path: Path) -> None:
    from e3backup.engines.files.shadows import ShareLogin
    from e3backup.events import Event, EventCode
    from e3backup.platform.windows.shares import ShareError
    from e3backup.platform.windows.win32 import ERROR_LOGON_FAILURE
    from tests.platform.win32_double import FakeWin32

    share = tmp_path / "share"
    (share / "docs").mkdir(parents=True)
    (share / "docs/a.txt").write_bytes(b"on the share")
    api = FakeWin32()
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()

    def backup(events: list[Event]) -> None:
        repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
        try:
            run_backup(repo, BackupOptions(paths=["\\\\nas\\share\\docs"], host="win10",
                                           path_style=_style({"\\\\nas\\share": share}),
                                           share_login=ShareLogin(api, "CORP\\backup", "pw-do-not-leak")),
                       on_event=events.append)
        finally:
            repo.close()

    backup([])
    assert ("connect", ("\\\\nas\\share", "CORP\\backup")) in api.calls and api.connections == {}
    assert restic(repo_path, "dump", "latest", "/\\\\nas\\share/docs/a.txt").stdout == b"on the share"
    api.connect_error = ERROR_LOGON_FAILURE
    events: list[Event] = []
    import pytest

    with pytest.raises(ShareError):
        backup(events)
    failed = [e for e in events if e.code is EventCode.SHARE_CONNECT_FAILED]
    assert len(failed) == 1 and failed[0].details["reason"] == "credentials"
    assert "pw-do-not-leak" not in repr(events)
    assert len(json.loads(restic(repo_path, "snapshots", "--json").stdout)) == 1  # nothing written
