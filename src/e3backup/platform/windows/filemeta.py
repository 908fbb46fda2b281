"""Windows file attributes, creation time and security descriptor, stored as restic stores them.

restic (0.17+) keeps them in a tree node's ``generic_attributes`` map (``internal/restic/node.go``,
``TypeCreationTime`` / ``TypeFileAttributes`` / ``TypeSecurityDescriptor``), one JSON value per key:

    "windows.creation_time":       {"LowDateTime": u32, "HighDateTime": u32}  (Go's syscall.Filetime)
    "windows.file_attributes":     u32 (FILE_ATTRIBUTE_* bits)
    "windows.security_descriptor": base64 of the self-relative SECURITY_DESCRIPTOR (Go's []byte)

so a snapshot we write restores its attributes and ACLs under restic on Windows, and restic's
restore under ours. restic 0.14 ignores the map (unknown JSON fields), as it does on Linux.

Reading (``Win32FileMeta``, Windows only): ``GetFileAttributesExW`` (WIN32_FILE_ATTRIBUTE_DATA:
dwFileAttributes, ftCreationTime) and ``GetFileSecurityW`` for the owner, group and DACL, and the
SACL when the process may read it (``SeSecurityPrivilege``; without it ``ERROR_PRIVILEGE_NOT_HELD``
and the SACL is left out). Writing: ``SetFileSecurityW`` with the parts the descriptor holds
(owner and SACL need ``SeRestorePrivilege`` / ``SeSecurityPrivilege``: without them the DACL
alone is set and the restore says what was left out), the DACL's protection from its control
bits; the creation time with ``SetFileTime`` on a handle opened for FILE_WRITE_ATTRIBUTES; then
``SetFileAttributesW`` with the attributes that call accepts ("SetFileAttributesW function":
ARCHIVE, HIDDEN, NORMAL, NOT_CONTENT_INDEXED, OFFLINE, READONLY, SYSTEM, TEMPORARY), last, so a
read-only file is written before it becomes read-only. Nothing here has run on real Windows.
"""

from __future__ import annotations

import base64
import binascii
import struct
import sys
from dataclasses import dataclass
from typing import Any, Protocol

KEY_CREATION_TIME = "windows.creation_time"
KEY_FILE_ATTRIBUTES = "windows.file_attributes"
KEY_SECURITY_DESCRIPTOR = "windows.security_descriptor"

# winnt.h FILE_ATTRIBUTE_*
READONLY, HIDDEN, SYSTEM, DIRECTORY, ARCHIVE = 0x1, 0x2, 0x4, 0x10, 0x20
NORMAL, TEMPORARY, OFFLINE, NOT_CONTENT_INDEXED = 0x80, 0x100, 0x1000, 0x2000
SETTABLE = ARCHIVE | HIDDEN | NORMAL | NOT_CONTENT_INDEXED | OFFLINE | READONLY | SYSTEM | TEMPORARY

# SECURITY_INFORMATION bits ("SECURITY_INFORMATION" in the Win32 security reference)
OWNER_SECURITY_INFORMATION = 0x1
GROUP_SECURITY_INFORMATION = 0x2
DACL_SECURITY_INFORMATION = 0x4
SACL_SECURITY_INFORMATION = 0x8
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
UNPROTECTED_DACL_SECURITY_INFORMATION = 0x20000000
PROTECTED_SACL_SECURITY_INFORMATION = 0x40000000
UNPROTECTED_SACL_SECURITY_INFORMATION = 0x10000000

# SECURITY_DESCRIPTOR_CONTROL ([MS-DTYP] 2.4.6)
SE_DACL_PRESENT, SE_SACL_PRESENT = 0x0004, 0x0010
SE_DACL_PROTECTED, SE_SACL_PROTECTED = 0x1000, 0x2000
SE_SELF_RELATIVE = 0x8000

ERROR_PRIVILEGE_NOT_HELD = 1314


class SecurityDescriptorError(ValueError):
    """Bytes that are not a self-relative security descriptor."""


@dataclass(frozen=True)
class FileMeta:
    """What Windows keeps about a file besides its data, names and times restic always stores."""

    attributes: int
    creation_time: int  # FILETIME: 100 ns intervals since 1601-01-01 UTC
    security_descriptor: bytes | None  # self-relative; None: not readable (not stored)


