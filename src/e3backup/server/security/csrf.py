"""CSRF protection for cookie-authenticated requests.

Signed-in sessions carry a random CSRF token (stored with the session). Any unsafe request
authenticated by the session cookie must send it back, as the ``X-CSRF-Token`` header (JSON API)
or a ``csrf_token`` form field (HTML forms). Before sign-in (the login and first-admin forms) a
double-submit token is used: a random value in a cookie that the form must repeat.
"""

from __future__ import annotations

import hmac

HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"
PRELOGIN_COOKIE = "e3_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


__all__ = ["FORM_FIELD", "HEADER", "PRELOGIN_COOKIE", "SAFE_METHODS", "tokens_match"]
