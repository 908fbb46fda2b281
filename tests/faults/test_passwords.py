"""Defect 4 of issue #28: an empty password is refused by ``init`` and by opening, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.repo import Repository
from e3backup.store import LocalStore

from ..helpers import PASSWORD, e3


@pytest.mark.parametrize("how", ["file", "env"])
def test_init_refuses_an_empty_password(how: str, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(" \n")  # trimmed, as restic reads password files: empty
    args = ["--password-file", str(pw)] if how == "file" else []
    env = {"E3BACKUP_PASSWORD": ""} if how == "env" else {"E3BACKUP_PASSWORD_FILE": ""}
    p = e3("-r", str(tmp_path / "repo"), *args, "init", env=env, check=False)
    assert p.returncode == 2
    assert "password is empty" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "repo").exists()


def test_opening_with_an_empty_password_file_says_it_is_empty(tmp_path: Path) -> None:
    e3("-r", str(tmp_path / "repo"), "init", env={"E3BACKUP_PASSWORD": PASSWORD})
    pw = tmp_path / "pw"
    pw.write_bytes(b"")
    p = e3("-r", str(tmp_path / "repo"), "--password-file", str(pw), "snapshots", check=False)
    assert p.returncode == 2
    assert "password is empty" in p.stderr and f"password file {pw}" in p.stderr, p.stderr
    assert "wrong password" not in p.stderr


def test_the_repository_layer_refuses_it_too(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="password is empty"):
        Repository.init(LocalStore(tmp_path / "repo"), b"")
    with pytest.raises(UsageError, match="password is empty"):
        Repository.open(LocalStore(tmp_path / "repo"), b"")
