"""WMI/CIM through Windows PowerShell 5.1, read as ``ConvertTo-Json`` prints it.

Every query projects first (``Select-Object``) and prints with ``ConvertTo-Json -Compress``; the
parser accepts what 5.1 prints: nothing for no objects, a bare object for one (5.1 has no
``-AsArray``), an array for several, enums as integers and dates as ``"\\/Date(ms)\\/"``.
``PowerShell`` is the seam: ``PowerShellRunner`` runs ``powershell.exe`` (Windows only), tests
replay recorded output.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ...errors import E3Error

POWERSHELL = ["powershell.exe", "-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command"]
_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class CimError(E3Error):
    """PowerShell failed, or printed something that is not the JSON asked for."""


@dataclass(frozen=True)
class ShellResult:
    returncode: int
    stdout: str
    stderr: str


class PowerShell(Protocol):
    def run(self, script: str) -> ShellResult: ...


class PowerShellRunner:
    """``powershell.exe -Command script``; errors stop the script (``$ErrorActionPreference``)."""

    def __init__(self, timeout: float = 300.0) -> None:
        self.timeout = timeout

    def run(self, script: str) -> ShellResult:
        full = "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; " + script
        p = subprocess.run([*POWERSHELL, full], capture_output=True, text=True, timeout=self.timeout, check=False)
        return ShellResult(p.returncode, p.stdout, p.stderr)


def quote(text: str) -> str:
    """A PowerShell single-quoted string literal (no expansion; ' doubled)."""
    return "'" + text.replace("'", "''") + "'"


def run_json(shell: PowerShell, script: str, what: str) -> list[dict[str, Any]]:
    """Run ``script`` (which ends in ``ConvertTo-Json``) and return its objects as a list."""
    r = shell.run(script)
    if r.returncode != 0:
        first = (r.stderr.strip() or r.stdout.strip() or f"exit code {r.returncode}").splitlines()[0]
        raise CimError(f"{what} failed: {first}")
    return parse_objects(r.stdout, what)


def parse_objects(text: str, what: str = "PowerShell") -> list[dict[str, Any]]:
    text = text.strip().lstrip("\ufeff")
    if not text:
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CimError(f"{what}: not JSON ({e.msg} at {e.pos})") from None
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        raise CimError(f"{what}: expected objects, got {type(doc).__name__}")
    return items


def cim_date(value: object) -> datetime | None:
    """``"\\/Date(1701600000000)\\/"`` (5.1's DateTime) as an aware UTC datetime."""
    if not isinstance(value, str):
        return None
    m = _DATE.match(value)
    if not m:
        return None
    return datetime.fromtimestamp(int(m.group(1)) / 1000, tz=UTC)


__all__ = [
    "CimError", "PowerShell", "PowerShellRunner", "ShellResult", "cim_date", "parse_objects", "quote", "run_json",
]
