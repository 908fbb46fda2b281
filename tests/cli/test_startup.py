"""Start-up of the restore commands: imports overlap the key derivation, and what the file
restore imports loads on a system without ``fcntl`` (the Windows agent restores files; the
disk image engine is Linux-only in this build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.cli.context import AppContext
from e3backup.errors import WrongPasswordError
from e3backup.repo import Repository

from ..helpers import PASSWORD


def test_open_repo_preloads_modules_and_ignores_ones_that_fail(
    repo: Repository, repo_path: Path, password_env: str
) -> None:
    app = AppContext(repo=str(repo_path))
    opened = app.open_repo(preload=("json", "e3backup_no_such_module"))
    try:
        assert opened.config.id == repo.config.id
        assert "json" in sys.modules
    finally:
        opened.close()


def test_open_repo_with_preload_still_refuses_a_wrong_password(
    repo: Repository, repo_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E3BACKUP_PASSWORD", PASSWORD + "x")
    with pytest.raises(WrongPasswordError, match="wrong password"):
        AppContext(repo=str(repo_path)).open_repo(preload=("numpy",))


def test_file_restore_modules_import_without_fcntl() -> None:
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import e3backup.restore.files, e3backup.restore.packs, e3backup.formats, e3backup.formats.direct\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