@dataclass(frozen=True)
class Descriptor:
    """The parts of a self-relative security descriptor ([MS-DTYP] 2.4.6 SECURITY_DESCRIPTOR)."""

    control: int
    owner: str | None  # SIDs as S-1-5-32-544
    group: str | None
    dacl_aces: int | None  # None: no DACL
    sacl_aces: int | None

    def information(self) -> int:
        """The SECURITY_INFORMATION bits that set every part this descriptor holds."""
        info = 0
        if self.owner is not None:
            info |= OWNER_SECURITY_INFORMATION
        if self.group is not None:
            info |= GROUP_SECURITY_INFORMATION
        if self.control & SE_DACL_PRESENT:
            info |= DACL_SECURITY_INFORMATION
            protected = self.control & SE_DACL_PROTECTED
            info |= PROTECTED_DACL_SECURITY_INFORMATION if protected else UNPROTECTED_DACL_SECURITY_INFORMATION
        if self.control & SE_SACL_PRESENT:
            info |= SACL_SECURITY_INFORMATION
            protected = self.control & SE_SACL_PROTECTED
            info |= PROTECTED_SACL_SECURITY_INFORMATION if protected else UNPROTECTED_SACL_SECURITY_INFORMATION
        return info


def _sid(data: bytes, offset: int) -> str:
    """A SID ([MS-DTYP] 2.4.2.2: Revision, SubAuthorityCount, IdentifierAuthority (6 bytes, big
    endian), SubAuthority[] (u32 little endian)) as its string form."""
    if offset + 8 > len(data):
        raise SecurityDescriptorError(f"SID at {offset} runs past the descriptor")
    revision, count = data[offset], data[offset + 1]
    if revision != 1 or count > 15 or offset + 8 + 4 * count > len(data):
        raise SecurityDescriptorError(f"bad SID at {offset} (revision {revision}, {count} sub-authorities)")
    authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return "-".join(["S", "1", str(authority), *map(str, subs)])


def _acl(data: bytes, offset: int) -> int:
    """The ACE count of an ACL ([MS-DTYP] 2.4.5: AclRevision, Sbz1, AclSize, AceCount, Sbz2),
    checking that every ACE header (2.4.4.1: AceType, AceFlags, AceSize) stays inside it."""
    if offset + 8 > len(data):
        raise SecurityDescriptorError(f"ACL at {offset} runs past the descriptor")
    revision, _sbz1, size, count, _sbz2 = struct.unpack_from("<BBHHH", data, offset)
    if revision not in (2, 4) or size < 8 or offset + size > len(data):
        raise SecurityDescriptorError(f"bad ACL at {offset} (revision {revision}, size {size})")
    pos = offset + 8
    for i in range(count):
        if pos + 4 > offset + size:
            raise SecurityDescriptorError(f"ACE {i} of the ACL at {offset} runs past it")
        (ace_size,) = struct.unpack_from("<H", data, pos + 2)
        if ace_size < 4 or pos + ace_size > offset + size:
            raise SecurityDescriptorError(f"ACE {i} of the ACL at {offset} has a bad size {ace_size}")
        pos += ace_size
    return int(count)


def parse_descriptor(data: bytes) -> Descriptor:
    """Check and summarise a self-relative security descriptor (Revision 1, Sbz1, Control, then
    the offsets of owner, group, SACL and DACL from its start; 0 = absent)."""
    if len(data) < 20:
        raise SecurityDescriptorError(f"a security descriptor holds at least 20 bytes, not {len(data)}")
    revision, _sbz1, control, owner, group, sacl, dacl = struct.unpack_from("<BBHIIII", data, 0)
    if revision != 1 or not control & SE_SELF_RELATIVE:
        why = f"revision {revision}, control {control:#x}"
        raise SecurityDescriptorError(f"not a self-relative security descriptor ({why})")
    return Descriptor(
        control,
        _sid(data, owner) if owner else None,
        _sid(data, group) if group else None,
        _acl(data, dacl) if control & SE_DACL_PRESENT and dacl else None,
        _acl(data, sacl) if control & SE_SACL_PRESENT and sacl else None,
    )


