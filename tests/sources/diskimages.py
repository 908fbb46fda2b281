"""Builders for real disk images (ext2/3/4, NTFS, GPT), reusable by the engine tests.

Everything here runs the real tools: ``mkfs.ext4 -d``, ``mkntfs``/``ntfscp``, ``sgdisk``,
``losetup``/``mount``. Functions that need root say so; the fixtures in ``conftest.py`` wrap them.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from e3backup.sources.device import open_device
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.read import read_layout

MiB = 1 << 20


def run(*args: str | os.PathLike[str], input: bytes | None = None) -> str:
    """Run a tool; raise with its stderr when it fails."""
    p = subprocess.run([os.fspath(a) for a in args], input=input, capture_output=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p.stdout.decode(errors="replace")


def random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def sample_files(seed: int = 1) -> dict[str, bytes]:
    """A few files of different sizes (some fragment-friendly, one empty, one tiny)."""
    return {
        "small.txt": b"hello from e3backup\n",
        "empty": b"",
        "a.bin": random_bytes(300_000, seed),
        "dir/b.bin": random_bytes(1_500_000, seed + 1),
        "dir/sub/c.bin": random_bytes(70_000, seed + 2),
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


# ext2/3/4 ---------------------------------------------------------------------------------------


def make_ext(
    path: Path,
    size: int,
    files: dict[str, bytes],
    mkfs: str = "mkfs.ext4",
    options: tuple[str, ...] = (),
    offset: int = 0,
) -> None:
    """An ext file system of ``size`` bytes at ``offset`` of ``path``, populated with ``-d``."""
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(offset + size)
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp), files)
        extra = ("-E", f"offset={offset}") if offset else ()
        run(mkfs, "-q", "-F", *options, *extra, "-d", tmp, path, f"{size // 1024}k")


def dumpe2fs_used_blocks(path: Path | str) -> tuple[int, ExtentList]:
    """(block size, used blocks) as dumpe2fs sees them: every block minus its free lists."""
    head = run("dumpe2fs", "-h", path)
    bs = int(re.search(r"^Block size:\s+(\d+)", head, re.M).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"^Block count:\s+(\d+)", head, re.M).group(1))  # type: ignore[union-attr]
    first = int(re.search(r"^First block:\s+(\d+)", head, re.M).group(1))  # type: ignore[union-attr]
    m_cluster = re.search(r"^Cluster size:\s+(\d+)", head, re.M)
    ratio = int(m_cluster.group(1)) // bs if m_cluster else 1  # bigalloc lists ranges by cluster start
    free: list[tuple[int, int]] = []
    for line in run("dumpe2fs", path).splitlines():
        m = re.match(r"^\s+Free blocks: (.*)$", line)
        if not m or not m.group(1).strip():
            continue
        for part in m.group(1).split(","):
            a, _, b = part.strip().partition("-")
            free.append((int(a), int(b or a) + ratio - int(a)))
    used = ExtentList([(first, count - first)]) - ExtentList(free)
    return bs, used


def debugfs_blocks(path: Path | str, name: str) -> ExtentList:
    """Data blocks of file ``/name`` (``debugfs -R 'blocks …'``)."""
    out = run("debugfs", "-R", f"blocks /{name}", path)
    return ExtentList((int(b), 1) for b in out.split())


def debugfs_dump(path: Path | str, name: str, dest: Path) -> bytes:
    run("debugfs", "-R", f"dump /{name} {dest}", path)
    return dest.read_bytes()


# NTFS -------------------------------------------------------------------------------------------


def make_ntfs(path: Path, size: int, files: dict[str, bytes], cluster: int = 4096, start_sector: int = 0) -> None:
    """An NTFS of ``size`` bytes in file ``path`` (mkntfs -Q), files copied in with ntfscp."""
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(size)
    run(
        "mkntfs",
        "-F",
        "-Q",
        "-q",
        "-c",
        str(cluster),
        "-p",
        str(start_sector),
        "-H",
        "255",
        "-S",
        "63",
        "-L",
        "e3test",
        path,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            parts = name.split("/")
            if len(parts) > 1:
                continue  # ntfscp cannot make directories; nested files go in via a mount
            src = Path(tmp) / parts[-1]
            src.write_bytes(data)
            run("ntfscp", "-f", path, src, name)


def ntfs_bitmap(path: Path | str) -> bytes:
    """The raw ``$Bitmap`` data as ntfs-3g reads it."""
    p = subprocess.run(["ntfscat", "-f", os.fspath(path), "$Bitmap"], capture_output=True, check=True)
    return p.stdout


def ntfs_file_clusters(path: Path | str, name: str) -> ExtentList:
    """Clusters of the file's unnamed data, from ``ntfsinfo -v``'s run list."""
    out = run("ntfsinfo", "-v", "-f", "-F", name, path)
    runs = re.findall(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s*$", out, re.M)
    return ExtentList((int(lcn, 16), int(n, 16)) for _vcn, lcn, n in runs)


def ntfsinfo_counts(path: Path | str) -> tuple[int, int]:
    """(clusters in the volume, free clusters) as ``ntfsinfo -m`` reports them."""
    out = run("ntfsinfo", "-m", "-f", path)
    total = int(re.search(r"Volume Size in Clusters: (\d+)", out).group(1))  # type: ignore[union-attr]
    free = int(re.search(r"Free Clusters: (\d+)", out).group(1))  # type: ignore[union-attr]
    return total, free


def ntfscat(path: Path | str, name: str) -> bytes:
    p = subprocess.run(["ntfscat", "-f", os.fspath(path), name], capture_output=True, check=True)
    return p.stdout


# loop devices -----------------------------------------------------------------------------------


@contextlib.contextmanager
def loop_device(path: Path | str, offset: int = 0, size: int | None = None, ro: bool = False) -> Iterator[str]:
    """Attach ``path`` (or a window of it) to a free loop device; always detached afterwards."""
    args = ["losetup", "-f", "--show"]
    if offset:
        args += ["-o", str(offset)]
    if size is not None:
        args += ["--sizelimit", str(size)]
    if ro:
        args.append("-r")
    dev = run(*args, path).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@contextlib.contextmanager
def mounted(dev: str, fstype: str | None = None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="e3mnt-") as mnt:
        run("mount", *(["-t", fstype] if fstype else []), dev, mnt)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=False)


# the GPT disk -----------------------------------------------------------------------------------

GPT_LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_MS_BASIC = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"


@dataclass
class GptDisk:
    """A GPT disk image: partition 1 ext4, partition 2 NTFS, 3 an unknown (random) file system."""

    path: Path
    size: int
    ext4_start: int
    ext4_size: int
    ntfs_start: int
    ntfs_size: int
    raw_start: int
    raw_size: int
    ext4_files: dict[str, bytes] = field(default_factory=dict)
    ntfs_files: dict[str, bytes] = field(default_factory=dict)
    stale: dict[str, bytes] = field(default_factory=dict)
    """Deleted files' contents, still in free space (marker-prefixed random data)."""


