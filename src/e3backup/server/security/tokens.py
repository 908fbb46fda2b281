"""Bearer tokens (agent, enrollment, recovery session, user session).

Tokens are 256 random bits with a short prefix naming their kind. The server stores only their
SHA-256: a random token needs no slow hash, and lookups stay a single indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets

AGENT = "e3a_"
ENROLLMENT = "e3e_"
RECOVERY = "e3r_"
SESSION = "e3s_"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


__all__ = ["AGENT", "ENROLLMENT", "RECOVERY", "SESSION", "hash_token", "new_token"]
