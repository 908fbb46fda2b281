"""Self-update of the single-file agent, between runs, with a way back.

The server's poll answer may carry an offer (``AgentUpdateOffer``: the version the tenant wants,
its size, SHA-256 and Ed25519 signature). When no run is in progress the agent:

1. downloads the file next to its own executable (``.e3backup-<version>.new``, same file system);
2. checks its size and SHA-256, and the signature with the key it was enrolled with
   (``update_public_key``) over ``release_message(version, platform, sha256)``;
3. starts it once (``agent run --check-start``: config loaded, the agent built, version printed)
   and requires it to report the offered version: a file that crashes at start is dropped and
   the running version stays (``AGENT_UPDATE_ROLLED_BACK``);
4. waits until no run is in progress (a run is never interrupted), records a *trial* in
   ``<state>/update.json`` and executes the new file in place of this process (same PID, same
   arguments). The installed executable is not touched yet.
5. The new process commits when its first poll is answered by the server: the installed
   executable is kept as ``<exe>.previous`` and the new file renamed over it (atomic), and it says
   ``AGENT_UPDATED``. If it does not report within ``trial_seconds`` it rolls back: it executes
   the installed (previous) version again, which says ``AGENT_UPDATE_ROLLED_BACK``. If it dies
   first (a crash at start), the installed executable is still the previous version: the service
   manager starts that one (systemd ``Restart=on-failure``), and it finds the unfinished trial and
   says ``AGENT_UPDATE_ROLLED_BACK``.

Anything refused (no key configured, download failed, wrong size, digest or signature) is an
``AGENT_UPDATE_REFUSED`` event; a version refused or rolled back is not tried again until the
server offers another. Events go to the server with the next poll (``update_event``) and are
kept in ``<state>/update.json`` until then.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..api.agent import AgentUpdateOffer, UpdateEvent, release_message
from ..buildinfo import platform_tag
from ..buildinfo import version as build_version

log = logging.getLogger(__name__)

UPDATED = "AGENT_UPDATED"
REFUSED = "AGENT_UPDATE_REFUSED"
ROLLED_BACK = "AGENT_UPDATE_ROLLED_BACK"
CHECK_TIMEOUT = 120.0
TRIAL_SECONDS = 180.0  # a switched-to version reports to the server within this, or is rolled back

Download = Callable[[str, Path], None]


class UpdateRefused(Exception):
    pass


def frozen_executable() -> Path | None:
    """This process's single-file executable; None when running from Python (nothing to swap)."""
    return Path(sys.executable).resolve() if getattr(sys, "frozen", False) else None