def stale_data(n: int, seed: int) -> bytes:
    """Data that is easy to find on disk: every 512-byte sector starts with a marker."""
    body = bytearray(random_bytes(n, seed))
    for off in range(0, n, 512):
        body[off : off + 16] = b"E3STALE-%08d" % seed
    return bytes(body)


def build_gpt_disk(workdir: Path, size: int = 256 * MiB, with_stale: bool = True) -> GptDisk:
    """Build the test disk. With ``with_stale`` (root: loop + mount) files are written and deleted
    through the kernel so free space of both file systems holds stale data."""
    path = workdir / "disk.img"
    with open(path, "wb") as f:
        f.truncate(size)
    run("sgdisk", "-Z", path)
    run(
        "sgdisk",
        "-n",
        "1:2048:+112M",
        "-t",
        f"1:{GPT_LINUX_FS}",
        "-c",
        "1:root",
        "-n",
        "2:0:+96M",
        "-t",
        f"2:{GPT_MS_BASIC}",
        "-c",
        "2:data",
        "-n",
        "3:0:+16M",
        "-t",
        "3:8300",
        "-c",
        "3:mystery",
        path,
    )
    info = run("sgdisk", "-p", path)
    rows = {int(m[0]): (int(m[1]), int(m[2])) for m in re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)", info, re.M)}
    (s1, e1), (s2, e2), (s3, e3) = rows[1], rows[2], rows[3]
    disk = GptDisk(
        path,
        size,
        s1 * 512,
        (e1 - s1 + 1) * 512,
        s2 * 512,
        (e2 - s2 + 1) * 512,
        s3 * 512,
        (e3 - s3 + 1) * 512,
    )
    disk.ext4_files = sample_files(1)
    make_ext(path, disk.ext4_size, disk.ext4_files, options=("-b", "4096", "-g", "4096"), offset=disk.ext4_start)
    ntfs_img = workdir / "ntfs.part"
    disk.ntfs_files = {k: v for k, v in sample_files(7).items() if "/" not in k}
    make_ntfs(ntfs_img, disk.ntfs_size, disk.ntfs_files, start_sector=s2)
    run(
        "dd",
        f"if={ntfs_img}",
        f"of={path}",
        "bs=1M",
        f"seek={disk.ntfs_start}",
        "oflag=seek_bytes",
        "conv=notrunc,sparse",
        "status=none",
    )
    ntfs_img.unlink()
    with open(path, "r+b") as f:  # partition 3: an unrecognised file system full of data
        f.seek(disk.raw_start)
        f.write(random_bytes(disk.raw_size // 4, 99))
    if with_stale:
        _add_stale(disk)
    return disk


def _add_stale(disk: GptDisk) -> None:
    """Write files through the kernel drivers, sync, delete them: their data stays in free space."""
    for fstype, start, size, seed in (
        ("ext4", disk.ext4_start, disk.ext4_size, 11),
        ("ntfs-3g", disk.ntfs_start, disk.ntfs_size, 12),
    ):
        with loop_device(disk.path, start, size) as dev, mounted(dev, fstype) as mnt:
            doomed = stale_data(2 * MiB, seed)
            (mnt / "doomed.bin").write_bytes(doomed)
            os.sync()
            kept = random_bytes(200_000, seed + 100)
            (mnt / "kept.bin").write_bytes(kept)
            (mnt / "doomed.bin").unlink()
            os.sync()
            disk.stale[fstype] = doomed
            (disk.ext4_files if fstype == "ext4" else disk.ntfs_files)["kept.bin"] = kept


def copy_planned(src: Path, dest: Path, extents: ExtentList, size: int) -> None:
    """A sparse copy of ``src`` holding only ``extents``: what a restore of the image gives back."""
    with open(src, "rb") as fi, open(dest, "wb") as fo:
        fo.truncate(size)
        for e in extents:
            fi.seek(e.offset)
            fo.seek(e.offset)
            left = e.length
            while left:
                block = fi.read(min(left, 4 * MiB))
                if not block:
                    break
                fo.write(block)
                left -= len(block)


# a small GPT disk for change-tracking tests ---------------------------------------------------------


@contextlib.contextmanager
def fs_mount(dev: str, kind: str, ro: bool = False) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="e3ct-") as mnt:
        if kind == "ntfs":
            run("ntfs-3g", *(["-o", "ro"] if ro else []), dev, mnt)
        else:
            run("mount", "-t", "ext4", *(["-o", "ro,noload"] if ro else []), dev, mnt)
        try:
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=True)


