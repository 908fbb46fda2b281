"""Writes ``e3backup/_build.py``, the build stamp ``e3backup version`` shows (``buildinfo``).

Used by ``setup.py`` (wheel) and ``scripts/build_agent.sh`` (single-file agent). The version is
the package's unless ``E3BACKUP_BUILD_VERSION`` gives one (release builds, the self-update tests).

    python packaging/stamp_build.py DEST_DIR/e3backup/_build.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def commit_of(root: Path) -> str:
    """The source's commit: git where this is a checkout, else what the sdist recorded."""
    recorded = root / "packaging" / "COMMIT"
    return (os.environ.get("E3BACKUP_BUILD_COMMIT") or _commit(root)
            or (recorded.read_text().strip() if recorded.exists() else ""))


def stamp(dest: Path, root: Path) -> dict[str, str]:
    now = datetime.now(UTC)
    commit = commit_of(root)
    doc = {
        "version": os.environ.get("E3BACKUP_BUILD_VERSION", ""),
        "build": os.environ.get("E3BACKUP_BUILD_ID") or now.strftime("%Y%m%d.%H%M%S") + (f".{commit}" * bool(commit)),
        "commit": commit,
        "built_at": now.isoformat(timespec="seconds"),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text('"""Written by packaging/stamp_build.py at build time."""\n\nBUILD = ' + repr(doc) + "\n")
    return doc


if __name__ == "__main__":
    stamp(Path(sys.argv[1]), Path(__file__).resolve().parent.parent)
