"""Destination secrets encrypted at rest with AES-256-GCM.

The key is derived from the server secret with HKDF-SHA256 (own ``info`` label), so the same
secret never keys two purposes. Stored form: ``v1:`` + base64(nonce || ciphertext+tag). The
associated data binds a ciphertext to its owner (e.g. ``job:<tenant_id>``) so it cannot be
moved to another tenant's row.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1:"


class SecretBoxError(Exception):
    pass


class SecretBox:
    def __init__(self, server_secret: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"e3backup secrets at rest v1"
        ).derive(server_secret)
        self._aead = AESGCM(key)

    def seal(self, value: dict[str, Any], aad: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, json.dumps(value).encode(), aad.encode())
        return _VERSION + base64.b64encode(nonce + ct).decode()

    def open(self, sealed: str, aad: str) -> dict[str, Any]:
        if not sealed.startswith(_VERSION):
            raise SecretBoxError("unknown secret format")
        raw = base64.b64decode(sealed[len(_VERSION) :])
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], aad.encode())
        except InvalidTag as e:
            raise SecretBoxError("secret does not decrypt (wrong server key or moved row)") from e
        result: dict[str, Any] = json.loads(plain)
        return result


__all__ = ["SecretBox", "SecretBoxError"]
