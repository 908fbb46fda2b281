"""What this e3backup is: version, build, platform, repository format, optional extension.

``e3backup version`` prints it, the agent sends the version to the server with every poll. The
build is stamped by the packaging scripts into ``e3backup/_build.py`` (``setup.py``'s build step
for the wheel, ``scripts/build_agent.sh`` for the single-file agent); a source checkout has none
and says ``dev``.
"""

from __future__ import annotations

import importlib
import platform as _platform
import sys
from typing import Any

from . import __version__

REPOSITORY_FORMAT = "restic v2 (reads v1 and v2)"


def _stamp() -> dict[str, Any]:
    try:
        mod = importlib.import_module("e3backup._build")
    except ImportError:
        return {}
    stamp = getattr(mod, "BUILD", {})
    return dict(stamp) if isinstance(stamp, dict) else {}


def version() -> str:
    """The version; a build may carry its own (``_build.VERSION``, e.g. ``0.1.0+7.g1a2b3c4``)."""
    return str(_stamp().get("version") or __version__)


def version_key(v: str) -> tuple[tuple[int, ...], str]:
    """Orders versions like ``0.9.1 < 0.10.0 < 0.10.0+3.gabc``: the numbers of the release, then
    the local part (a build of the same release). An unparsable version sorts first."""
    release, _, local = v.strip().partition("+")
    nums: list[int] = []
    for part in release.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        nums.append(int(digits))
    return (tuple(nums), local)


def is_older(version: str, than: str) -> bool:
    """``version`` is older than ``than`` (an empty version, never reported, is not)."""
    return bool(version) and bool(than) and version_key(version) < version_key(than)


def install_kind() -> str:
    """``executable`` (single file), ``wheel`` (installed package) or ``source`` (editable checkout)."""
    if getattr(sys, "frozen", False):
        return "executable"
    return "wheel" if _stamp() else "source"


def platform_tag() -> str:
    """``linux-x86_64``, ``win32-amd64``: what a release is built for (self-update picks by it)."""
    return f"{sys.platform}-{_platform.machine().lower() or 'unknown'}"


def extension_state() -> str:
    """The multi-buffer SHA-256 C extension: built and used, built but the CPU lacks AVX-512, or absent."""
    try:
        from . import _sha256mb
    except ImportError:
        return "absent (hashlib is used)"
    return "present, used (AVX-512)" if _sha256mb.available() else "present, unused (no AVX-512 on this CPU)"


def info() -> dict[str, Any]:
    stamp = _stamp()
    return {
        "version": version(),
        "build": str(stamp.get("build") or "dev"),
        "commit": str(stamp.get("commit") or ""),
        "built_at": str(stamp.get("built_at") or ""),
        "install": install_kind(),
        "platform": platform_tag(),
        "os": _platform.platform(),
        "python": _platform.python_version(),
        "repository_format": REPOSITORY_FORMAT,
        "sha256_extension": extension_state(),
    }


__all__ = [
    "REPOSITORY_FORMAT",
    "extension_state",
    "info",
    "install_kind",
    "is_older",
    "platform_tag",
    "version",
    "version_key",
]
