"""Fixtures of the proof tests: a data disk built once per module, repositories per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from .disks import build_data_disk


@pytest.fixture(scope="module")
def data_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_data_disk(tmp_path_factory.mktemp("datadisk"))
