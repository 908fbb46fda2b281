"""Windows file attributes, creation times and security descriptors in files backups and restores.

The engine runs as on Linux; the Windows seam (``FileMetaApi``) is a double that answers with
security descriptors built here byte by byte from [MS-DTYP] 2.4.6 SECURITY_DESCRIPTOR (self-relative:
Revision 1, Sbz1, Control, OffsetOwner, OffsetGroup, OffsetSacl, OffsetDacl), 2.4.2.2 SID, 2.4.5 ACL
and 2.4.4.2 ACCESS_ALLOWED_ACE, with FILE_ATTRIBUTE_* values from "File Attribute Constants", and
that refuses a malformed descriptor as SetFileSecurityW does (ERROR_INVALID_SECURITY_DESCR). What is
stored must be restic's form (``generic_attributes`` of internal/restic/node.go, restic 0.17+); the
real restic (0.14 here) must check and restore the snapshot.
"""

from __future__ import annotations

import base64
import json
import ntpath
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.engines.files.targets import PathStyle, windows_user_path
from e3backup.platform.windows.filemeta import (
    PROTECTED_DACL_SECURITY_INFORMATION,
    FileMeta,
    SecurityDescriptorError,
    from_generic,
    parse_descriptor,
)
from e3backup.platform.windows.win32 import Win32Error
from e3backup.repo import Repository
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.store import LocalStore
from tests.helpers import PASSWORD, restic

HIDDEN, SYSTEM, READONLY, ARCHIVE, DIRECTORY = 0x2, 0x4, 0x1, 0x20, 0x10
ERROR_INVALID_SECURITY_DESCR = 1338
FILE_ALL_ACCESS, FILE_GENERIC_READ = 0x1F01FF, 0x120089


def sid(text: str) -> bytes:
    """[MS-DTYP] 2.4.2.2: Revision, SubAuthorityCount, IdentifierAuthority (6 bytes, big endian),
    SubAuthority[] (little endian)."""
    parts = text.split("-")
    subs = [int(p) for p in parts[3:]]
    return bytes([1, len(subs)]) + int(parts[2]).to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def ace_allowed(mask: int, who: str, flags: int = 0) -> bytes:
    """ACCESS_ALLOWED_ACE: ACE_HEADER (AceType 0, AceFlags, AceSize), Mask, SidStart."""
    body = struct.pack("<I", mask) + sid(who)
    return struct.pack("<BBH", 0, flags, 4 + len(body)) + body