def to_generic(meta: FileMeta) -> dict[str, Any]:
    """The node's ``generic_attributes`` as restic writes them (keys sorted, as Go sorts a map)."""
    out: dict[str, Any] = {
        KEY_CREATION_TIME: {"LowDateTime": meta.creation_time & 0xFFFFFFFF, "HighDateTime": meta.creation_time >> 32},
        KEY_FILE_ATTRIBUTES: meta.attributes,
    }
    if meta.security_descriptor is not None:
        out[KEY_SECURITY_DESCRIPTOR] = base64.b64encode(meta.security_descriptor).decode()
    return out


def from_generic(attrs: Any) -> FileMeta | None:
    """The Windows attributes of a node (ours or restic's); None when it has none. Raises
    ``ValueError`` naming the attribute that cannot be read."""
    if not isinstance(attrs, dict) or not any(k.startswith("windows.") for k in attrs):
        return None
    try:
        ft = attrs.get(KEY_CREATION_TIME) or {}
        creation = int(ft.get("LowDateTime", 0)) | (int(ft.get("HighDateTime", 0)) << 32)
        attributes = int(attrs.get(KEY_FILE_ATTRIBUTES, 0))
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"unreadable Windows attributes: {e}") from e
    if not 0 <= attributes < 1 << 32 or not 0 <= creation < 1 << 64:
        raise ValueError(f"Windows attributes out of range ({attributes:#x}, creation time {creation})")
    sd_text = attrs.get(KEY_SECURITY_DESCRIPTOR)
    sd = None
    if sd_text is not None:
        try:
            sd = base64.b64decode(str(sd_text), validate=True)
        except binascii.Error as e:
            raise ValueError(f"{KEY_SECURITY_DESCRIPTOR} is not base64: {e}") from e
    return FileMeta(attributes, creation, sd)


class FileMetaApi(Protocol):
    """Reads and writes a file's Windows attributes (``Win32FileMeta``; tests: a double)."""

    def read(self, path: str) -> FileMeta: ...

    def write(self, path: str, meta: FileMeta) -> list[str]:
        """Apply ``meta``; returns what could not be applied and why (e.g. the owner without
        SeRestorePrivilege), raises ``OSError`` when nothing could."""
        ...


