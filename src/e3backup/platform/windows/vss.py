"""Crash-consistent shadow copies through WMI: ``Win32_ShadowCopy.Create(Volume, "ClientAccessible")``.

A ClientAccessible copy (VSS_CTX_CLIENT_ACCESSIBLE: persistent, no writers, no auto-release)
survives the process that made it, so each one is written to a journal file the moment WMI returns
its ID and removed from it once deleted; ``sweep()`` (at agent start) deletes whatever a killed
run left. Only IDs from the journal are ever deleted: shadow copies of other tools are not ours.
The copy is read through its ``DeviceObject`` (``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN``).

Return codes of Create, as Microsoft's "Create method of the Win32_ShadowCopy class" lists them,
become ``ShadowCopyError`` with the code, its name and what to do. App-consistent copies need the
VSS writers through ``IVssBackupComponents`` (a COM interface WMI does not expose):
``vssapi.py``/``vsscom.py`` and ``sources.snapshot.appvss`` (docs/windows.md).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...errors import E3Error
from .cim import PowerShell, cim_date, quote, run_json

CONTEXT = "ClientAccessible"
_GUID = re.compile(r"^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$")
_DRIVE = re.compile(r"^([A-Za-z]):\\?$")
_VOLUME_GUID = re.compile(r"^\\\\\?\\Volume\{[0-9A-Fa-f-]{36}\}\\?$")

CREATE_RESULTS: dict[int, tuple[str, str]] = {
    0: ("Success", "the shadow copy was created"),
    1: ("Access denied", "run the agent as an administrator or as SYSTEM (the service does)"),
    2: ("Invalid argument", "the volume name was not accepted"),
    3: ("Specified volume not found", "check the job's volume"),
    4: ("Specified volume not supported", "this volume cannot be shadow-copied (FAT, a network or removable drive?)"),
    5: ("Unsupported shadow copy context", "this Windows edition does not offer ClientAccessible copies"),
    6: ("Insufficient storage",
        "the shadow storage area is full: free space or enlarge it (vssadmin resize shadowstorage)"),
    7: ("Volume is in use", "another process holds the volume; retry later"),
    8: ("Maximum number of shadow copies reached", "delete old shadow copies (vssadmin list shadows)"),
    9: ("Another shadow copy operation is already in progress", "another backup is taking a snapshot; retry later"),
    10: ("Shadow copy provider vetoed the operation", "see the Application event log (VSS source) for why"),
    11: ("Shadow copy provider not registered", "the VSS provider is missing: repair the Volume Shadow Copy service"),
    12: ("Shadow copy provider failure",
         "see the Application event log (VSS source); the VSS service may need a restart"),
    13: ("Unknown error", "see the Application event log (VSS source)"),
}


class ShadowCopyError(E3Error):
    """Creating, finding or deleting a shadow copy failed; ``code`` is Create's return value
    (``None`` when PowerShell itself failed)."""

    def __init__(self, message: str, code: int | None = None, volume: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.volume = volume

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str]]:
        return (type(self), (str(self), self.code, self.volume))


@dataclass(frozen=True)
class ShadowCopy:
    id: str
    device_object: str
    volume_name: str
    install_date: datetime | None = None


def volume_root(volume: str) -> str:
    """The form Create wants: ``C:\\`` or ``\\\\?\\Volume{GUID}\\`` (a trailing backslash)."""
    m = _DRIVE.match(volume)
    if m:
        return f"{m.group(1).upper()}:\\"
    if _VOLUME_GUID.match(volume):
        return volume if volume.endswith("\\") else volume + "\\"
    raise ShadowCopyError(f"{volume!r} is not a volume a shadow copy can be made of (C: or \\\\?\\Volume{{GUID}}\\)")


def is_volume_name(text: str) -> bool:
    """``C:``, ``C:\\`` or ``\\?\\Volume{GUID}\\``: a volume VSS can shadow."""
    return bool(_DRIVE.match(text) or _VOLUME_GUID.match(text))


def is_windows_source(text: str) -> bool:
    """A Windows volume or device path (never made absolute, never opened with ``os.open``)."""
    return is_volume_name(text) or text.startswith(("\\\\.\\", "\\\\?\\"))


def _check_id(shadow_id: str) -> str:
    if not _GUID.match(shadow_id):
        raise ShadowCopyError(f"{shadow_id!r} is not a shadow copy ID")
    return shadow_id


class Journal:
    """The IDs of shadow copies this agent made and has not deleted yet (a small JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise ShadowCopyError(f"shadow copy journal {self.path} is unreadable: {e}") from e
        return [i for i in doc.get("shadow_copies", []) if isinstance(i, str)]

    def _write(self, ids: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"shadow_copies": ids}))
        os.replace(tmp, self.path)

    def add(self, shadow_id: str) -> None:
        with self._lock:
            ids = self.ids()
            if shadow_id not in ids:
                self._write([*ids, shadow_id])

    def remove(self, shadow_id: str) -> None:
        with self._lock:
            self._write([i for i in self.ids() if i != shadow_id])


