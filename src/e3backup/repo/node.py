"""Tree nodes as restic writes them (spec 7.3-7.5): Go file modes, quoted names, ns times.

``Node.name`` holds raw bytes; the JSON carries Go's quoted form. Field order follows restic's
struct so our trees look like restic's.
"""

from __future__ import annotations

import base64
import json
import stat
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _jstr
from typing import Any

from ..errors import IntegrityError
from .names import quote, unquote
from .timefmt import format_ns, parse_ns

MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_PERM = 0o777

_KNOWN = frozenset(
    (
        "name",
        "type",
        "mode",
        "mtime",
        "atime",
        "ctime",
        "uid",
        "gid",
        "user",
        "group",
        "inode",
        "device_id",
        "size",
        "links",
        "linktarget",
        "linktarget_raw",
        "extended_attributes",
        "device",
        "content",
        "subtree",
        "error",
    )
)

_RARE = frozenset(("linktarget", "linktarget_raw", "extended_attributes"))

NODE_TYPES = ("file", "dir", "symlink", "dev", "chardev", "fifo", "socket", "irregular")


def go_mode(st_mode: int) -> int:
    """``st_mode`` from lstat to Go's ``os.FileMode`` bits."""
    m = st_mode & MODE_PERM
    fmt = stat.S_IFMT(st_mode)
    m |= {
        stat.S_IFDIR: MODE_DIR,
        stat.S_IFLNK: MODE_SYMLINK,
        stat.S_IFBLK: MODE_DEVICE,
        stat.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE,
        stat.S_IFIFO: MODE_NAMED_PIPE,
        stat.S_IFSOCK: MODE_SOCKET,
    }.get(fmt, 0)
    if st_mode & stat.S_ISUID:
        m |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        m |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        m |= MODE_STICKY
    return m


def unix_perm(mode: int) -> int:
    """Permission bits (with setuid/setgid/sticky) to ``chmod`` on restore."""
    p = mode & MODE_PERM
    if mode & MODE_SETUID:
        p |= stat.S_ISUID
    if mode & MODE_SETGID:
        p |= stat.S_ISGID
    if mode & MODE_STICKY:
        p |= stat.S_ISVTX
    return p


@dataclass
class Node:
    name: bytes
    type: str
    mode: int = 0
    mtime: int = 0
    atime: int = 0
    ctime: int = 0
    uid: int = 0
    gid: int = 0
    user: str = ""
    group: str = ""
    inode: int = 0
    device_id: int = 0
    size: int = 0
    links: int = 0
    linktarget: bytes | None = None
    xattrs: list[tuple[str, bytes]] = field(default_factory=list)
    device: int = 0
    content: list[bytes] | None = None
    subtree: bytes | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": quote(self.name), "type": self.type}
        if self.mode:
            d["mode"] = self.mode
        d["mtime"] = format_ns(self.mtime)
        d["atime"] = format_ns(self.atime)
        d["ctime"] = format_ns(self.ctime)
        d["uid"] = self.uid
        d["gid"] = self.gid
        if self.user:
            d["user"] = self.user
        if self.group:
            d["group"] = self.group
        if self.inode:
            d["inode"] = self.inode
        if self.device_id:
            d["device_id"] = self.device_id
        if self.size:
            d["size"] = self.size
        if self.links:
            d["links"] = self.links
        if self.linktarget is not None:
            d["linktarget"] = self.linktarget.decode("utf-8", "replace")
            try:
                self.linktarget.decode("utf-8")
            except UnicodeDecodeError:
                d["linktarget_raw"] = base64.b64encode(self.linktarget).decode()
        if self.xattrs:
            d["extended_attributes"] = [{"name": n, "value": base64.b64encode(v).decode()} for n, v in self.xattrs]
        d.update(self.extra)
        if self.device:
            d["device"] = self.device
        d["content"] = [c.hex() for c in self.content] if self.content is not None else None
        if self.subtree is not None:
            d["subtree"] = self.subtree.hex()
        if self.error:
            d["error"] = self.error
        return d

    def json_text(self) -> str:
        """``json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)``, built directly.

        A backup encodes every node of every tree it writes; skipping the dict and the generic
        encoder halves that cost. The output is the same text, so tree IDs do not change.
        """
        p = ['{"name":', _jstr(quote(self.name)), ',"type":', _jstr(self.type)]
        if self.mode:
            p += (',"mode":', str(self.mode))
        p += (',"mtime":"', format_ns(self.mtime), '","atime":"', format_ns(self.atime))
        p += ('","ctime":"', format_ns(self.ctime), '","uid":', str(self.uid), ',"gid":', str(self.gid))
        if self.user:
            p += (',"user":', _jstr(self.user))
        if self.group:
            p += (',"group":', _jstr(self.group))
        if self.inode:
            p += (',"inode":', str(self.inode))
        if self.device_id:
            p += (',"device_id":', str(self.device_id))
        if self.size:
            p += (',"size":', str(self.size))
        if self.links:
            p += (',"links":', str(self.links))
        if self.linktarget is not None or self.xattrs or self.extra:
            # rare fields: the generic path, for exactly to_json's text
            rare = {k: v for k, v in self.to_json().items() if k in _RARE or k not in _KNOWN}
            for k, v in rare.items():
                p += (",", _jstr(k), ":", json.dumps(v, separators=(",", ":"), ensure_ascii=False))
        if self.device:
            p += (',"device":', str(self.device))
        if self.content is None:
            p.append(',"content":null')
        elif self.content:
            p += (',"content":["', '","'.join([c.hex() for c in self.content]), '"]')
        else:
            p.append(',"content":[]')
        if self.subtree is not None:
            p += (',"subtree":"', self.subtree.hex(), '"')
        if self.error:
            p += (',"error":', _jstr(self.error))
        p.append("}")
        return "".join(p)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Node:
        get = d.get
        try:
            t = str(d["type"])
            raw_target = get("linktarget_raw")
            target: bytes | None = None
            if raw_target:
                target = base64.b64decode(raw_target)
            elif t == "symlink" and get("linktarget") is not None:
                target = str(d["linktarget"]).encode("utf-8")
            content = get("content")
            subtree = get("subtree")
            mtime, atime, ctime = get("mtime"), get("atime"), get("ctime")
            xattrs = get("extended_attributes")
            return cls(
                name=unquote(str(d["name"])),
                type=t,
                mode=int(get("mode") or 0),
                mtime=parse_ns(mtime) if mtime else 0,
                atime=(parse_ns(atime) if atime != mtime else parse_ns(mtime)) if atime else 0,
                ctime=parse_ns(ctime) if ctime else 0,
                uid=int(get("uid") or 0),
                gid=int(get("gid") or 0),
                user=str(get("user") or ""),
                group=str(get("group") or ""),
                inode=int(get("inode") or 0),
                device_id=int(get("device_id") or 0),
                size=int(get("size") or 0),
                links=int(get("links") or 0),
                linktarget=target,
                xattrs=[(str(x["name"]), base64.b64decode(x.get("value") or "")) for x in xattrs] if xattrs else [],
                device=int(get("device") or 0),
                content=[bytes.fromhex(c) for c in content] if content is not None else None,
                subtree=bytes.fromhex(subtree) if subtree else None,
                error=str(get("error") or ""),
                extra={} if d.keys() <= _KNOWN else {k: v for k, v in d.items() if k not in _KNOWN},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"invalid node {d.get('name')!r}: {e}") from e

    @property
    def display_name(self) -> str:
        return self.name.decode("utf-8", "surrogateescape")


__all__ = ["Node", "go_mode", "unix_perm"]
