"""The optional second factor: time-based one-time codes (RFC 6238, what authenticator apps do).

The secret is sealed at rest with the server's key (AAD: the user), shown once when set up, and
counts only after the user typed a code from it. A code is accepted within one 30 s step either
side (clock drift); a failed code is a failed sign-in for the rate limiter.
"""

from __future__ import annotations

import pyotp

from e3backup.server.db.models import User
from e3backup.server.errors import FieldError
from e3backup.server.security import SecretBox

ISSUER = "e3backup"


def _aad(user: User) -> str:
    return f"user-totp:{user.id}"


def begin_setup(box: SecretBox, user: User) -> tuple[str, str]:
    """A new secret for ``user`` (not yet in force): the secret and its ``otpauth://`` URI."""
    secret = pyotp.random_base32()
    user.totp_secret_sealed = box.seal({"secret": secret}, _aad(user))
    user.totp_enabled = False
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def check(box: SecretBox, user: User, code: str | None) -> bool:
    if not user.totp_secret_sealed or not code:
        return False
    secret = str(box.open(user.totp_secret_sealed, _aad(user))["secret"])
    return bool(pyotp.TOTP(secret).verify(code.strip().replace(" ", ""), valid_window=1))


def enable(box: SecretBox, user: User, code: str) -> None:
    if not user.totp_secret_sealed:
        raise FieldError("code", "set up two-factor first (a new secret)")
    if not check(box, user, code):
        raise FieldError("code", "wrong code: type the current 6 digits of your authenticator app")
    user.totp_enabled = True


def disable(user: User) -> None:
    user.totp_enabled = False
    user.totp_secret_sealed = None


__all__ = ["begin_setup", "check", "disable", "enable"]
