"""The Win32 seam: the few kernel32/mpr calls the Windows layer makes, behind a protocol.

``Win32`` is what ``rawdisk``, ``volume`` and ``shares`` call; ``Kernel32`` is the ctypes
implementation (Windows only, created lazily), and tests pass doubles that return the bytes the
documented structures hold. Calls return Win32 error codes instead of raising where the caller
must tell them apart (``ERROR_MORE_DATA`` pages a bitmap, ``ERROR_SECTOR_NOT_FOUND`` ends a
device); opening fails with ``Win32Error``.
"""

from __future__ import annotations

import errno
import sys
import threading
from typing import Protocol

# winerror.h
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_NOT_READY = 21
ERROR_CRC = 23
ERROR_SECTOR_NOT_FOUND = 27
ERROR_SHARING_VIOLATION = 32
ERROR_HANDLE_EOF = 38
ERROR_BAD_NETPATH = 53
ERROR_NETWORK_ACCESS_DENIED = 65
ERROR_BAD_NET_NAME = 67
ERROR_ALREADY_ASSIGNED = 85
ERROR_INVALID_PASSWORD = 86
ERROR_INVALID_PARAMETER = 87
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_MORE_DATA = 234
ERROR_IO_DEVICE = 1117
ERROR_BAD_DEVICE = 1200
ERROR_EXTENDED_ERROR = 1208
ERROR_SESSION_CREDENTIAL_CONFLICT = 1219
ERROR_NO_NETWORK = 1222
ERROR_LOGON_FAILURE = 1326
ERROR_ACCOUNT_RESTRICTION = 1327
ERROR_PASSWORD_EXPIRED = 1330
ERROR_ACCOUNT_DISABLED = 1331
ERROR_NOT_CONNECTED = 2250

ERROR_NAMES = {
    ERROR_FILE_NOT_FOUND: "ERROR_FILE_NOT_FOUND",
    ERROR_PATH_NOT_FOUND: "ERROR_PATH_NOT_FOUND",
    ERROR_ACCESS_DENIED: "ERROR_ACCESS_DENIED",
    ERROR_INVALID_HANDLE: "ERROR_INVALID_HANDLE",
    ERROR_NOT_READY: "ERROR_NOT_READY",
    ERROR_CRC: "ERROR_CRC",
    ERROR_SECTOR_NOT_FOUND: "ERROR_SECTOR_NOT_FOUND",
    ERROR_SHARING_VIOLATION: "ERROR_SHARING_VIOLATION",
    ERROR_HANDLE_EOF: "ERROR_HANDLE_EOF",
    ERROR_BAD_NETPATH: "ERROR_BAD_NETPATH",
    ERROR_NETWORK_ACCESS_DENIED: "ERROR_NETWORK_ACCESS_DENIED",
    ERROR_BAD_NET_NAME: "ERROR_BAD_NET_NAME",
    ERROR_ALREADY_ASSIGNED: "ERROR_ALREADY_ASSIGNED",
    ERROR_INVALID_PASSWORD: "ERROR_INVALID_PASSWORD",
    ERROR_INVALID_PARAMETER: "ERROR_INVALID_PARAMETER",
    ERROR_INSUFFICIENT_BUFFER: "ERROR_INSUFFICIENT_BUFFER",
    ERROR_MORE_DATA: "ERROR_MORE_DATA",
    ERROR_IO_DEVICE: "ERROR_IO_DEVICE",
    ERROR_BAD_DEVICE: "ERROR_BAD_DEVICE",
    ERROR_EXTENDED_ERROR: "ERROR_EXTENDED_ERROR",
    ERROR_SESSION_CREDENTIAL_CONFLICT: "ERROR_SESSION_CREDENTIAL_CONFLICT",
    ERROR_NO_NETWORK: "ERROR_NO_NETWORK",
    ERROR_LOGON_FAILURE: "ERROR_LOGON_FAILURE",
    ERROR_ACCOUNT_RESTRICTION: "ERROR_ACCOUNT_RESTRICTION",
    ERROR_PASSWORD_EXPIRED: "ERROR_PASSWORD_EXPIRED",
    ERROR_ACCOUNT_DISABLED: "ERROR_ACCOUNT_DISABLED",
    ERROR_NOT_CONNECTED: "ERROR_NOT_CONNECTED",
}


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"Win32 error {code}")


class Win32Error(OSError):
    """A Win32 call failed: ``code`` is its ``GetLastError()``. An ``OSError`` (EIO), so the
    shared read policy (``sources.reader``) treats a failed read as any other I/O error."""

    def __init__(self, function: str, code: int, target: str = "") -> None:
        where = f" on {target}" if target else ""
        super().__init__(errno.EIO, f"{function}{where} failed: {error_name(code)} ({code})")
        self.function = function
        self.code = code
        self.target = target

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        return (type(self), (self.function, self.code, self.target))


