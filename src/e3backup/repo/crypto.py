"""The sealed box restic uses for every encrypted object (spec section 2.1).

    sealed = nonce(16) || AES-256-CTR(encrypt, nonce)(plaintext) || Poly1305-AES tag(16)

The tag is Poly1305 with ``r = mac.r`` (clamped) and ``s = AES-128(mac.k, nonce)``, computed over
the ciphertext only. Decryption verifies the tag before decrypting, so a wrong key or a flipped bit
is reported as an ``IntegrityError`` and never turns into wrong plaintext.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from ..errors import IntegrityError

NONCE_SIZE = 16
MAC_SIZE = 16
OVERHEAD = NONCE_SIZE + MAC_SIZE
_CLAMP = bytes.fromhex("ffffff0ffcffff0ffcffff0ffcffff0f")


def _clamp(r: bytes) -> bytes:
    return bytes(a & b for a, b in zip(r, _CLAMP, strict=True))


class MacError(IntegrityError):
    """The Poly1305 tag does not match: wrong key or corrupted data."""


@dataclass(frozen=True)
class Key:
    """A master or user key: AES-256 key plus the Poly1305-AES key pair."""

    encrypt: bytes
    mac_k: bytes
    mac_r: bytes
    _aes: algorithms.AES = field(init=False, repr=False, compare=False)
    _mac_aes: algorithms.AES = field(init=False, repr=False, compare=False)
    _local: threading.local = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.encrypt) != 32 or len(self.mac_k) != 16 or len(self.mac_r) != 16:
            raise IntegrityError("invalid key: wrong part lengths")
        if not any(self.encrypt) or not any(self.mac_k) or not any(self.mac_r):
            raise IntegrityError("invalid key: a key part is all zero")
        object.__setattr__(self, "mac_r", _clamp(self.mac_r))
        # building cipher objects costs more than sealing a small blob: build them once
        object.__setattr__(self, "_aes", algorithms.AES(self.encrypt))
        object.__setattr__(self, "_mac_aes", algorithms.AES(self.mac_k))
        object.__setattr__(self, "_local", threading.local())

    @classmethod
    def random(cls) -> Key:
        return cls(os.urandom(32), os.urandom(16), os.urandom(16))

    @classmethod
    def from_bytes(cls, b: bytes) -> Key:
        """A key from 64 bytes of KDF output: 32 encrypt, 16 mac.k, 16 mac.r."""
        return cls(b[0:32], b[32:48], b[48:64])

    def to_json(self) -> dict[str, object]:
        b64 = base64.b64encode
        return {
            "mac": {"k": b64(self.mac_k).decode(), "r": b64(self.mac_r).decode()},
            "encrypt": b64(self.encrypt).decode(),
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Key:
        try:
            mac = d["mac"]
            assert isinstance(mac, dict)
            return cls(
                base64.b64decode(str(d["encrypt"]), validate=True),
                base64.b64decode(str(mac["k"]), validate=True),
                base64.b64decode(str(mac["r"]), validate=True),
            )
        except (KeyError, AssertionError, ValueError) as e:
            raise IntegrityError(f"invalid master key JSON: {e}") from e

    def __repr__(self) -> str:  # never show key material
        return "Key(<secret>)"

    def _tag(self, nonce: bytes, ciphertext: bytes | memoryview) -> bytes:
        # one ECB context per thread, reused: it holds no state between blocks
        ecb = getattr(self._local, "ecb", None)
        if ecb is None:
            ecb = self._local.ecb = Cipher(self._mac_aes, modes.ECB()).encryptor()
        return Poly1305.generate_tag(self.mac_r + ecb.update(nonce), ciphertext)

    def seal(self, plaintext: bytes | memoryview, nonce: bytes | None = None) -> bytes:
        """Encrypt and authenticate ``plaintext``; a fresh random nonce unless one is given."""
        if nonce is None:
            nonce = os.urandom(NONCE_SIZE)
            while not any(nonce):
                nonce = os.urandom(NONCE_SIZE)
        elif len(nonce) != NONCE_SIZE or not any(nonce):
            raise ValueError("invalid nonce")
        n = len(plaintext)
        out = bytearray(n + OVERHEAD)
        out[:NONCE_SIZE] = nonce
        enc = Cipher(self._aes, modes.CTR(nonce)).encryptor()
        ct_view = memoryview(out)[NONCE_SIZE : NONCE_SIZE + n]
        if n:
            written = enc.update_into(plaintext, ct_view)
            assert written == n
        out[NONCE_SIZE + n :] = self._tag(nonce, ct_view)
        return bytes(out)

    def _verified(self, sealed: bytes | memoryview) -> tuple[bytes, memoryview]:
        """Nonce and ciphertext of ``sealed`` once its tag checks out (``MacError`` if not)."""
        if len(sealed) < OVERHEAD:
            raise IntegrityError("ciphertext too short")
        view = memoryview(sealed)
        nonce = bytes(view[:NONCE_SIZE])
        if not any(nonce):
            raise IntegrityError("nonce is invalid")
        ct = view[NONCE_SIZE:-MAC_SIZE]
        if not hmac.compare_digest(self._tag(nonce, ct), bytes(view[-MAC_SIZE:])):
            raise MacError("ciphertext verification failed")
        return nonce, ct

    def open(self, sealed: bytes | memoryview) -> bytes:
        """Verify and decrypt; raises ``MacError`` on any mismatch (nothing is decrypted)."""
        nonce, ct = self._verified(sealed)
        if not len(ct):
            return b""
        dec = Cipher(self._aes, modes.CTR(nonce)).decryptor()
        return dec.update(ct) + dec.finalize()

    def open_into(self, sealed: bytes | memoryview, out: memoryview) -> memoryview:
        """``open`` into the caller's buffer (at least ``plaintext_length + 15`` bytes, as the AES
        binding asks); returns the plaintext's part of ``out``. Reusing one buffer spares a large
        allocation, and the zeroing and page faults that come with it, per blob."""
        nonce, ct = self._verified(sealed)
        if len(out) < len(ct) + 15:
            raise ValueError(f"output buffer of {len(out)} bytes is too small for {len(ct)} bytes of plaintext")
        if len(ct):
            Cipher(self._aes, modes.CTR(nonce)).decryptor().update_into(ct, out)
        return out[: len(ct)]


def ciphertext_length(n: int) -> int:
    return n + OVERHEAD


def plaintext_length(n: int) -> int:
    return n - OVERHEAD


__all__ = ["OVERHEAD", "Key", "MacError", "ciphertext_length", "plaintext_length"]
