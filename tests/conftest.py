"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3backup.repo import KDFParams, Repository
from e3backup.store import LocalStore

from .helpers import PASSWORD

# The repository cache of S3 runs goes to a throwaway directory, never to the user's home.
os.environ.setdefault("E3BACKUP_CACHE_DIR", tempfile.mkdtemp(prefix="e3backup-test-cache-"))

pytest_plugins = [
    "tests.plugins.seaweedfs",
    "tests.plugins.faultproxy",
    "tests.plugins.chromium",
    "tests.plugins.bootdisk",
]

# A cheap KDF for repositories made in tests; real repositories use N=32768.
FAST_KDF = KDFParams(n=1024, r=8, p=1)


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("E3BACKUP_PASSWORD", PASSWORD)
    monkeypatch.delenv("E3BACKUP_PASSWORD_FILE", raising=False)
    return PASSWORD


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_path: Path) -> Iterator[Repository]:
    r = Repository.init(LocalStore(repo_path), PASSWORD.encode(), FAST_KDF)
    yield r
    r.close()


PACKAGING_TIMEOUT = 1800  # seconds; the suite's default is 600 (pyproject.toml)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The packaging tests (builds of minutes) first, so that spread over the suite's processes
    (scripts/test.sh) they run beside the rest instead of ending the run alone."""
    items.sort(key=lambda item: 0 if "/tests/packaging/" in str(item.path) else 1)
    for item in items:  # the first of them builds the executable (minutes; more on a loaded machine)
        if "/tests/packaging/" in str(item.path) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PACKAGING_TIMEOUT))