def descriptor(owner: str, group: str, aces: list[bytes], protected: bool = False) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR: header, then owner, group and DACL (ACL revision 2)."""
    acl_body = b"".join(aces)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(acl_body), len(aces), 0) + acl_body
    o, g = sid(owner), sid(group)
    control = 0x8000 | 0x0004 | (0x1000 if protected else 0)  # SE_SELF_RELATIVE | SE_DACL_PRESENT
    off_owner = 20
    off_group = off_owner + len(o)
    off_dacl = off_group + len(g)
    return struct.pack("<BBHIIII", 1, 0, control, off_owner, off_group, 0, off_dacl) + o + g + acl


ADMINS, SYSTEM_SID, USERS = "S-1-5-32-544", "S-1-5-18", "S-1-5-32-545"
ALICE = "S-1-5-21-1004336348-1177238915-682003330-1001"
SD_DEFAULT = descriptor(
    ADMINS, SYSTEM_SID, [ace_allowed(FILE_ALL_ACCESS, ADMINS), ace_allowed(FILE_GENERIC_READ, USERS)]
)
SD_PRIVATE = descriptor(ALICE, SYSTEM_SID, [ace_allowed(FILE_ALL_ACCESS, ALICE, 0x3)], protected=True)
FT_2024 = 133_500_000_000_000_000  # a FILETIME (100 ns since 1601)


@dataclass
class FakeFileMeta:
    """``FileMetaApi`` over files on this machine: what Windows would answer for each (by the path
    the engine reads), and every write recorded."""

    answers: dict[str, FileMeta] = field(default_factory=dict)
    written: dict[str, FileMeta] = field(default_factory=dict)

    def read(self, path: str) -> FileMeta:
        meta = self.answers.get(path)
        if meta is None:
            attrs = DIRECTORY if os.path.isdir(path) else ARCHIVE
            return FileMeta(attrs, FT_2024, SD_DEFAULT)
        return meta

    def write(self, path: str, meta: FileMeta) -> list[str]:
        sd = meta.security_descriptor
        if sd is not None and (len(sd) < 20 or sd[0] != 1 or not struct.unpack_from("<H", sd, 2)[0] & 0x8000):
            raise Win32Error("SetFileSecurityW", ERROR_INVALID_SECURITY_DESCR, path)
        self.written[path] = meta
        return []


def _style(c: Path) -> PathStyle:
    def to_fs(path: bytes) -> bytes:
        rest = ntpath.splitdrive(os.fsdecode(path))[1]
        return os.fsencode(str(c) + rest.replace("\\", "/"))

    def to_user(path: bytes) -> str:
        return windows_user_path(os.fsencode("C:" + os.fsdecode(path)[len(str(c)) :]))

    return PathStyle(windows=True, to_fs=to_fs, to_user=to_user)


def _backup(repo_path: Path, c: Path, api: FakeFileMeta) -> None:
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        opts = BackupOptions(paths=["C:\\Data"], host="win10", path_style=_style(c), windows_meta=api)
        result = run_backup(repo, opts)
    finally:
        repo.close()
    assert result.errors == []


def _data_tree(repo_path: Path) -> str:
    """The tree ID of /C/Data in the latest snapshot (found through our reader)."""
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        repo.load_index()
        tree = repo.find_snapshot("latest").tree
        for name in (b"C", b"Data"):
            sub = next(n for n in repo.load_tree(tree) if n.name == name).subtree
            assert sub is not None
            tree = sub
        return tree.hex()
    finally:
        repo.close()


def _tree_nodes(repo_path: Path, *names: str, by_restic: bool = False) -> dict[str, dict[str, object]]:
    """The nodes of /C/Data as stored (with ``by_restic``: as the real restic reads the blob)."""
    tree = _data_tree(repo_path)
    if by_restic:
        raw = restic(repo_path, "cat", "blob", tree).stdout
    else:
        repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
        try:
            repo.load_index()
            raw = json.dumps({"nodes": [n.to_json() for n in repo.load_tree(bytes.fromhex(tree))]}).encode()
        finally:
            repo.close()
    return {n["name"]: n for n in json.loads(raw)["nodes"] if n["name"] in names}


@pytest.fixture()
def drive(tmp_path: Path) -> tuple[Path, Path, FakeFileMeta]:
    c = tmp_path / "drive-c"
    (c / "Data/private").mkdir(parents=True)
    (c / "Data/desktop.ini").write_bytes(b"[.ShellClassInfo]\r\n")
    (c / "Data/report.txt").write_bytes(os.urandom(40_000))
    (c / "Data/private/key.txt").write_bytes(b"secret")
    api = FakeFileMeta()
    api.answers[str(c / "Data/desktop.ini")] = FileMeta(HIDDEN | SYSTEM | ARCHIVE, FT_2024 + 1, SD_DEFAULT)
    api.answers[str(c / "Data/report.txt")] = FileMeta(READONLY | ARCHIVE, FT_2024 + 2, SD_DEFAULT)
    api.answers[str(c / "Data/private")] = FileMeta(DIRECTORY, FT_2024 + 3, SD_PRIVATE)
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    return c, repo_path, api


def test_attributes_and_acls_are_stored_as_restic_stores_them_and_restored(
    drive: tuple[Path, Path, FakeFileMeta], tmp_path: Path
) -> None:
    c, repo_path, api = drive
    _backup(repo_path, c, api)
    nodes = _tree_nodes(repo_path, "desktop.ini", "report.txt", "private", by_restic=True)
    assert nodes["desktop.ini"]["generic_attributes"] == {
        "windows.creation_time": {"LowDateTime": (FT_2024 + 1) & 0xFFFFFFFF, "HighDateTime": (FT_2024 + 1) >> 32},
        "windows.file_attributes": HIDDEN | SYSTEM | ARCHIVE,
        "windows.security_descriptor": base64.b64encode(SD_DEFAULT).decode(),
    }
    assert base64.b64decode(nodes["private"]["generic_attributes"]["windows.security_descriptor"]) == SD_PRIVATE  # type: ignore[index]
    restic(repo_path, "check", "--read-data")
    out = tmp_path / "restic-out"
    restic(repo_path, "restore", "latest", "--target", str(out))  # 0.14 leaves the map alone
    assert (out / "C/Data/report.txt").read_bytes() == (c / "Data/report.txt").read_bytes()

    ours = tmp_path / "ours"
    back = FakeFileMeta()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        result = run_restore(repo, RestoreOptions(target=str(ours), windows_meta=back))
    finally:
        repo.close()
    assert result.errors == []
    for name in ("desktop.ini", "report.txt", "private", "private/key.txt"):
        assert back.written[str(ours / "C/Data" / name)] == api.read(str(c / "Data" / name)), name
    assert (ours / "C/Data/private/key.txt").read_bytes() == b"secret"


def test_a_change_of_acl_alone_is_in_the_next_snapshot(drive: tuple[Path, Path, FakeFileMeta]) -> None:
    c, repo_path, api = drive
    _backup(repo_path, c, api)
    api.answers[str(c / "Data/report.txt")] = FileMeta(ARCHIVE, FT_2024 + 2, SD_PRIVATE)  # same data, new ACL
    _backup(repo_path, c, api)
    attrs = _tree_nodes(repo_path, "report.txt")["report.txt"]["generic_attributes"]
    assert attrs["windows.file_attributes"] == ARCHIVE  # type: ignore[index]
    assert base64.b64decode(attrs["windows.security_descriptor"]) == SD_PRIVATE  # type: ignore[index]


def test_a_descriptor_windows_refuses_is_named_and_the_rest_restored(
    drive: tuple[Path, Path, FakeFileMeta], tmp_path: Path
) -> None:
    c, repo_path, api = drive
    api.answers[str(c / "Data/report.txt")] = FileMeta(ARCHIVE, FT_2024, b"\x02garbage-not-a-descriptor")
    _backup(repo_path, c, api)
    ours, back = tmp_path / "ours", FakeFileMeta()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        result = run_restore(repo, RestoreOptions(target=str(ours), windows_meta=back))
    finally:
        repo.close()
    assert len(result.errors) == 1
    assert result.errors[0].startswith(f"{ours / 'C/Data/report.txt'}: setting Windows attributes:")
    assert "SetFileSecurityW" in result.errors[0] or "1338" in result.errors[0]
    assert (ours / "C/Data/report.txt").read_bytes() == (c / "Data/report.txt").read_bytes()
    assert str(ours / "C/Data/desktop.ini") in back.written


def test_restic_written_attributes_read_back() -> None:
    """A node as restic 0.17 on Windows writes it (Go's json: Filetime struct, uint32, []byte)."""
    node = json.loads(
        '{"generic_attributes":{"windows.creation_time":{"LowDateTime":3735928559,"HighDateTime":31082548},'
        f'"windows.file_attributes":34,"windows.security_descriptor":"{base64.b64encode(SD_DEFAULT).decode()}"}}}}'
    )
    meta = from_generic(node["generic_attributes"])
    assert meta == FileMeta(34, (31082548 << 32) | 3735928559, SD_DEFAULT)
    assert from_generic({}) is None and from_generic({"linux.thing": 1}) is None
    with pytest.raises(ValueError, match="not base64"):
        from_generic({"windows.security_descriptor": "%%%"})


def test_descriptors_are_parsed_by_the_documented_layout() -> None:
    d = parse_descriptor(SD_PRIVATE)
    assert (d.owner, d.group, d.dacl_aces, d.sacl_aces) == (ALICE, SYSTEM_SID, 1, None)
    assert d.information() & PROTECTED_DACL_SECURITY_INFORMATION
    assert parse_descriptor(SD_DEFAULT).dacl_aces == 2
    bad = bytearray(SD_DEFAULT)
    dacl = struct.unpack_from("<I", bad, 16)[0]
    struct.pack_into("<H", bad, dacl + 4, 3)  # AceCount 3 where the ACL holds 2
    with pytest.raises(SecurityDescriptorError, match="ACE 2 of the ACL"):
        parse_descriptor(bytes(bad))
    with pytest.raises(SecurityDescriptorError, match="bad ACL"):
        parse_descriptor(SD_DEFAULT[:-4])  # cut short
    with pytest.raises(SecurityDescriptorError, match="self-relative"):
        parse_descriptor(bytes(20))
