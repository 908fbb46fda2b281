"""A selection of a snapshot as a ZIP or tar stream, produced while it is sent.

Nothing is staged on the server's disk and no whole file is held in memory: each data blob is
read from the repository, written into the archive and handed to the response before the next
one is read. Names in the archive are the selected entries' paths below the folder they were
picked in, made of components that passed :func:`browse.split`/``safe_name`` (no ``..``, no
``/``, no NUL, never absolute), so an archive cannot write outside the folder it is unpacked in.
An image snapshot's selection is read the same way through its partitions' file systems.
"""

from __future__ import annotations

import io
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from e3backup.repo.node import Node, unix_perm
from e3backup.repo.repository import Repository
from e3backup.server.errors import FieldError
from e3backup.server.services import browse, image_browse
from e3backup.sources.fsread.model import FileSystemReader, FsEntry

FORMATS = ("zip", "tar")
ZIP64_FROM = 1 << 31
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Member:
    """One archive entry, from a files snapshot's tree or an image partition's file system."""

    name: str  # inside the archive
    type: str  # "dir", "file", "symlink"; anything else is left out
    size: int
    mtime_ns: int
    mode: int  # permission bits (0: the default for its type)
    read: Callable[[], Iterator[bytes]] | None = None  # a file's bytes
    linktarget: str = ""


def _of_node(repo: Repository, name: str, node: Node) -> Member:
    return Member(name, node.type, node.size, node.mtime, unix_perm(node.mode),
                  (lambda: browse.file_chunks(repo, node)) if node.type == "file" else None,
                  (node.linktarget or b"").decode("utf-8", "surrogateescape"))


def _inside(base: str, path: str) -> tuple[list[str], list[str]]:
    base_parts, parts = browse.split(base), browse.split(path)
    if parts[: len(base_parts)] != base_parts or len(parts) <= len(base_parts):
        raise FieldError("paths", f"/{path.strip('/')} is not inside /{'/'.join(base_parts)}")
    return base_parts, parts


def members(repo: Repository, root: bytes, base: str, paths: list[str]) -> Iterator[Member]:
    """The selected entries (below ``base``) and everything under the selected folders."""
    for path in paths:
        base_parts, parts = _inside(base, path)
        node = browse.node_at(repo, root, "/".join(parts))
        assert node is not None
        name = "/".join(parts[len(base_parts):])
        yield _of_node(repo, name, node)
        if node.type == "dir" and node.subtree is not None:
            for sub, child in browse.walk(repo, node.subtree, name):
                yield _of_node(repo, sub, child)


def image_members(img: image_browse.StoredImage, base: str, paths: list[str]) -> Iterator[Member]:
    """The same for an image snapshot: paths start with a partition (``1-root/etc``), whose
    ext4 or NTFS file system is read from the stored image (links and special files left out)."""
    for path in paths:
        base_parts, parts = _inside(base, path)
        fs, entry = image_browse.entry_at(img, parts)
        name = "/".join(parts[len(base_parts):])
        if entry is not None and entry.type != "dir":
            yield _of_fs(fs, name, entry)
            continue
        yield Member(name, "dir", 0, entry.mtime_ns if entry else 0, 0)
        stack = [(name, entry.ref if entry else fs.root())]
        while stack:
            folder, ref = stack.pop()
            for child in image_browse.entries(fs, ref):
                sub = f"{folder}/{child.name}"
                yield _of_fs(fs, sub, child)
                if child.type == "dir":
                    stack.append((sub, child.ref))


def _of_fs(fs: FileSystemReader, name: str, e: FsEntry) -> Member:
    if e.type == "file":
        return Member(name, "file", e.size, e.mtime_ns, 0, lambda: image_browse.file_chunks(fs, e))
    return Member(name, e.type if e.type == "dir" else "other", 0, e.mtime_ns, 0)


def totals(items: Iterator[Member]) -> tuple[int, int]:
    """(files, bytes) of a selection: for the size warning before a large download."""
    files = size = 0
    for m in items:
        if m.type == "file":
            files += 1
            size += m.size
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


def zip_stream(items: Iterator[Member]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
        for m in items:
            if m.type == "dir":
                info = zipfile.ZipInfo(m.name + "/", _date_time(m.mtime_ns))
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
            elif m.type == "file" and m.read is not None:
                info = zipfile.ZipInfo(m.name, _date_time(m.mtime_ns))
                info.external_attr = (stat.S_IFREG | (m.mode or 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=m.size >= ZIP64_FROM) as out:
                    for chunk in m.read():
                        out.write(chunk)
                        yield sink.drain()
            else:
                continue  # links and special files have no place in a ZIP for a browser
            yield sink.drain()
    yield sink.drain()


def _tar_header(m: Member) -> bytes:
    info = tarfile.TarInfo(m.name)
    info.mtime = m.mtime_ns // 1_000_000_000
    info.mode = m.mode or (0o755 if m.type == "dir" else 0o644)
    if m.type == "dir":
        info.type = tarfile.DIRTYPE
    elif m.type == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = m.linktarget
    else:
        info.size = m.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_stream(items: Iterator[Member]) -> Iterator[bytes]:
    """POSIX (pax) tar: long and non-ASCII names are kept exactly."""
    written = 0
    for m in items:
        if m.type not in ("dir", "file", "symlink") or (m.type == "file" and m.read is None):
            continue
        header = _tar_header(m)
        written += len(header)
        yield header
        if m.read is None:
            continue
        size = 0
        for chunk in m.read():
            size += len(chunk)
            written += len(chunk)
            yield chunk
        if size != m.size:
            raise OSError(f"{m.name}: the snapshot's data has {size} bytes, its entry says {m.size}")
        pad = -size % _BLOCK
        written += pad
        yield b"\0" * pad
    end = 2 * _BLOCK
    end += -(written + end) % tarfile.RECORDSIZE
    yield b"\0" * end


__all__ = ["FORMATS", "Member", "image_members", "members", "tar_stream", "totals", "zip_stream"]
