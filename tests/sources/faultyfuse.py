"""A FUSE file system serving one image file, ``disk.img``, that fails reads of chosen ranges.

Run as a process (``python faultyfuse.py IMAGE MOUNTPOINT OFFSET:LENGTH ...``); it prints
``ready`` once mounted and serves until ``fusermount -u``. Reads go straight through
(``direct_io``), so the kernel's page cache cannot hide or widen the failing ranges. The
``faulty_image`` context manager does all of that for a test.

``held_image`` serves a disk whose reads of one range *hang* (a dying disk, a dead network
volume) until the test releases them: the first read touching ``hold=OFFSET:LENGTH`` waits for a
byte on a FIFO the server opened read-write at start, so a release written before the read
arrives is kept in the pipe and nothing can race. The server is single-threaded: while a read
hangs, every read hangs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

NAME = "disk.img"


def serve(
    image: str, mountpoint: str, bad: list[tuple[int, int]], hold: tuple[str, int, int] | None = None
) -> None:
    import fuse  # fusepy; imported here so the test modules load without libfuse

    gate = os.open(hold[0], os.O_RDWR) if hold else -1  # O_RDWR on a FIFO never blocks
    held = [hold is not None]

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
            if held[0] and hold and offset < hold[1] + hold[2] and hold[1] < offset + size:
                os.read(gate, 1)  # hang here until the test releases the range
                held[0] = False
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


@contextlib.contextmanager
def held_image(image: Path, offset: int, length: int) -> Iterator[tuple[Path, Callable[[], None]]]:
    """Mount ``image`` behind FUSE with reads of ``[offset, offset + length)`` hanging until the
    returned ``release()`` is called (it is called on exit too); yields the file's path."""
    with tempfile.TemporaryDirectory(prefix="e3hold-") as d:
        fifo = os.path.join(d, "gate")
        os.mkfifo(fifo)
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        args = [sys.executable, __file__, str(image), mnt, f"hold={fifo}:{offset}:{length}"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        released: list[bool] = []

        def release() -> None:
            if not released:
                released.append(True)
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # the server holds a reader open
                try:
                    os.write(fd, b"x")
                finally:
                    os.close(fd)

        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"FUSE server did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
            yield Path(mnt) / NAME, release
        finally:
            with contextlib.suppress(OSError):
                release()
            subprocess.run(["fusermount", "-u", "-z", mnt], capture_output=True, check=False)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    hold_arg = next((a for a in sys.argv[3:] if a.startswith("hold=")), None)
    ranges = [tuple(int(x) for x in a.split(":")) for a in sys.argv[3:] if not a.startswith("hold=")]
    hold = None
    if hold_arg:
        path, off, n = hold_arg.removeprefix("hold=").rsplit(":", 2)
        hold = (path, int(off), int(n))
    serve(sys.argv[1], sys.argv[2], [(o, n) for o, n in ranges], hold)
