"""The release commands an MSP runs: a signing key, a signed file, the server storing it and a
tenant offered its version (what the agent then verifies: tests/agent/test_self_update.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from e3backup.api.agent import release_message


def _e3(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], capture_output=True, text=True, timeout=120)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr
    return p


def test_keygen_sign_store_and_offer(tmp_path: Path) -> None:
    key = tmp_path / "release.key"
    pub = _e3("release", "keygen", "--out", str(key)).stdout.split("public key: ")[1].strip()
    assert key.stat().st_mode & 0o777 == 0o600
    assert "exists" in _e3("release", "keygen", "--out", str(key), ok=False).stderr
    exe = tmp_path / "e3backup"
    exe.write_bytes(os.urandom(4096))
    _e3("release", "sign", "--key", str(key), "--version", "0.2.0", "--platform", "linux-x86_64", str(exe))
    sig = base64.b64decode((tmp_path / "e3backup.sig").read_text())
    sha = hashlib.sha256(exe.read_bytes()).hexdigest()
    Ed25519PublicKey.from_public_bytes(base64.b64decode(pub)).verify(
        sig, release_message("0.2.0", "linux-x86_64", sha))

    data = tmp_path / "server"
    _e3("server", "--data-dir", str(data), "create-tenant", "--name", "Acme")
    out = _e3("server", "--data-dir", str(data), "add-agent-release", "--version", "0.2.0", "--platform",
              "linux-x86_64", "--file", str(exe), "--signature", str(tmp_path / "e3backup.sig")).stdout
    assert f"sha256 {sha}" in out
    assert (data / "agent-releases" / sha).read_bytes() == exe.read_bytes()
    again = _e3("server", "--data-dir", str(data), "add-agent-release", "--version", "0.2.0", "--platform",
                "linux-x86_64", "--file", str(exe), "--signature", str(tmp_path / "e3backup.sig"), ok=False)
    assert "exists already" in again.stderr
    _e3("server", "--data-dir", str(data), "set-agent-version", "--tenant", "Acme", "--version", "0.2.0")
    with sqlite3.connect(data / "e3backup.db") as db:
        assert db.execute("SELECT agent_version_wanted FROM tenants").fetchall() == [("0.2.0",)]
    assert "no tenant named" in _e3("server", "--data-dir", str(data), "set-agent-version", "--tenant", "Nope",
                                    "--version", "1", ok=False).stderr
    assert "database at revision" in _e3("server", "--data-dir", str(data), "migrate").stdout