class Win32(Protocol):
    """The calls the layer makes. Handles are ints; nothing here allocates per call that the
    caller did not ask for."""

    def open_device(self, path: str) -> int:
        """``CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, OPEN_EXISTING,
        FILE_FLAG_NO_BUFFERING)``; ``Win32Error`` when it fails."""
        ...

    def close(self, handle: int) -> None: ...

    def device_io_control(self, handle: int, code: int, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
        """``(error, output)``: error 0 on success, else ``GetLastError()`` with whatever output
        the call returned (``ERROR_MORE_DATA`` returns a full buffer)."""
        ...

    def read(self, handle: int, offset: int, view: memoryview) -> tuple[int, int]:
        """``ReadFile`` of ``len(view)`` bytes at ``offset`` (an OVERLAPPED offset: positional,
        thread-safe): ``(error, bytes_read)``. Offset and length are sector multiples."""
        ...

    def add_connection(self, remote: str, user: str | None, password: str | None) -> int:
        """``WNetAddConnection2W`` of a UNC share without a local name; the error code."""
        ...

    def cancel_connection(self, remote: str) -> int:
        """``WNetCancelConnection2W(remote, 0, TRUE)``; the error code."""
        ...


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    GENERIC_READ = 0x80000000
    FILE_SHARE_READ = 0x1
    FILE_SHARE_WRITE = 0x2
    OPEN_EXISTING = 3
    FILE_FLAG_NO_BUFFERING = 0x20000000
    FILE_FLAG_BACKUP_SEMANTICS = 0x02000000
    RESOURCETYPE_DISK = 0x1
    INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
    _ALIGN = 4096  # every logical sector size divides it; VirtualAlloc would give 64 KiB

    class _Overlapped(ctypes.Structure):
        _fields_ = [
            ("Internal", ctypes.c_void_p),
            ("InternalHigh", ctypes.c_void_p),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        ]

    class _NetResource(ctypes.Structure):
        _fields_ = [
            ("dwScope", wintypes.DWORD),
            ("dwType", wintypes.DWORD),
            ("dwDisplayType", wintypes.DWORD),
            ("dwUsage", wintypes.DWORD),
            ("lpLocalName", wintypes.LPWSTR),
            ("lpRemoteName", wintypes.LPWSTR),
            ("lpComment", wintypes.LPWSTR),
            ("lpProvider", wintypes.LPWSTR),
        ]

    class Kernel32:
        """The real calls (ctypes). Unbuffered reads need sector-aligned memory: each thread
        reads into its own aligned bounce buffer and copies out."""

        def __init__(self) -> None:
            k = ctypes.WinDLL("kernel32", use_last_error=True)
            self._create = k.CreateFileW
            self._create.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
            self._create.restype = wintypes.HANDLE
            self._close = k.CloseHandle
            self._close.argtypes = [wintypes.HANDLE]
            self._ioctl = k.DeviceIoControl
            self._ioctl.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.c_void_p, wintypes.DWORD,
                                    ctypes.c_void_p, wintypes.DWORD, ctypes.POINTER(wintypes.DWORD), ctypes.c_void_p]
            self._ioctl.restype = wintypes.BOOL
            self._read = k.ReadFile
            self._read.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD,
                                   ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(_Overlapped)]
            self._read.restype = wintypes.BOOL
            mpr = ctypes.WinDLL("mpr", use_last_error=True)
            self._add = mpr.WNetAddConnection2W
            self._add.argtypes = [ctypes.POINTER(_NetResource), wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD]
            self._add.restype = wintypes.DWORD
            self._cancel = mpr.WNetCancelConnection2W
            self._cancel.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.BOOL]
            self._cancel.restype = wintypes.DWORD
            self._local = threading.local()

        def open_device(self, path: str) -> int:
            h = self._create(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, None, OPEN_EXISTING,
                             FILE_FLAG_NO_BUFFERING | FILE_FLAG_BACKUP_SEMANTICS, None)
            if h is None or h == INVALID_HANDLE_VALUE:
                raise Win32Error("CreateFileW", ctypes.get_last_error(), path)
            return int(h)

        def close(self, handle: int) -> None:
            self._close(handle)

        def device_io_control(self, handle: int, code: int, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
            out = ctypes.create_string_buffer(out_size)
            n = wintypes.DWORD(0)
            ok = self._ioctl(handle, code, in_buffer or None, len(in_buffer), out, out_size, ctypes.byref(n), None)
            error = 0 if ok else ctypes.get_last_error()
            return error, out.raw[: n.value]

        def _bounce(self, size: int) -> tuple[ctypes.Array[ctypes.c_char], int]:
            buf: ctypes.Array[ctypes.c_char] | None = getattr(self._local, "buf", None)
            if buf is None or len(buf) < size + _ALIGN:
                buf = ctypes.create_string_buffer(size + _ALIGN)
                self._local.buf = buf
            address = ctypes.addressof(buf)
            return buf, address + (-address % _ALIGN)

        def read(self, handle: int, offset: int, view: memoryview) -> tuple[int, int]:
            _keep, address = self._bounce(len(view))
            ov = _Overlapped()
            ov.Offset = offset & 0xFFFFFFFF
            ov.OffsetHigh = offset >> 32
            n = wintypes.DWORD(0)
            ok = self._read(handle, address, len(view), ctypes.byref(n), ctypes.byref(ov))
            if n.value:
                view[: n.value] = ctypes.string_at(address, n.value)
            return (0 if ok else ctypes.get_last_error()), int(n.value)

        def add_connection(self, remote: str, user: str | None, password: str | None) -> int:
            res = _NetResource()
            res.dwType = RESOURCETYPE_DISK
            res.lpRemoteName = remote
            return int(self._add(ctypes.byref(res), password, user, 0))

        def cancel_connection(self, remote: str) -> int:
            return int(self._cancel(remote, 0, True))


def kernel32() -> Win32:
    """The real seam; only on Windows."""
    if sys.platform == "win32":
        return Kernel32()
    else:
        raise Win32Error("kernel32", ERROR_INVALID_HANDLE, f"this machine ({sys.platform}) is not Windows")


__all__ = [
    "ERROR_INSUFFICIENT_BUFFER",
    "ERROR_MORE_DATA",
    "ERROR_SECTOR_NOT_FOUND",
    "Win32",
    "Win32Error",
    "error_name",
    "kernel32",
]
