"""The proof of change tracking: randomised rounds on a GPT disk with an ext4 and an NTFS partition.

Between two backups a random mix of operations runs through the kernel's ext4 and ntfs-3g:
create, append, overwrite in place, truncate (shrink, and extend: sparse), delete, rename, hard
link, sparse files, bursts of small files, rewrites of one large fragmented file, directory moves.
Each round then does what an incremental does: scan the file systems, build the change map,
decide every chunk (read / reuse the parent's / zero) and apply the decisions to the image of the
previous round. After every round the image must equal, on every planned byte, the disk as it is
now (what a full backup would store) and be zero elsewhere; its partitions must pass
``e2fsck -fn`` and ``ntfsfix -n``, and every file, mounted from the image, must equal the source
at backup time. The rounds must also have read well under the whole plan (else nothing is shown).

``E3_CHANGETRACK_ROUNDS`` sets the number of rounds (default 100, each round changes both file
systems); ``E3_CHANGETRACK_SEED`` the seed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from e3backup.sources.changemap import ChunkDecisions, decide_chunks
from e3backup.sources.changetrack import DiskTracking, Grid, Method, TrackingState, track_disk
from e3backup.sources.device import open_device
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout
from e3backup.sources.layout.read import read_layout
from e3backup.sources.plan import PlanMode, build_read_plan
from e3backup.sources.stored_image import ParentImage

from .diskimages import MiB, TwoFsDisk, fs_mount, run

ROUNDS = int(os.environ.get("E3_CHANGETRACK_ROUNDS", "100"))
FULL_CHECK_EVERY = 25  # rounds between reads of every file from the image (and the last round)
SAMPLE = 30  # unchanged files read back from the image on the other rounds
SEED = int(os.environ.get("E3_CHANGETRACK_SEED", "20261203"))
CHUNK = 64 * 1024
DISK = 72 * MiB
Model = dict[str, tuple[int, str]]


class Mutator:
    """Random file-system operations under one mount point."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng = root, rng
        self.files: list[Path] = []
        self.dirs: list[Path] = []
        for d, dirnames, filenames in os.walk(root):
            dirnames[:] = [n for n in dirnames if n not in ("lost+found", "System Volume Information")]
            self.dirs.append(Path(d))
            self.files += [Path(d) / n for n in filenames if n != "big.bin"]

    def data(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def pick_file(self) -> Path | None:
        alive = [f for f in self.rng.sample(self.files, min(5, len(self.files))) if f.is_file()]
        return alive[0] if alive else None

    def pick_dir(self) -> Path:
        alive = [d for d in self.rng.sample(self.dirs, min(5, len(self.dirs))) if d.is_dir()]
        return alive[0] if alive else self.root

    def new_name(self) -> Path:
        return self.pick_dir() / f"f{self.rng.getrandbits(40):x}"

    def run(self, count: int) -> list[str]:
        """``count`` random operations; a file system two thirds full or more mostly shrinks (a long
        soak would fill it), and a write that meets a full file system stays as written."""
        st = os.statvfs(self.root)
        ops = [self.rng.choice(SHRINK if st.f_bavail < st.f_blocks / 3 else OPS) for _ in range(count)]
        for op in ops:
            try:
                getattr(self, op)()
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
        return ops

    def create(self) -> None:
        p = self.new_name()
        p.write_bytes(self.data(self.rng.choice([0, 10, 700, 5000, 70_000, 300_000])))
        self.files.append(p)

    def append(self) -> None:
        if (f := self.pick_file()) is not None:
            with open(f, "ab") as fh:
                fh.write(self.data(self.rng.randint(1, 100_000)))

    def overwrite(self) -> None:
        if (f := self.pick_file()) is not None and (size := f.stat().st_size):
            off = self.rng.randrange(size)
            with open(f, "r+b") as fh:
                fh.seek(off)
                fh.write(self.data(min(size - off, self.rng.randint(1, 20_000))))

    def truncate(self) -> None:
        if (f := self.pick_file()) is not None:
            size = f.stat().st_size
            os.truncate(f, self.rng.choice([size // 2, size + self.rng.randint(1, 3 * MiB)]))

    def delete(self) -> None:
        if (f := self.pick_file()) is not None:
            f.unlink()

    def rename(self) -> None:
        if (f := self.pick_file()) is not None:
            target = self.new_name()
            f.rename(target)
            self.files.append(target)

    def hardlink(self) -> None:
        if (f := self.pick_file()) is not None:
            target = self.new_name()
            os.link(f, target)
            self.files.append(target)

    def sparse(self) -> None:
        p = self.new_name()
        with open(p, "wb") as fh:
            for _ in range(3):
                fh.seek(self.rng.randint(0, 2 * MiB))
                fh.write(self.data(self.rng.randint(1, 40_000)))
        self.files.append(p)

    def burst(self) -> None:
        d = self.pick_dir()
        for _ in range(40):
            p = d / f"s{self.rng.getrandbits(40):x}"
            p.write_bytes(self.data(self.rng.randint(0, 3000)))
            self.files.append(p)

    def fragmented(self) -> None:
        big = self.root / "big.bin"
        size = big.stat().st_size
        with open(big, "r+b") as fh:
            if self.rng.random() < 0.7:
                fh.seek(self.rng.randrange(size))
                fh.write(self.data(self.rng.randint(1, 200_000)))
            else:
                fh.seek(0, 2)
                fh.write(self.data(self.rng.randint(1, 100_000)))

    def dirmove(self) -> None:
        src, dst = self.pick_dir(), self.pick_dir()
        if src == self.root or src in dst.parents or src == dst:
            return
        target = dst / f"d{self.rng.getrandbits(32):x}"
        src.rename(target)
        self.dirs.append(target)

    def mkdir(self) -> None:
        d = self.pick_dir() / f"d{self.rng.getrandbits(32):x}"
        d.mkdir()
        self.dirs.append(d)


SHRINK = ["delete", "delete", "delete", "truncate", "overwrite", "rename"]
OPS = [
    "create", "append", "overwrite", "overwrite", "truncate", "delete", "rename", "hardlink",
    "sparse", "burst", "fragmented", "fragmented", "dirmove", "mkdir",
]  # fmt: skip


def populate(root: Path, rng: random.Random, small_files: int) -> None:
    """Thousands of small files in nested directories and one large, fragmented file."""
    dirs = [root]
    for i in range(30):
        d = rng.choice(dirs) / f"dir{i}"
        d.mkdir()
        dirs.append(d)
    with open(root / "big.bin", "wb") as big:
        for i in range(small_files):
            (rng.choice(dirs) / f"file{i}").write_bytes(rng.randbytes(rng.randint(0, 4000)))
            if i % 25 == 0:  # interleaved with the small files: the big one fragments
                big.write(rng.randbytes(48 * 1024))
                big.flush()
                os.fsync(big.fileno())


def _walk(root: Path) -> Iterator[Path]:
    for d, dirnames, filenames in os.walk(root):
        dirnames[:] = [n for n in dirnames if n not in ("lost+found", "System Volume Information")]
        yield from (Path(d) / n for n in filenames)


def _digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def source_model(root: Path, cache: dict[tuple[int, ...], tuple[int, str]]) -> Model:
    """Every file's (size, SHA-256); unchanged files (same inode, size and times) hashed once."""
    out: Model = {}
    for p in _walk(root):
        st = p.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in cache:
            cache[key] = _digest(p)
        out[str(p.relative_to(root))] = cache[key]
    return out


def check_files(root: Path, want: Model, names: list[str]) -> None:
    """The image holds exactly the source's file names, and ``names`` have the source's bytes."""
    assert sorted(str(p.relative_to(root)) for p in _walk(root)) == sorted(want)
    for name in names:
        assert _digest(root / name) == want[name], name


class Backup(NamedTuple):
    """What one round's backup recorded: the parent of the next round."""

    layout: DiskLayout
    plan: ExtentList
    tracking: DiskTracking
    state: TrackingState | None = None  # as stored: with the digests of the chunks read


def stored_state(backup: Backup, merged: Path, read: ExtentList) -> Backup:
    """What the engine stores: the chunks read get their metadata digest from the stored bytes.
    Every stored digest must then describe the stored (merged) chunk: the reuse rule's premise."""
    meta = backup.tracking.meta
    assert meta is not None
    image = merged.read_bytes()
    digests = {}
    for i in read.chunk_indexes(1):
        if (d := meta.digest_chunk(i, image[i * CHUNK : (i + 1) * CHUNK])) is not None:
            digests[i] = d
    state = backup.tracking.with_read_digests(digests)
    for i, d in state.meta_chunks.items():
        assert meta.digest_chunk(i, image[i * CHUNK : (i + 1) * CHUNK]) == d, f"chunk {i}: stale digest"
    return backup._replace(state=state)


def plan_mask(extents: ExtentList, size: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    for e in extents:
        mask[e.offset : e.end] = True
    return mask


def apply_decisions(merged: Path, current: Path, plan: ExtentList, read: ExtentList, zero: ExtentList) -> None:
    """What a restore of the incremental gives: read chunks from the disk now (planned bytes),
    zero chunks zero, reused chunks as they were."""
    with open(current, "rb") as src, open(merged, "r+b") as dst:
        for runs, from_disk in ((read, True), (zero, False)):
            for r in runs:
                start, end = r.offset * CHUNK, min(r.end * CHUNK, DISK)
                dst.seek(start)
                dst.write(bytes(end - start))
                if from_disk:
                    for piece in plan & ExtentList([(start, end - start)]):
                        src.seek(piece.offset)
                        dst.seek(piece.offset)
                        dst.write(src.read(piece.length))


def check_image(disk: TwoFsDisk, merged: Path, models: dict[int, Model], names: dict[int, list[str]]) -> None:
    with disk.partition(1, merged, ro=True) as dev:
        run("e2fsck", "-fn", dev)
        with fs_mount(dev, "ext4", ro=True) as mnt:
            check_files(mnt, models[1], names[1])
    with disk.partition(2, merged, ro=True) as dev:
        run("ntfsfix", "-n", dev)
        with fs_mount(dev, "ntfs", ro=True) as mnt:
            check_files(mnt, models[2], names[2])


def files_to_check(rng: random.Random, model: Model, before: Model, everything: bool) -> list[str]:
    """Every file on a full-check round; else every file new or changed since the last round plus
    a random sample of the others (the byte comparison of the whole image covers them too)."""
    if everything:
        return sorted(model)
    changed = [n for n, v in model.items() if before.get(n) != v]
    same = sorted(set(model) - set(changed))
    return changed + rng.sample(same, min(SAMPLE, len(same)))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mount)")
@pytest.mark.timeout(max(600, 12 * ROUNDS))  # ~1 s a round on 2 idle cores; 4 s seen under load 20
def test_randomised_rounds_give_the_image_a_full_backup_would(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    disk = TwoFsDisk(tmp_path / "disk.img", DISK)
    disk.make_filesystems()
    for index, kind, count in ((1, "ext4", 1500), (2, "ntfs", 400)):
        with disk.partition(index) as dev, fs_mount(dev, kind) as mnt:
            populate(mnt, rng, count)
    merged = tmp_path / "merged.img"

    def scan(parent: Backup | None, rnd: int = 0) -> tuple[Backup, ChunkDecisions | None]:
        # Odd rounds record a reference time an hour ahead, which switches ext4's ctime guard off
        # for the next round: the digests alone must find every change then. Even rounds run as
        # the product does (the guard only adds inodes).
        now = time.time() + (3600 if rnd % 2 else 0)
        with open_device(disk.path) as dev:
            layout = read_layout(dev)
            plan = build_read_plan(dev, layout, PlanMode.USED).extents
            grid = Grid(CHUNK, plan)
            if parent is None:
                tracking = track_disk(dev, layout, None, "no parent image", now, grid=grid)
                return Backup(layout, plan, tracking), None
            tracking = track_disk(dev, layout, parent.state, None, now, grid=grid)
            image = ParentImage(DISK, CHUNK, parent.plan, parent.layout)
            return Backup(layout, plan, tracking), decide_chunks(CHUNK, DISK, plan, layout, tracking.change_map, image)

    parent, _ = scan(None)
    merged.write_bytes(b"")
    os.truncate(merged, DISK)
    apply_decisions(merged, disk.path, parent.plan, parent.plan.chunk_ranges(CHUNK), ExtentList())
    parent = stored_state(parent, merged, parent.plan.chunk_ranges(CHUNK))
    read_chunks = planned_chunks = 0
    caches: dict[int, dict[tuple[int, ...], tuple[int, str]]] = {1: {}, 2: {}}
    models: dict[int, Model] = {1: {}, 2: {}}
    for rnd in range(ROUNDS):
        before = models
        models, names = {}, {}
        for index, kind in ((1, "ext4"), (2, "ntfs")):
            with disk.partition(index) as dev, fs_mount(dev, kind) as mnt:
                Mutator(mnt, rng).run(rng.randint(1, 4))
                models[index] = source_model(mnt, caches[index])
            everything = rnd % FULL_CHECK_EVERY == 0 or rnd == ROUNDS - 1
            names[index] = files_to_check(rng, models[index], before[index], everything)
        current, decisions = scan(parent, rnd)
        assert decisions is not None and decisions.ignored_reason is None
        methods = [p.method for p in current.tracking.partitions]
        assert methods == [Method.EXT4_INODES, Method.NTFS_MFT], (rnd, current.tracking)
        apply_decisions(merged, disk.path, current.plan, decisions.read, decisions.zero)
        current = stored_state(current, merged, decisions.read)
        image = np.fromfile(merged, dtype=np.uint8)
        now = np.fromfile(disk.path, dtype=np.uint8)
        mask = plan_mask(current.plan, DISK)
        bad = np.flatnonzero((image != now) & mask)
        assert not len(bad), f"round {rnd}: {len(bad)} planned bytes differ from the disk, first at {bad[0]}"
        assert not image[~mask].any(), f"round {rnd}: unplanned bytes are not zero"
        check_image(disk, merged, models, names)
        if rnd:  # round 0 re-reads every file populated within the ctime guard's two seconds
            read_chunks += decisions.read.total_bytes
            planned_chunks += current.plan.chunk_ranges(CHUNK).total_bytes
        parent = current
    print(f"change tracking read {read_chunks} of {planned_chunks} planned chunks over rounds 1-{ROUNDS - 1}")
    if ROUNDS >= 10:  # a handful of rounds can be dominated by one burst of writes
        assert read_chunks < planned_chunks * 0.8, f"tracking read {read_chunks} of {planned_chunks} planned chunks"