def default_journal() -> Journal:
    """``%ProgramData%\\E3Backup\\shadow-copies.json``, beside the service's config and state."""
    return Journal(Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "E3Backup" / "shadow-copies.json")


class ShadowCopies:
    """Create, find, delete and sweep ClientAccessible shadow copies."""

    def __init__(self, shell: PowerShell, journal: Journal) -> None:
        self.shell = shell
        self.journal = journal

    def create(self, volume: str) -> ShadowCopy:
        root = volume_root(volume)
        script = (
            "Invoke-CimMethod -ClassName Win32_ShadowCopy -MethodName Create -Arguments "
            f"@{{Volume={quote(root)}; Context={quote(CONTEXT)}}} | Select-Object ReturnValue, ShadowID | "
            "ConvertTo-Json -Compress"
        )
        rows = self._json(script, f"creating a shadow copy of {root}", root)
        code = rows[0].get("ReturnValue") if len(rows) == 1 else None
        if not isinstance(code, int):
            raise ShadowCopyError(f"creating a shadow copy of {root}: unexpected answer {rows!r}", volume=root)
        if code != 0:
            name, hint = CREATE_RESULTS.get(code, (f"return code {code}", "see the Application event log"))
            raise ShadowCopyError(f"shadow copy of {root} failed: {name} ({code}); {hint}", code, root)
        shadow_id = _check_id(str(rows[0].get("ShadowID") or ""))
        self.journal.add(shadow_id)  # before anything else can fail: the sweep must know it
        found = self.find(shadow_id)
        if found is None:
            raise ShadowCopyError(f"shadow copy {shadow_id} of {root} was created but is not listed", volume=root)
        return found

    def find(self, shadow_id: str) -> ShadowCopy | None:
        script = (
            f"Get-CimInstance -ClassName Win32_ShadowCopy -Filter {quote(f'ID={quote(_check_id(shadow_id))}')} | "
            "Select-Object ID, DeviceObject, VolumeName, InstallDate | ConvertTo-Json -Compress"
        )
        rows = self._json(script, f"looking up shadow copy {shadow_id}")
        return _shadow(rows[0]) if rows else None

    def all(self) -> list[ShadowCopy]:
        script = (
            "Get-CimInstance -ClassName Win32_ShadowCopy | "
            "Select-Object ID, DeviceObject, VolumeName, InstallDate | ConvertTo-Json -Compress"
        )
        return [_shadow(r) for r in self._json(script, "listing shadow copies")]

    def delete(self, shadow_id: str) -> None:
        script = (
            f"Get-CimInstance -ClassName Win32_ShadowCopy -Filter {quote(f'ID={quote(_check_id(shadow_id))}')} | "
            "Remove-CimInstance"
        )
        r = self.shell.run(script)
        if r.returncode != 0:
            first = (r.stderr.strip() or f"exit code {r.returncode}").splitlines()[0]
            raise ShadowCopyError(f"deleting shadow copy {shadow_id} failed: {first}")
        self.journal.remove(shadow_id)

    def sweep(self) -> list[str]:
        """Delete the copies the journal lists (a killed run's); the IDs deleted."""
        pending = self.journal.ids()
        if not pending:
            return []
        present = {s.id.upper() for s in self.all()}
        swept = []
        for shadow_id in pending:
            if shadow_id.upper() in present:
                self.delete(shadow_id)
                swept.append(shadow_id)
            else:
                self.journal.remove(shadow_id)  # already gone (deleted by hand, or by a reboot)
        return swept

    def _json(self, script: str, what: str, volume: str = "") -> list[dict[str, object]]:
        from .cim import CimError

        try:
            return run_json(self.shell, script, what)
        except CimError as e:
            raise ShadowCopyError(str(e), volume=volume) from e


def _shadow(row: dict[str, object]) -> ShadowCopy:
    return ShadowCopy(
        id=str(row.get("ID") or ""),
        device_object=str(row.get("DeviceObject") or ""),
        volume_name=str(row.get("VolumeName") or ""),
        install_date=cim_date(row.get("InstallDate")),
    )


__all__ = [
    "CONTEXT", "CREATE_RESULTS", "Journal", "ShadowCopies", "ShadowCopy", "ShadowCopyError", "default_journal",
    "is_volume_name", "is_windows_source", "volume_root",
]
