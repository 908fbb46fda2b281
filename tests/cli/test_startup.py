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


def test_imports_run_on_the_calling_thread_while_scrypt_runs_in_another(
    repo: Repository, repo_path: Path, password_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own modules may be preloaded: every import stays on the command's thread (two threads
    importing one package can see each other's half-made modules), only scrypt moves."""
    import hashlib
    import importlib
    import threading

    main = threading.current_thread()
    seen: dict[str, threading.Thread] = {}
    real_scrypt, real_import = hashlib.scrypt, importlib.import_module

    def scrypt(*a: object, **kw: object) -> bytes:
        seen["scrypt"] = threading.current_thread()
        return real_scrypt(*a, **kw)  # type: ignore[arg-type]

    def import_module(name: str, package: str | None = None) -> object:
        seen[name] = threading.current_thread()
        return real_import(name, package)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.delitem(sys.modules, "e3backup.restore.hash_batches", raising=False)
    opened = AppContext(repo=str(repo_path)).open_repo(preload=("e3backup.restore.hash_batches",))
    try:
        assert opened.config.id == repo.config.id
        assert seen["scrypt"] is not main
        assert seen["e3backup.restore.hash_batches"] is main
        assert "e3backup.restore.hash_batches" in sys.modules
    finally:
        opened.close()


def test_a_failing_key_derivation_is_raised_on_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from e3backup.repo.keys import KDFParams, derive_user_key

    def broken(*a: object, **kw: object) -> bytes:
        raise ValueError("scrypt: memory limit exceeded")

    monkeypatch.setattr(hashlib, "scrypt", broken)
    ran: list[bool] = []
    with pytest.raises(ValueError, match="memory limit exceeded"):
        derive_user_key(b"pw", b"s" * 64, KDFParams(), meanwhile=lambda: ran.append(True))
    assert ran == [True]