def native_file_meta() -> FileMetaApi | None:
    """The real API on Windows; None elsewhere (the attributes are then neither read nor set)."""
    if sys.platform == "win32":
        return Win32FileMeta()
    return None


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    from .win32 import Win32Error

    _GetFileExInfoStandard = 0
    _FILE_WRITE_ATTRIBUTES = 0x100
    _SHARE_ALL = 0x7
    _OPEN_EXISTING = 3
    _FLAG_BACKUP_SEMANTICS = 0x02000000
    _FLAG_OPEN_REPARSE_POINT = 0x00200000
    _ERROR_INSUFFICIENT_BUFFER = 122

    class _AttributeData(ctypes.Structure):
        _fields_ = [
            ("dwFileAttributes", wintypes.DWORD),
            ("ftCreationTime", wintypes.FILETIME),
            ("ftLastAccessTime", wintypes.FILETIME),
            ("ftLastWriteTime", wintypes.FILETIME),
            ("nFileSizeHigh", wintypes.DWORD),
            ("nFileSizeLow", wintypes.DWORD),
        ]

    class Win32FileMeta:
        """The real calls (kernel32 and advapi32 through ctypes)."""

        def __init__(self) -> None:
            k = ctypes.WinDLL("kernel32", use_last_error=True)
            a = ctypes.WinDLL("advapi32", use_last_error=True)
            self._get_attrs = k.GetFileAttributesExW
            self._get_attrs.argtypes = [wintypes.LPCWSTR, ctypes.c_int, ctypes.c_void_p]
            self._get_attrs.restype = wintypes.BOOL
            self._set_attrs = k.SetFileAttributesW
            self._set_attrs.argtypes = [wintypes.LPCWSTR, wintypes.DWORD]
            self._set_attrs.restype = wintypes.BOOL
            self._create = k.CreateFileW
            self._create.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, ctypes.c_void_p,
                                     wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]  # fmt: skip
            self._create.restype = wintypes.HANDLE
            self._set_time = k.SetFileTime
            self._set_time.argtypes = [wintypes.HANDLE, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            self._set_time.restype = wintypes.BOOL
            self._close = k.CloseHandle
            self._close.argtypes = [wintypes.HANDLE]
            self._get_sd = a.GetFileSecurityW
            self._get_sd.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, ctypes.c_void_p, wintypes.DWORD,
                                     ctypes.POINTER(wintypes.DWORD)]  # fmt: skip
            self._get_sd.restype = wintypes.BOOL
            self._set_sd = a.SetFileSecurityW
            self._set_sd.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, ctypes.c_void_p]
            self._set_sd.restype = wintypes.BOOL

        def read(self, path: str) -> FileMeta:
            data = _AttributeData()
            if not self._get_attrs(path, _GetFileExInfoStandard, ctypes.byref(data)):
                raise Win32Error("GetFileAttributesExW", ctypes.get_last_error(), path)
            ft = data.ftCreationTime
            creation = int(ft.dwLowDateTime) | (int(ft.dwHighDateTime) << 32)
            sd = None
            for info in (
                OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
                | SACL_SECURITY_INFORMATION,
                OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            ):  # fmt: skip
                sd, error = self._descriptor(path, info)
                if error != ERROR_PRIVILEGE_NOT_HELD:
                    break
            return FileMeta(int(data.dwFileAttributes), creation, sd)

        def _descriptor(self, path: str, info: int) -> tuple[bytes | None, int]:
            needed = wintypes.DWORD(0)
            self._get_sd(path, info, None, 0, ctypes.byref(needed))
            error = ctypes.get_last_error()
            if error != _ERROR_INSUFFICIENT_BUFFER:
                return None, error
            buf = ctypes.create_string_buffer(needed.value)
            if not self._get_sd(path, info, buf, needed.value, ctypes.byref(needed)):
                return None, ctypes.get_last_error()
            return buf.raw[: needed.value], 0

        def write(self, path: str, meta: FileMeta) -> list[str]:
            left_out: list[str] = []
            if meta.security_descriptor is not None:
                sd = meta.security_descriptor
                info = parse_descriptor(sd).information()
                buf = ctypes.create_string_buffer(sd, len(sd))
                if not self._set_sd(path, info, buf):
                    error = ctypes.get_last_error()
                    reduced = info & ~(OWNER_SECURITY_INFORMATION | SACL_SECURITY_INFORMATION)
                    reduced &= ~(PROTECTED_SACL_SECURITY_INFORMATION | UNPROTECTED_SACL_SECURITY_INFORMATION)
                    if error != ERROR_PRIVILEGE_NOT_HELD or not self._set_sd(path, reduced, buf):
                        raise Win32Error("SetFileSecurityW", error, path)
                    left_out.append("owner and SACL not restored (SeRestorePrivilege/SeSecurityPrivilege not held)")
            h = self._create(path, _FILE_WRITE_ATTRIBUTES, _SHARE_ALL, None, _OPEN_EXISTING,
                             _FLAG_BACKUP_SEMANTICS | _FLAG_OPEN_REPARSE_POINT, None)  # fmt: skip
            if h is None or h == ctypes.c_void_p(-1).value:
                raise Win32Error("CreateFileW", ctypes.get_last_error(), path)
            try:
                ft = wintypes.FILETIME(meta.creation_time & 0xFFFFFFFF, meta.creation_time >> 32)
                if not self._set_time(h, ctypes.byref(ft), None, None):
                    raise Win32Error("SetFileTime", ctypes.get_last_error(), path)
            finally:
                self._close(h)
            if not self._set_attrs(path, (meta.attributes & SETTABLE) or NORMAL):
                raise Win32Error("SetFileAttributesW", ctypes.get_last_error(), path)
            return left_out


__all__ = [
    "KEY_CREATION_TIME",
    "KEY_FILE_ATTRIBUTES",
    "KEY_SECURITY_DESCRIPTOR",
    "Descriptor",
    "FileMeta",
    "FileMetaApi",
    "SecurityDescriptorError",
    "from_generic",
    "native_file_meta",
    "parse_descriptor",
    "to_generic",
]
