"""Security headers on every response, and ``Secure`` on every cookie when the site is HTTPS.

- ``Content-Security-Policy``: scripts, styles, images and connections only from this origin,
  no inline script (the dashboard has none: its one script is ``/static/app.js``), no plugins,
  and ``frame-ancestors 'none'`` (with ``X-Frame-Options: DENY`` for old browsers): no page of
  the dashboard can be framed for click-jacking.
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
- ``Cache-Control: no-store`` on everything but ``/static/``: pages and API answers carry
  tenant data and CSRF tokens that must not stay in a shared or browser cache.
- ``Strict-Transport-Security`` when the request came over HTTPS (the server's own TLS, or a
  trusted proxy's ``X-Forwarded-Proto``), and then ``Secure`` is added to every ``Set-Cookie``;
  ``cookie_secure`` forces it on (TLS ends at a proxy that does not say so).

A pure ASGI middleware: it edits the response start message and never buffers a body, so
the live-progress stream (SSE) passes through untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000"
_FIXED = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, cookie_secure: bool = False) -> None:
        self.app = app
        self.cookie_secure = cookie_secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        secure = https or self.cookie_secure
        cacheable = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _headers(list(message.get("headers", [])), https, secure, cacheable)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers(
    headers: list[tuple[bytes, bytes]], https: bool, secure: bool, cacheable: bool
) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    out = []
    for name, value in headers:
        if secure and name.lower() == b"set-cookie" and b"secure" not in _attributes(value):
            value += b"; Secure"
        out.append((name, value))
    out += [(name, value) for name, value in _FIXED if name not in present]
    if not cacheable and b"cache-control" not in present:
        out.append((b"cache-control", b"no-store"))
    if https:
        out.append((b"strict-transport-security", HSTS.encode()))
    return out


def _attributes(cookie: bytes) -> set[bytes]:
    """The attribute names of a Set-Cookie value (not its name=value), lower case."""
    return {part.split(b"=", 1)[0].strip().lower() for part in cookie.split(b";")[1:]}


__all__ = ["CSP", "HSTS", "SecurityHeaders"]
