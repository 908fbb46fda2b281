"""Security primitives: password hashing, tokens, secrets at rest, CSRF and rate limits."""

from e3backup.server.security.passwords import PasswordHasher
from e3backup.server.security.ratelimit import RateLimiter
from e3backup.server.security.secretbox import SecretBox
from e3backup.server.security.tokens import hash_token, new_token

__all__ = ["PasswordHasher", "RateLimiter", "SecretBox", "hash_token", "new_token"]