class TwoFsDisk:
    """A GPT disk image of ``size`` bytes: partition 1 (30 MiB) for ext4, partition 2 (38 MiB) for NTFS."""

    def __init__(self, path: Path, size: int = 72 * MiB) -> None:
        self.path = path
        with open(path, "wb") as f:
            f.truncate(size)
        run("sgdisk", "-Z", path)
        run("sgdisk", "-n", "1:2048:+30M", "-t", f"1:{GPT_LINUX_FS}", "-n", "2:0:+38M", "-t", f"2:{GPT_MS_BASIC}", path)
        with open_device(path) as dev:
            layout = read_layout(dev)
        self.parts = {p.index: (p.start, p.size) for p in layout.partitions}

    def make_filesystems(self, ext4_inodes: int = 6000) -> None:
        with self.partition(1) as dev:
            opts = ("-b", "4096", "-N", str(ext4_inodes), "-E", "lazy_itable_init=0,lazy_journal_init=0")
            run("mkfs.ext4", "-q", "-F", *opts, dev)
        with self.partition(2) as dev:
            run("mkntfs", "-F", "-Q", "-q", "-c", "4096", dev)

    @contextlib.contextmanager
    def partition(self, index: int, image: Path | None = None, ro: bool = False) -> Iterator[str]:
        start, size = self.parts[index]
        with loop_device(image or self.path, start, size, ro=ro) as dev:
            yield dev


__all__ = [
    "GptDisk",
    "MiB",
    "TwoFsDisk",
    "build_gpt_disk",
    "copy_planned",
    "debugfs_blocks",
    "debugfs_dump",
    "dumpe2fs_used_blocks",
    "fs_mount",
    "loop_device",
    "make_ext",
    "make_ntfs",
    "mounted",
    "ntfs_bitmap",
    "ntfs_file_clusters",
    "ntfscat",
    "ntfsinfo_counts",
    "random_bytes",
    "run",
    "sample_files",
    "stale_data",
]
