"""``e3backup version`` and ``--version``: what this build is, from the process a user runs."""

from __future__ import annotations

import json
import subprocess
import sys

from e3backup import __version__
from e3backup.buildinfo import is_older, version_key


def _e3(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_version_command_names_version_build_platform_format_and_extension() -> None:
    doc = json.loads(_e3("version", "--json"))
    assert doc["version"] == __version__
    assert doc["install"] == "source" and doc["build"] == "dev"  # a checkout: no build stamp
    assert doc["platform"].startswith(sys.platform + "-")
    assert doc["repository_format"].startswith("restic v2")
    try:
        from e3backup import _sha256mb  # noqa: F401

        assert doc["sha256_extension"].startswith("present")
    except ImportError:
        assert doc["sha256_extension"].startswith("absent")
    text = _e3("version")
    assert f"version:           {__version__}" in text and "repository format: restic v2" in text
    assert _e3("--version").strip() == f"e3backup {__version__} ({doc['platform']})"


def test_versions_order_by_release_numbers_then_build() -> None:
    assert version_key("0.9.1") < version_key("0.10.0") < version_key("0.10.0+3.gabc")
    assert is_older("0.1.0", "0.2.0") and not is_older("0.2.0", "0.1.0")
    assert not is_older("", "0.2.0") and not is_older("0.2.0", "0.2.0")
