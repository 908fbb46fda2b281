"""``e3backup release``: the MSP's signing key for agent self-update, and signing a release.

    e3backup release keygen --out KEY            (private key, mode 0600; prints the public key)
    e3backup release sign --key KEY --version V --platform P FILE   (writes FILE.sig)

Agents are enrolled with the public key (``agent enroll --update-key``) and run only files whose
signature it verifies. Keep the private key off the server.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import click

from ..errors import UsageError


@click.group()
def release() -> None:
    """Sign single-file agents for self-update."""


@release.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The private key file.")
def keygen(out: Path) -> None:
    """Make an Ed25519 signing key; prints the public key for `agent enroll --update-key`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if out.exists():
        raise UsageError(f"{out} exists; not overwriting a signing key")
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(raw).decode() + "\n")
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    click.echo(f"public key: {base64.b64encode(pub).decode()}")


@release.command()
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--version", "release_version", required=True)
@click.option("--platform", "build_platform", required=True, help="e.g. linux-x86_64")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def sign(key_file: Path, release_version: str, build_platform: str, file: Path) -> None:
    """Sign FILE as VERSION for PLATFORM; writes FILE.sig (base64)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..api.agent import release_message

    try:
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(key_file.read_text().strip(), validate=True))
    except ValueError as e:
        raise UsageError(f"{key_file}: not an Ed25519 private key from `e3backup release keygen`") from e
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sig = key.sign(release_message(release_version, build_platform, digest.hexdigest()))
    out = file.with_name(file.name + ".sig")
    out.write_text(base64.b64encode(sig).decode() + "\n")
    click.echo(f"signed {file} ({release_version}, {build_platform}): {out}")


__all__ = ["release"]
