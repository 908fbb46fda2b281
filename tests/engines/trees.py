"""Build realistic source trees and compare restored trees with them."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_tree(root: Path, big: int = 3_000_000) -> Path:
    """A tree with the cases a restore gets wrong: modes, times, links, holes, odd names."""
    src = root / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    (src / "a.txt").write_text("alpha\n" * 1000)
    (src / "sub" / "b.bin").write_bytes(os.urandom(big))
    (src / "sub" / "deeper" / "c.txt").write_text("gamma")
    (src / "empty").write_bytes(b"")
    (src / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "exec.sh", 0o755)
    (src / "secret").write_text("s")
    os.chmod(src / "secret", 0o600)
    (src / "setuid").write_text("x")
    os.chmod(src / "setuid", 0o4755)
    os.link(src / "a.txt", src / "sub" / "a-hardlink")
    os.symlink("a.txt", src / "link")
    os.symlink("/nonexistent/target", src / "dangling")
    os.mkfifo(src / "fifo")
    with open(src / "sparse", "wb") as f:
        f.seek(20 * 1024 * 1024)
        f.write(b"end")
    with open(src / "sparse-tail", "wb") as f:  # data, then a hole to the end: only the size says so
        f.write(b"start")
        f.truncate(12 * 1024 * 1024)
    (src / os.fsdecode(b"non-utf8-\xff\xfe")).write_text("latin")
    (src / 'we"ird\\name').write_text("q")
    (src / "ünïcödé 日本").write_text("u")
    try:
        os.setxattr(src / "a.txt", "user.e3backup", b"xattr-value")
    except OSError:
        pass
    if os.geteuid() == 0:
        os.mknod(src / "chardev", stat.S_IFCHR | 0o620, os.makedev(1, 3))
        os.chown(src / "secret", 1234, 5678)
        os.lchown(src / "link", 4321, 8765)
    for i, p in enumerate(sorted(src.rglob("*"), reverse=True)):
        if not p.is_symlink():
            os.utime(p, ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_987_654_321 + i * 1000))
    os.utime(src, ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_002))
    return src


def describe(root: Path, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything a restore must reproduce, per relative path."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(p, os.fsencode(root)))
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            entry: list[object] = [kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if times and not stat.S_ISLNK(st.st_mode):
                entry.append(st.st_mtime_ns)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    entry.append(f.read())
                if st.st_nlink > 1:
                    entry.append(("hardlink-group", inodes.setdefault(st.st_ino, rel)))
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(p))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry.append(st.st_rdev)
            out[rel] = tuple(entry)
    return out


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512
