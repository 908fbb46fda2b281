"""UNC shares (``\\\\server\\share\\...``) as sources: connected for a run only, with credentials.

``connected()`` calls ``WNetAddConnection2W`` without a local drive letter (the run reads the UNC
path itself) and ``WNetCancelConnection2W`` on every exit. The password is passed to the call and
nowhere else: errors and logs name the share, the user and the Win32 error, never the password.
Error codes (Microsoft's "WNetAddConnection2W function" and System Error Codes) map to two
things an operator can act on: the share is not there, or the credentials were refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import E3Error
from .win32 import (
    ERROR_ACCESS_DENIED,
    ERROR_ACCOUNT_DISABLED,
    ERROR_ACCOUNT_RESTRICTION,
    ERROR_BAD_NET_NAME,
    ERROR_BAD_NETPATH,
    ERROR_INVALID_PASSWORD,
    ERROR_LOGON_FAILURE,
    ERROR_NETWORK_ACCESS_DENIED,
    ERROR_NO_NETWORK,
    ERROR_PASSWORD_EXPIRED,
    ERROR_SESSION_CREDENTIAL_CONFLICT,
    Win32,
    error_name,
)

_UNC = re.compile(r"^\\\\([^\\/?*:<>|\"]+)\\([^\\/?*:<>|\"]+)")

NOT_FOUND = {ERROR_BAD_NETPATH, ERROR_BAD_NET_NAME, ERROR_NO_NETWORK}
REFUSED = {ERROR_LOGON_FAILURE, ERROR_INVALID_PASSWORD, ERROR_ACCESS_DENIED, ERROR_NETWORK_ACCESS_DENIED,
           ERROR_ACCOUNT_DISABLED, ERROR_ACCOUNT_RESTRICTION, ERROR_PASSWORD_EXPIRED}


class ShareError(E3Error):
    """A share could not be connected; ``reason`` is ``not_found``, ``credentials`` or ``other``."""

    def __init__(self, message: str, share: str, code: int, reason: str) -> None:
        super().__init__(message)
        self.share = share
        self.code = code
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, int, str]]:
        return (type(self), (str(self), self.share, self.code, self.reason))


def share_of(path: str) -> str | None:
    """``\\\\server\\share`` of a UNC path (``None`` for anything else)."""
    m = _UNC.match(path)
    return f"\\\\{m.group(1)}\\{m.group(2)}" if m else None


def connect_error(share: str, user: str | None, code: int) -> ShareError:
    who = f" as {user}" if user else ""
    if code in NOT_FOUND:
        return ShareError(f"share {share} not found ({error_name(code)}): check the server and share names "
                          "and that this machine reaches the server", share, code, "not_found")
    if code in REFUSED:
        return ShareError(f"share {share}: credentials refused{who} ({error_name(code)}): check the user "
                          "name, password and the share's permissions", share, code, "credentials")
    if code == ERROR_SESSION_CREDENTIAL_CONFLICT:
        return ShareError(f"share {share}: this machine is already connected to the server with other "
                          f"credentials ({error_name(code)}): disconnect them (net use) or use the same user",
                          share, code, "credentials")
    return ShareError(f"share {share}: cannot connect{who} ({error_name(code)})", share, code, "other")


@contextmanager
def connected(api: Win32, paths: list[str], user: str | None, password: str | None) -> Iterator[list[str]]:
    """Connect every share among ``paths`` for the duration; yields the shares connected."""
    shares = sorted({s for s in (share_of(p) for p in paths) if s})
    done: list[str] = []
    try:
        for share in shares:
            code = api.add_connection(share, user, password)
            if code:
                raise connect_error(share, user, code)
            done.append(share)
        yield done
    finally:
        for share in reversed(done):
            api.cancel_connection(share)


__all__ = ["ShareError", "connect_error", "connected", "share_of"]