def verify_signature(public_key_b64: str, offer: AgentUpdateOffer, sha256_hex: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        signature = base64.b64decode(offer.signature, validate=True)
    except (ValueError, binascii.Error) as e:
        raise UpdateRefused(f"unreadable key or signature: {e}") from None
    try:
        key.verify(signature, release_message(offer.version, offer.build_platform, sha256_hex))
    except InvalidSignature:
        raise UpdateRefused("the signature does not verify with this agent's update key") from None


class SelfUpdater:
    def __init__(self, state_dir: Path, public_key: str | None, config_path: Path | None, download: Download,
                 executable: Path | None = None, exec_new: Callable[[Path], None] | None = None,
                 version: str | None = None, trial_seconds: float = TRIAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state_file = state_dir / "update.json"
        self.public_key = public_key
        self.config_path = config_path
        self.download = download
        self.executable = executable if executable is not None else frozen_executable()
        self.exec_new = exec_new or _exec_in_place
        self.version = version or build_version()
        self.platform = platform_tag()
        self.trial_seconds = trial_seconds
        self.clock = clock
        self._trial: dict[str, Any] | None = None  # this process is a trial not yet committed
        self._trial_deadline = 0.0

    @property
    def enabled(self) -> bool:
        return self.executable is not None and bool(self.public_key)

    # -- what the server hears ----------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.state_file.read_text())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, doc: dict[str, Any]) -> None:
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.state_file)

    def _event(self, code: str, version: str, message: str, **keep: Any) -> None:
        (log.info if code == UPDATED else log.warning)("self-update %s: %s %s", code, version, message)
        doc = self._load()
        doc.update(keep)
        doc["event"] = UpdateEvent(code=code, version=version, message=message[:2000],
                                   at=datetime.now(UTC)).model_dump(mode="json")
        self._save(doc)

    def pending_event(self) -> UpdateEvent | None:
        ev = self._load().get("event")
        return UpdateEvent.model_validate(ev) if isinstance(ev, dict) else None

    def event_sent(self, event: UpdateEvent) -> None:
        doc = self._load()
        if doc.get("event") == event.model_dump(mode="json"):
            doc.pop("event")
            self._save(doc)

    def after_start(self) -> None:
        """In the new process: an update that led here is done, on trial, or failed."""
        self._after_start()
        if self.executable is not None and self._trial is None:
            running = Path(sys.executable).resolve()
            for stale in self.executable.parent.glob(f".{self.executable.name}-*.new"):
                if stale.resolve() != running:  # left by a switch, a rollback or a stop mid-update
                    stale.unlink(missing_ok=True)

    def _after_start(self) -> None:
        doc = self._load()
        swapped = doc.pop("swapped", None)  # written by versions that renamed before executing
        trial = doc.pop("trial", None)
        if isinstance(swapped, dict):
            self._save(doc)
            if swapped.get("to") == self.version:
                self._event(UPDATED, self.version, f"updated from {swapped.get('from')}")
            else:
                self._event(ROLLED_BACK, str(swapped.get("to")), f"still {self.version} after the swap")
            return
        if not isinstance(trial, dict):
            return
        here = self.executable.resolve() if self.executable is not None else None
        if trial.get("to") == self.version and here is not None and str(here) == trial.get("file"):
            self._trial = trial  # committed by the first answered poll (``reported``)
            self._trial_deadline = self.clock() + self.trial_seconds
            self.executable = Path(str(trial.get("exe")))
            log.info("self-update: %s on trial (reports within %.0f s or goes back to %s)", self.version,
                     self.trial_seconds, trial.get("from"))
            return
        self._save(doc)
        Path(str(trial.get("file"))).unlink(missing_ok=True)
        self._give_up(ROLLED_BACK, str(trial.get("to")),
                      f"{trial.get('to')} stopped before it reported to the server (it crashed or was stopped "
                      f"at start); back on {self.version}")

    def _end_trial(self) -> None:
        doc = self._load()
        doc.pop("trial", None)
        self._save(doc)

    def trial_left(self) -> float | None:
        """Seconds this trial has left to report; None when this process is no trial."""
        return None if self._trial is None else max(0.0, self._trial_deadline - self.clock())

    def trial_expired(self) -> bool:
        return self._trial is not None and self.clock() >= self._trial_deadline

    def reported(self) -> None:
        """The server answered a poll: a trial is healthy, so it becomes the installed version."""
        trial = self._trial
        if trial is None or self.executable is None:
            return
        self._trial = None
        self._end_trial()
        waited = self.trial_seconds - max(0.0, self._trial_deadline - self.clock())
        previous = self.executable.with_name(self.executable.name + ".previous")
        previous.unlink(missing_ok=True)
        os.link(self.executable, previous)
        # a second name for the new file goes over the installed one: this process keeps reading
        # modules from the file it was started as (PyInstaller opens its archive by path on each
        # import and exits if it is gone), so that name stays until the next start removes it
        staged = self.executable.with_name(f".{self.executable.name}.installing")
        staged.unlink(missing_ok=True)
        os.link(str(trial["file"]), staged)
        os.replace(staged, self.executable)
        self._event(UPDATED, self.version, f"updated from {trial.get('from')} (reported {waited:.0f} s after the "
                                           f"switch; the previous version is kept as {previous.name})")

    def roll_back(self, restart: bool = True) -> None:
        """The trial did not report in time: drop it and, unless stopping, execute the installed
        (previous) version again."""
        trial = self._trial
        assert trial is not None and self.executable is not None
        self._trial = None
        self._end_trial()  # the file this process runs from stays until the next start (``after_start``)
        self._give_up(ROLLED_BACK, self.version, f"{self.version} did not report to the server within "
                                                 f"{self.trial_seconds:.0f} s after the switch; back on "
                                                 f"{trial.get('from')}")
        if restart:
            self.exec_new(self.executable)

    # -- the update -----------------------------------------------------------------------------

    def wants(self, offer: AgentUpdateOffer | None) -> bool:
        if offer is None or offer.version == self.version or self.executable is None:
            return False
        return offer.version not in self._load().get("given_up", [])

    def _give_up(self, code: str, version: str, message: str) -> None:
        given_up = [*[v for v in self._load().get("given_up", []) if v != version][-19:], version]
        self._event(code, version, message, given_up=given_up)

    def prepare(self, offer: AgentUpdateOffer) -> Path | None:
        """Download, check and try the offered version; the checked file, or None (event said)."""
        assert self.executable is not None
        if not self.public_key:
            self._give_up(REFUSED, offer.version, "no update key configured (agent enroll --update-key)")
            return None
        if offer.build_platform != self.platform:
            self._give_up(REFUSED, offer.version, f"built for {offer.build_platform}, this agent is {self.platform}")
            return None
        new = self.executable.with_name(f".{self.executable.name}-{offer.version}.new")
        try:
            self._fetch_and_check(offer, new)
        except UpdateRefused as e:
            new.unlink(missing_ok=True)
            self._give_up(REFUSED, offer.version, str(e))
            return None
        problem = self._try_start(new, offer.version)
        if problem:
            new.unlink(missing_ok=True)
            self._give_up(ROLLED_BACK, offer.version, f"the new version failed to start ({problem}); "
                                              f"staying on {self.version}")
            return None
        return new

    def _fetch_and_check(self, offer: AgentUpdateOffer, new: Path) -> None:
        try:
            self.download(offer.url, new)
        except Exception as e:
            raise UpdateRefused(f"download failed: {e}") from None
        size = new.stat().st_size
        if size != offer.size:
            raise UpdateRefused(f"downloaded {size} bytes, the server announced {offer.size}")
        digest = hashlib.sha256()
        with open(new, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != offer.sha256:
            raise UpdateRefused(f"SHA-256 mismatch: got {digest.hexdigest()}, expected {offer.sha256}")
        assert self.public_key is not None
        verify_signature(self.public_key, offer, offer.sha256)
        new.chmod(0o755)

    def _try_start(self, new: Path, version: str) -> str:
        cmd = [str(new), "agent", "run", "--check-start"]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False,
                               env=clean_env())
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{type(e).__name__}: {e}"
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
            return f"exit status {p.returncode}: {tail[0][:300]}"
        try:
            got = json.loads(p.stdout.strip().splitlines()[-1]).get("version")
        except (ValueError, IndexError, AttributeError):
            return "it did not report its version"
        return "" if got == version else f"it reports version {got}, not {version}"

    def swap(self, new: Path, offer: AgentUpdateOffer) -> None:
        """Record the trial and execute the new file; the installed executable stays until the
        new process reports to the server (``reported``)."""
        assert self.executable is not None
        doc = self._load()
        doc["trial"] = {"from": self.version, "to": offer.version, "exe": str(self.executable),
                        "file": str(new.resolve())}
        self._save(doc)
        log.info("self-update: switching from %s to %s (on trial)", self.version, offer.version)
        self.exec_new(new)


def clean_env() -> dict[str, str]:
    """The environment without what PyInstaller's bootloader set for this process (its unpack
    directory, its library path): another single-file executable must start afresh."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "_MEIPASS"))}
    if "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif getattr(sys, "frozen", False):
        env.pop("LD_LIBRARY_PATH", None)
    return env


def _exec_in_place(executable: Path) -> None:
    """The same process (PID, systemd unit) runs the new executable with the same arguments."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, [str(executable), *sys.argv[1:]], clean_env())


__all__ = ["REFUSED", "ROLLED_BACK", "UPDATED", "SelfUpdater", "UpdateRefused", "clean_env", "frozen_executable",
           "verify_signature"]
