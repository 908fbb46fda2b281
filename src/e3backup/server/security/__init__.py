"""Security primitives: password hashing, tokens, secrets at rest, CSRF and rate limits.

The rate limiter (``security.ratelimit``) keeps its counters in the database: import it from its
module (the models import ``security.roles``, so this package must not import the models).
"""

from e3backup.server.security.passwords import PasswordHasher
from e3backup.server.security.secretbox import SecretBox
from e3backup.server.security.tokens import hash_token, new_token

__all__ = ["PasswordHasher", "SecretBox", "hash_token", "new_token"]
