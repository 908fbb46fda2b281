"""The repository ``config`` file: version, ID and chunker polynomial (spec section 3).

Sealed with the master key, never compressed and without a version byte, even in v2.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ..errors import IntegrityError, UnsupportedVersionError
from .crypto import Key
from .polynomial import irreducible, random_polynomial

_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True)
class Config:
    version: int
    id: str
    chunker_polynomial: int

    @classmethod
    def new(cls, version: int = 2) -> Config:
        return cls(version, os.urandom(32).hex(), random_polynomial())

    def to_bytes(self) -> bytes:
        doc = {"version": self.version, "id": self.id, "chunker_polynomial": f"{self.chunker_polynomial:x}"}
        return json.dumps(doc, separators=(",", ":")).encode()

    def seal(self, key: Key) -> bytes:
        return key.seal(self.to_bytes())

    @classmethod
    def parse(cls, plaintext: bytes) -> Config:
        try:
            doc = json.loads(plaintext)
            version = doc["version"]
            pol_s = doc["chunker_polynomial"]
            rid = str(doc["id"])
        except (ValueError, KeyError, TypeError) as e:
            raise IntegrityError(f"config: invalid JSON: {e}") from e
        if not isinstance(version, int) or version not in (1, 2):
            raise UnsupportedVersionError(
                f"unsupported repository version {version!r} (this e3backup reads versions 1 and 2)"
            )
        if not isinstance(pol_s, str) or not _HEX.match(pol_s):
            raise IntegrityError(f"config: invalid chunker polynomial {pol_s!r}")
        pol = int(pol_s, 16)
        if not irreducible(pol):
            raise IntegrityError(f"config: invalid chunker polynomial {pol_s} (reducible)")
        return cls(version, rid, pol)


__all__ = ["Config"]
