"""``platform.compat``: the POSIX calls with Windows counterparts behave as the ``os`` calls they
replace, and no module of the package needs a POSIX-only module to import (the Windows agent
imports them all)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from e3backup.platform import compat

POSIX_ONLY = ("fcntl", "pwd", "grp", "termios", "resource", "posix")


def test_positional_reads_and_writes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | compat.O_BINARY | compat.O_CLOEXEC, 0o600)
    try:
        assert compat.pwrite(fd, b"hello world", 100) == 11
        assert compat.pread(fd, 5, 106) == b"world"
        assert compat.pread(fd, 50, 106) == b"world"  # short only at the end of the file
        a, b = bytearray(3), bytearray(4)
        assert compat.preadv(fd, [a, b], 100) == 7
        assert (bytes(a), bytes(b)) == (b"hel", b"lo w")
        os.lseek(fd, 106, os.SEEK_SET)
        view = memoryview(bytearray(10))
        assert compat.readinto(fd, view) == 5
        assert bytes(view[:5]) == b"world"
    finally:
        os.close(fd)


def test_owner_ids_are_this_process_ones_on_posix() -> None:
    assert compat.owner_ids() == (os.getuid(), os.getgid())
    assert compat.is_superuser() is (os.geteuid() == 0)


def test_every_module_imports_without_posix_only_modules() -> None:
    """What Windows lacks is made unimportable; every e3backup module must still import (the
    FUSE mount needs libfuse, which Windows lacks too: it is left out)."""
    src = Path(compat.__file__).parents[1]
    modules = sorted(
        ".".join(("e3backup", *p.relative_to(src).with_suffix("").parts)).removesuffix(".__init__")
        for p in src.rglob("*.py")
        if not {"mount", "migrations", "__main__"} & set(p.relative_to(src).with_suffix("").parts)
    )
    code = (
        "import importlib, sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in POSIX_ONLY if m != "posix")
        + "bad = []\n"
        + f"for m in {modules!r}:\n"
        + "    try:\n        importlib.import_module(m)\n"
        + "    except ImportError as e:\n        bad.append(f'{m}: {e}')\n"
        + "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == ""
