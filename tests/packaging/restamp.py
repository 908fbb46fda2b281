"""A copy of the single-file agent that says another version, without a second build.

Self-update needs a newer executable than the running one; building one more (1-4 min on these
cores) is the slowest thing the suite could do. The version an executable reports is its build
stamp, the module ``e3backup._build`` in the PYZ archive inside it (PyInstaller's format, read
with PyInstaller's own reader). The copy gets that one module compiled again with the new
version, compressed into the bytes the old entry took (zlib stops at the end of its stream; the
rest is zeros), so every offset in the archive and the ELF file stays as it was: everything but
the version is the session's build, byte for byte.
"""

from __future__ import annotations

import marshal
import shutil
import zlib
from pathlib import Path

BUILD_MODULE = "e3backup._build"


def restamped(exe: Path, dest: Path, version: str, prelude: str = "") -> Path:
    """A copy of ``exe`` at ``dest`` reporting ``version``; ``prelude``: code the stamp module runs
    first when imported (the self-update tests' version that crashes at start)."""
    from PyInstaller.archive.readers import CArchiveReader

    pkg = CArchiveReader(str(exe))
    pyz = pkg.open_embedded_archive("PYZ.pyz")
    _typecode, offset, length = pyz.toc[BUILD_MODULE]
    at = pyz._start_offset + offset
    with open(exe, "rb") as f:
        f.seek(at)
        old = marshal.loads(zlib.decompress(f.read(length)))
    build = dict(zip(old.co_consts[-2], old.co_consts[1:-2], strict=True))  # BUILD = {...}: values, then keys
    build["version"] = version
    if prelude:  # room for it: the commit and the build time go
        build = {k: build[k] for k in ("version", "build")}
    blob = zlib.compress(marshal.dumps(compile(f"{prelude}BUILD = {build!r}\n", old.co_filename, "exec")), 9)
    assert len(blob) <= length, f"the new stamp takes {len(blob)} bytes, the old one {length}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exe, dest)
    dest.chmod(0o755)
    with open(dest, "r+b") as f:
        f.seek(at)
        f.write(blob.ljust(length, b"\0"))
    return dest
