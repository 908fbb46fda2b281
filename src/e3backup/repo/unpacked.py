"""Unpacked files (index, snapshot, lock): sealed JSON named by the hash of the sealed bytes.

In v2 the plaintext is ``0x02 || zstd(json)``; plain JSON starting with ``{`` or ``[`` is also
accepted (spec 4.1). The config is sealed but never compressed and is handled by ``config``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import IntegrityError
from .compression import compress, decompress
from .crypto import Key, MacError


def encode(key: Key, doc: Any, version: int = 2) -> tuple[str, bytes]:
    """Seal a JSON document; returns ``(id, sealed bytes)``."""
    plain = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if version >= 2:
        plain = b"\x02" + compress(plain)
    sealed = key.seal(plain)
    return hashlib.sha256(sealed).hexdigest(), sealed


def decode(key: Key, sealed: bytes, name: str, what: str, version: int = 2) -> Any:
    """Verify the name, open and parse one unpacked file."""
    if name and hashlib.sha256(sealed).hexdigest() != name:
        raise IntegrityError(f"{what} {name}: invalid data returned (hash does not match its name)")
    try:
        plain = key.open(sealed)
    except MacError as e:
        raise IntegrityError(f"{what} {name}: ciphertext verification failed") from e
    if version >= 2 and plain and plain[0] not in (0x7B, 0x5B):
        if plain[0] != 2:
            raise IntegrityError(f"{what} {name}: not supported encoding format {plain[0]}")
        plain = decompress(plain[1:])
    try:
        return json.loads(plain)
    except ValueError as e:
        raise IntegrityError(f"{what} {name}: invalid JSON: {e}") from e


__all__ = ["decode", "encode"]
