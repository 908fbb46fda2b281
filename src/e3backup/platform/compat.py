"""POSIX calls the package uses, with their Windows counterparts, so every module imports and
runs on both (``mypy --strict --platform win32`` checks the Windows side).

    pread / preadv / pwrite   os.* on POSIX; ReadFile / WriteFile with an OVERLAPPED offset on
                              the descriptor's handle on Windows (positional, so thread-safe)
    open flags                O_CLOEXEC (O_NOINHERIT on Windows), O_BINARY (Windows only: without
                              it ``os.open`` translates line ends), O_NOFOLLOW / O_NONBLOCK (0)
    owner_ids / is_superuser  (uid, gid) of this process, (0, 0) on Windows as restic stores them;
                              root, or an elevated administrator
    KILL_SIGNAL               SIGKILL; on Windows ``os.kill`` with SIGTERM is TerminateProcess
    unix_socket               an AF_UNIX stream socket; Python on Windows has none, so a clear
                              error there (the instant-restore export and QEMU's monitor use it)

The Windows branches have not run on a real Windows machine yet (docs/windows.md).
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import sys
from collections.abc import Sequence

WINDOWS = sys.platform == "win32"

if sys.platform == "win32":
    O_CLOEXEC: int = os.O_NOINHERIT
    O_BINARY: int = os.O_BINARY
    O_NOFOLLOW: int = 0
    O_NONBLOCK: int = 0
    KILL_SIGNAL: int = signal.SIGTERM
else:
    O_CLOEXEC = os.O_CLOEXEC
    O_BINARY = 0
    O_NOFOLLOW = os.O_NOFOLLOW
    O_NONBLOCK = os.O_NONBLOCK
    KILL_SIGNAL = signal.SIGKILL

WritableBuffer = memoryview | bytearray | mmap.mmap

READ_FLAGS = os.O_RDONLY | O_BINARY | O_CLOEXEC
"""Open a file for reading, binary, not inherited by child processes."""

ERROR_HANDLE_EOF = 38


if sys.platform == "win32":
    import ctypes
    import msvcrt
    from ctypes import wintypes

    class _Overlapped(ctypes.Structure):
        _fields_ = [
            ("Internal", ctypes.c_void_p),
            ("InternalHigh", ctypes.c_void_p),
            ("Offset", wintypes.DWORD),
            ("OffsetHigh", wintypes.DWORD),
            ("hEvent", wintypes.HANDLE),
        ]

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _kernel32.ReadFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD,
                                   ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(_Overlapped)]
    _kernel32.ReadFile.restype = wintypes.BOOL
    _kernel32.WriteFile.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD,
                                    ctypes.POINTER(wintypes.DWORD), ctypes.POINTER(_Overlapped)]
    _kernel32.WriteFile.restype = wintypes.BOOL

    def _overlapped(offset: int) -> _Overlapped:
        ov = _Overlapped()
        ov.Offset = offset & 0xFFFFFFFF
        ov.OffsetHigh = offset >> 32
        return ov

    def _read_once(fd: int, view: memoryview, offset: int) -> int:
        n = wintypes.DWORD(0)
        buf = (ctypes.c_char * len(view)).from_buffer(view)
        ov = _overlapped(offset)
        if not _kernel32.ReadFile(msvcrt.get_osfhandle(fd), buf, len(view), ctypes.byref(n), ctypes.byref(ov)):
            err = ctypes.get_last_error()
            if err == ERROR_HANDLE_EOF:
                return 0
            raise ctypes.WinError(err)
        return int(n.value)

    def _write_once(fd: int, data: bytes, offset: int) -> int:
        n = wintypes.DWORD(0)
        ov = _overlapped(offset)
        if not _kernel32.WriteFile(msvcrt.get_osfhandle(fd), data, len(data), ctypes.byref(n), ctypes.byref(ov)):
            raise ctypes.WinError(ctypes.get_last_error())
        return int(n.value)


if sys.platform == "win32":

    def preadv(fd: int, buffers: Sequence[WritableBuffer], offset: int) -> int:
        """Fill ``buffers`` from ``offset`` without moving a shared file position; bytes read."""
        done = 0
        for b in buffers:
            view = memoryview(b).cast("B")
            got = 0
            while got < len(view):
                n = _read_once(fd, view[got:], offset + done + got)
                if n == 0:
                    return done + got
                got += n
            done += got
        return done

    def pread(fd: int, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
        buf = bytearray(length)
        n = preadv(fd, [buf], offset)
        return bytes(buf[:n])

    def pwrite(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
        """Write ``data`` at ``offset``; bytes written."""
        return _write_once(fd, bytes(data), offset)

    def readinto(fd: int, view: memoryview) -> int:
        """Read from the file position into ``view``; bytes read (0 at the end of the file)."""
        data = os.read(fd, len(view))
        view[: len(data)] = data
        return len(data)

else:

    def preadv(fd: int, buffers: Sequence[WritableBuffer], offset: int) -> int:
        """Fill ``buffers`` from ``offset`` without moving a shared file position; bytes read."""
        return os.preadv(fd, buffers, offset)

    def pread(fd: int, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
        return os.pread(fd, length, offset)

    def pwrite(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
        """Write ``data`` at ``offset``; bytes written."""
        return os.pwrite(fd, data, offset)

    def readinto(fd: int, view: memoryview) -> int:
        """Read from the file position into ``view``; bytes read (0 at the end of the file)."""
        return os.readv(fd, [view])


def owner_ids() -> tuple[int, int]:
    """This process's (uid, gid); Windows has none, and restic stores (0, 0) there."""
    if sys.platform == "win32":
        return 0, 0
    return os.getuid(), os.getgid()


def is_superuser() -> bool:
    """Root on POSIX; an elevated administrator on Windows."""
    if sys.platform == "win32":
        import ctypes as _ctypes

        try:
            return bool(_ctypes.windll.shell32.IsUserAnAdmin())
        except OSError:
            return False
    return os.geteuid() == 0


def unix_socket(purpose: str) -> socket.socket:
    """A unix stream socket, for ``purpose`` (named in the error where there is none)."""
    if sys.platform == "win32":
        from ..errors import UsageError

        raise UsageError(f"{purpose} needs a unix socket, which Windows does not offer here; use TCP")
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def kill_self() -> None:
    """End this process at once, without cleanup (crash-point tests)."""
    os.kill(os.getpid(), KILL_SIGNAL)


__all__ = [
    "KILL_SIGNAL",
    "O_BINARY",
    "O_CLOEXEC",
    "O_NOFOLLOW",
    "O_NONBLOCK",
    "READ_FLAGS",
    "WINDOWS",
    "is_superuser",
    "kill_self",
    "owner_ids",
    "pread",
    "preadv",
    "pwrite",
    "readinto",
    "unix_socket",
]
