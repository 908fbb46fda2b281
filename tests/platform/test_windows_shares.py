"""UNC shares connected for a run only (``WNetAddConnection2W`` / ``WNetCancelConnection2W``
through ``FakeWin32``); error codes from Microsoft's "WNetAddConnection2W function" and "System
Error Codes (0-499 / 1000-1299)"."""

from __future__ import annotations

import pytest

from e3backup.platform.windows.shares import ShareError, connected, share_of
from e3backup.platform.windows.win32 import (
    ERROR_BAD_NET_NAME,
    ERROR_BAD_NETPATH,
    ERROR_EXTENDED_ERROR,
    ERROR_LOGON_FAILURE,
    ERROR_SESSION_CREDENTIAL_CONFLICT,
)
from tests.platform.win32_double import FakeWin32

SECRET = "Tr0ub4dor&3"


def test_connected_for_the_run_only() -> None:
    api = FakeWin32()
    paths = ["\\\\nas\\finance\\2026", "\\\\nas\\finance\\2025", "\\\\files\\home\\a", "C:\\Users"]
    with connected(api, paths, "CORP\\backup", SECRET) as shares:
        assert shares == ["\\\\files\\home", "\\\\nas\\finance"]  # each share once; C: needs none
        assert api.connections == {s: ("CORP\\backup", SECRET) for s in shares}
    assert api.connections == {}
    assert share_of("\\\\srv\\s\\x") == "\\\\srv\\s" and share_of("C:\\x") is None


def test_disconnected_when_the_run_fails() -> None:
    api = FakeWin32()
    with pytest.raises(RuntimeError), connected(api, ["\\\\nas\\finance"], "u", SECRET):
        raise RuntimeError("cancelled")
    assert api.connections == {} and ("disconnect", "\\\\nas\\finance") in api.calls


@pytest.mark.parametrize(("code", "reason", "words"), [
    (ERROR_BAD_NETPATH, "not_found", "not found (ERROR_BAD_NETPATH)"),
    (ERROR_BAD_NET_NAME, "not_found", "not found (ERROR_BAD_NET_NAME)"),
    (ERROR_LOGON_FAILURE, "credentials", "credentials refused as CORP\\backup (ERROR_LOGON_FAILURE)"),
    (ERROR_SESSION_CREDENTIAL_CONFLICT, "credentials", "already connected to the server with other credentials"),
    (ERROR_EXTENDED_ERROR, "other", "cannot connect as CORP\\backup (ERROR_EXTENDED_ERROR)"),
])
def test_failures_say_which_and_never_the_password(code: int, reason: str, words: str) -> None:
    api = FakeWin32()
    api.connect_error = code
    with pytest.raises(ShareError) as e, connected(api, ["\\\\nas\\finance\\x"], "CORP\\backup", SECRET):
        pytest.fail("not connected")
    assert e.value.reason == reason and e.value.code == code
    assert words in str(e.value) and "\\\\nas\\finance" in str(e.value)
    assert SECRET not in str(e.value) and SECRET not in repr(e.value.__reduce__())
    assert api.connections == {}


def test_a_later_share_failing_disconnects_the_earlier_ones() -> None:
    api = FakeWin32()
    orig = api.add_connection

    def second_fails(remote: str, user: str | None, password: str | None) -> int:
        return ERROR_BAD_NETPATH if remote.startswith("\\\\zz") else orig(remote, user, password)

    api.add_connection = second_fails  # type: ignore[method-assign]
    with pytest.raises(ShareError, match="zz"), connected(api, ["\\\\aa\\s\\x", "\\\\zz\\s\\y"], "u", SECRET):
        pass
    assert api.connections == {}
