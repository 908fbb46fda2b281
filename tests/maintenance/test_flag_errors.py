"""The repository layer's errors name no CLI flag (the agent calls it too); the CLI adds the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.repo.forget import parse_group_by
from e3backup.repo.prune import parse_max_unused
from tests.helpers import run_cli


def test_layer_errors_name_the_value_not_a_flag() -> None:
    with pytest.raises(UsageError) as e:
        parse_max_unused("lots%")
    assert "'lots%'" in str(e.value) and "--" not in str(e.value)
    with pytest.raises(UsageError) as e:
        parse_group_by("host,colour")
    assert "'colour'" in str(e.value) and "--" not in str(e.value)


def test_the_cli_names_the_flag(capsys: pytest.CaptureFixture[str], repo_path: Path, password_env: str) -> None:
    assert run_cli(capsys, "-r", str(repo_path), "init").code == 0
    r = run_cli(capsys, "-r", str(repo_path), "prune", "--max-unused", "lots")
    assert r.code == 2 and "--max-unused: invalid size 'lots'" in r.err
    r = run_cli(capsys, "-r", str(repo_path), "forget", "--keep-last", "1", "--group-by", "colour")
    assert r.code == 2 and "--group-by: invalid grouping field 'colour'" in r.err
