"""User passwords, hashed with argon2id (memory-hard)."""

from __future__ import annotations

import argon2


class PasswordHasher:
    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
        )
        # verified against on unknown users too, so a login takes as long either way
        self._dummy = self._hasher.hash("no such user")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False


__all__ = ["PasswordHasher"]
