"""A FUSE file system serving one image file, ``disk.img``, that fails reads of chosen ranges.

Run as a process (``python faultyfuse.py IMAGE MOUNTPOINT OFFSET:LENGTH ...``); it prints
``ready`` once mounted and serves until ``fusermount -u``. Reads go straight through
(``direct_io``), so the kernel's page cache cannot hide or widen the failing ranges. The
``faulty_image`` context manager does all of that for a test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NAME = "disk.img"


def serve(image: str, mountpoint: str, bad: list[tuple[int, int]]) -> None:
    import fuse  # fusepy; imported here so the test modules load without libfuse

    class FaultyImage(fuse.Operations):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fd = os.open(image, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size

        def init(self, path: str) -> None:
            print("ready", flush=True)

        def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            if path == "/" + NAME:
                return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self.size}
            raise fuse.FuseOSError(errno.ENOENT)

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", NAME]

        def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
            if any(offset < o + n and o < offset + size for o, n in bad):
                raise fuse.FuseOSError(errno.EIO)
            return os.pread(self.fd, size, offset)

    fuse.FUSE(FaultyImage(), mountpoint, foreground=True, nothreads=True, ro=True, direct_io=True)


@contextlib.contextmanager
def faulty_image(image: Path, bad: list[tuple[int, int]]) -> Iterator[Path]:
    """Mount ``image`` behind FUSE with ``bad`` ranges failing with EIO; yields the file's path."""
    with tempfile.TemporaryDirectory(prefix="e3fuse-") as mnt:
        args = [sys.executable, __file__, str(image), mnt, *(f"{o}:{n}" for o, n in bad)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(
                    f"FUSE server did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
                )
            yield Path(mnt) / NAME
        finally:
            subprocess.run(["fusermount", "-u", mnt], capture_output=True, check=False)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    ranges = [tuple(int(x) for x in a.split(":")) for a in sys.argv[3:]]
    serve(sys.argv[1], sys.argv[2], [(o, n) for o, n in ranges])
