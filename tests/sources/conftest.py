"""Fixtures with real disk images; builders live in ``diskimages.py`` for the engine tests too."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .diskimages import GptDisk, build_gpt_disk, loop_device

TOOLS = ("sgdisk", "mkfs.ext4", "mkntfs", "ntfscp", "losetup", "mount")


def _need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mount)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing}")


@pytest.fixture(scope="session")
def gpt_disk(tmp_path_factory: pytest.TempPathFactory) -> GptDisk:
    """A 256 MiB GPT image: ext4 (files + deleted data), NTFS (files + deleted data), unknown."""
    _need_root_tools()
    return build_gpt_disk(tmp_path_factory.mktemp("gptdisk"))


@pytest.fixture()
def gpt_disk_loop(gpt_disk: GptDisk) -> Iterator[str]:
    """The same disk attached read-only to a loop device, detached afterwards."""
    with loop_device(gpt_disk.path, ro=True) as dev:
        yield dev


@pytest.fixture()
def scratch(tmp_path: Path) -> Path:
    return tmp_path
