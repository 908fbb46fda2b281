"""Early write-back is a hint: available on Linux, harmless on any descriptor, data unchanged."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from e3backup.formats.writeback import start_writeback, writeback_supported


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_supported_on_linux() -> None:
    assert writeback_supported()


def test_ranges_keep_their_data_and_bad_descriptors_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(1 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, data, 4096)
        start_writeback(fd, 4096, len(data))
        start_writeback(fd, 0, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    start_writeback(fd, 0, 4096)  # closed: the hint fails quietly
    assert path.read_bytes() == bytes(4096) + data
