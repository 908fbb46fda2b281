"""A selection of a snapshot as a ZIP or tar stream, produced while it is sent.

Nothing is staged on the server's disk and no whole file is held in memory: each data blob is
read from the repository, written into the archive and handed to the response before the next
one is read. Names in the archive are the selected entries' paths below the folder they were
picked in, made of components that passed :func:`browse.split`/``safe_name`` (no ``..``, no
``/``, no NUL, never absolute), so an archive cannot write outside the folder it is unpacked in.
"""

from __future__ import annotations

import io
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from e3backup.repo.node import Node, unix_perm
from e3backup.repo.repository import Repository
from e3backup.server.errors import FieldError
from e3backup.server.services import browse

FORMATS = ("zip", "tar")
ZIP64_FROM = 1 << 31
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Member:
    name: str  # inside the archive
    node: Node


def members(repo: Repository, root: bytes, base: str, paths: list[str]) -> Iterator[Member]:
    """The selected entries (below ``base``) and everything under the selected folders."""
    base_parts = browse.split(base)
    for path in paths:
        parts = browse.split(path)
        if parts[: len(base_parts)] != base_parts or len(parts) <= len(base_parts):
            raise FieldError("paths", f"/{path.strip('/')} is not inside /{'/'.join(base_parts)}")
        node = browse.node_at(repo, root, "/".join(parts))
        assert node is not None
        name = "/".join(parts[len(base_parts):])
        yield Member(name, node)
        if node.type == "dir" and node.subtree is not None:
            for sub, child in browse.walk(repo, node.subtree, name):
                yield Member(sub, child)


def totals(repo: Repository, root: bytes, base: str, paths: list[str]) -> tuple[int, int]:
    """(files, bytes) of a selection: for the size warning before a large download."""
    files = size = 0
    for m in members(repo, root, base, paths):
        if m.node.type == "file":
            files += 1
            size += m.node.size
    return files, size


class _Sink(io.RawIOBase):
    """Collects what an archive writer writes; the stream drains it after every blob. Not
    seekable, so ``zipfile`` writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(b)
        self.chunks.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def _date_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    t = time.gmtime(max(mtime_ns // 1_000_000_000, 315532800))  # ZIP cannot say before 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def zip_stream(repo: Repository, items: Iterator[Member]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
        for m in items:
            if m.node.type == "dir":
                info = zipfile.ZipInfo(m.name + "/", _date_time(m.node.mtime))
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
            elif m.node.type == "file":
                info = zipfile.ZipInfo(m.name, _date_time(m.node.mtime))
                info.external_attr = (stat.S_IFREG | (unix_perm(m.node.mode) or 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=m.node.size >= ZIP64_FROM) as out:
                    for chunk in browse.file_chunks(repo, m.node):
                        out.write(chunk)
                        yield sink.drain()
            else:
                continue  # links and special files have no place in a ZIP for a browser
            yield sink.drain()
    yield sink.drain()


def _tar_header(m: Member) -> bytes:
    info = tarfile.TarInfo(m.name)
    info.mtime = m.node.mtime // 1_000_000_000
    info.mode = unix_perm(m.node.mode) or (0o755 if m.node.type == "dir" else 0o644)
    if m.node.type == "dir":
        info.type = tarfile.DIRTYPE
    elif m.node.type == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = (m.node.linktarget or b"").decode("utf-8", "surrogateescape")
    else:
        info.size = m.node.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_stream(repo: Repository, items: Iterator[Member]) -> Iterator[bytes]:
    """POSIX (pax) tar: long and non-ASCII names are kept exactly."""
    written = 0
    for m in items:
        if m.node.type not in ("dir", "file", "symlink"):
            continue
        header = _tar_header(m)
        written += len(header)
        yield header
        if m.node.type != "file":
            continue
        size = 0
        for chunk in browse.file_chunks(repo, m.node):
            size += len(chunk)
            written += len(chunk)
            yield chunk
        if size != m.node.size:
            raise OSError(f"{m.name}: the snapshot's data has {size} bytes, its node says {m.node.size}")
        pad = -size % _BLOCK
        written += pad
        yield b"\0" * pad
    end = 2 * _BLOCK
    end += -(written + end) % tarfile.RECORDSIZE
    yield b"\0" * end


__all__ = ["FORMATS", "Member", "members", "tar_stream", "totals", "zip_stream"]
