"""One headless Debian Chromium for the whole test session, driven by Playwright.

A plugin (registered in ``tests/conftest.py``) rather than a fixture imported into each
directory's conftest: an imported fixture is a second session fixture, and a second
``sync_playwright()`` while the first is open fails every later browser test with
"Playwright Sync API inside the asyncio loop". Playwright never downloads a browser here: it
starts ``/usr/bin/chromium``. The network is closed, so Chromium's background services are
switched off (they would fail noisily).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
