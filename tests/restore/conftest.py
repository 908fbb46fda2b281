"""Fixtures for the image restore tests: the disk image engine's helpers and real disks."""

from __future__ import annotations

from tests.engines.disk_image.conftest import image  # noqa: F401  (fixture)
from tests.sources.conftest import gpt_disk  # noqa: F401  (fixture)
