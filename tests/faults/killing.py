"""Kill a real e3backup process at a chosen crash point, then prove nothing was lost or left.

Shared by the CI kill tests (``test_kills.py``) and the long soak (``scripts/soak.py``). A
``World`` is a repository with files and image snapshots whose sources are kept per tag, so each
snapshot can be restored and compared with the bytes it was made from. ``kill_and_verify``:

1. runs the command with ``E3BACKUP_CRASH_AT`` (or prune's ``E3BACKUP_PRUNE_CRASH_AT``) set,
2. runs the next command (the same one, without the hook): it must succeed,
3. asserts: no temporary file and no lock left, ``e3backup check --read-data`` and
   ``restic check --read-data`` (with its lock, no ``--no-lock``) clean, and every snapshot
   restores (files, or the disk image) to the bytes it was made from.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from e3backup.repo import Repository
from e3backup.repo.check import Checker
from e3backup.repo.lock import list_locks
from e3backup.repo.prune import CRASH_ENV as PRUNE_CRASH_ENV
from e3backup.repo.prune import STEPS as PRUNE_STEPS
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.restore.image import ImageRestoreOptions, run_image_restore
from e3backup.store import LocalStore

PASSWORD = "correct horse battery staple"
FILES = 12
FILE_SIZES = [7_000 + 91_013 * i for i in range(FILES)]  # ~6 MiB: several 1 MiB packs
DISK_SIZE = 6 << 20
KINDS = ("files", "image", "prune")


@dataclass
class World:
    """A repository, its sources, and what every snapshot (by tag) was made from."""

    base: Path
    rng: random.Random
    seq: int = 0
    states: dict[str, Path] = field(default_factory=dict)  # tag -> copy of the source it saved

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def src(self) -> Path:
        return self.base / "src"

    @property
    def disk(self) -> Path:
        return self.base / "disk.img"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("E3BACKUP_")}
        return {**env, "E3BACKUP_PASSWORD": PASSWORD, "E3BACKUP_PACK_SIZE": "1", **extra}

    def e3(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "e3backup", "-r", str(self.repo), *args],
                           env=self.env(**env), capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"e3backup {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p

    # -- sources: a new state of the same shape each time, so crash points repeat --------------

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def next_files_state(self) -> str:
        self.src.mkdir(exist_ok=True)
        for i, size in enumerate(FILE_SIZES):
            (self.src / f"f{i:02d}").write_bytes(self._bytes(size))
            os.chmod(self.src / f"f{i:02d}", 0o600 + (i % 3) * 0o44)
        return self._tag("files", self.src)

    def next_disk_state(self) -> str:
        chunks = []
        for i in range(DISK_SIZE // (512 << 10)):  # half-MiB runs: random, zero or repeated
            kind = self.rng.randrange(3)
            chunks.append(self._bytes(512 << 10) if kind == 0 else bytes(512 << 10) if kind == 1
                          else bytes([i]) * (512 << 10))
        self.disk.write_bytes(b"".join(chunks))
        return self._tag("image", self.disk)

    def _tag(self, kind: str, what: Path) -> str:
        self.seq += 1
        tag = f"{kind}-{self.seq}"
        keep = self.base / "states" / tag
        keep.parent.mkdir(exist_ok=True)
        if what.is_dir():
            shutil.copytree(what, keep)
        else:
            shutil.copy2(what, keep)
        self.states[tag] = keep
        return tag

    # -- commands ------------------------------------------------------------------------------

    def command(self, kind: str) -> list[str]:
        """The command a kill case runs (after ``prepare``), as CLI arguments."""
        if kind == "files":
            return ["backup", str(self.src), "--tag", self._pending]
        if kind == "image":
            return ["image", "backup", str(self.disk), "--snapshot", "none", "--tag", self._pending]
        return ["forget", "--keep-last", "1", "--prune", "--max-unused", "0"]

    def prepare(self, kind: str) -> None:
        """A new source state for a backup; for prune, two more backups so it has work."""
        if kind == "files":
            self._pending = self.next_files_state()
        elif kind == "image":
            self._pending = self.next_disk_state()
        else:
            self.e3("backup", str(self.src), "--tag", self.next_files_state())
            self.e3("image", "backup", str(self.disk), "--snapshot", "none", "--tag", self.next_disk_state())

    _pending: str = ""

    def copy(self, base: Path, seed: int) -> World:
        shutil.copytree(self.base, base, symlinks=True)
        return World(base, random.Random(seed), self.seq,
                     {t: base / p.relative_to(self.base) for t, p in self.states.items()})


def make_world(base: Path, seed: int) -> World:
    """A repository with two files and two image snapshots."""
    w = World(base, random.Random(seed))
    base.mkdir(parents=True, exist_ok=True)
    w.e3("init")
    for _ in range(2):
        w.e3("backup", str(w.src), "--tag", w.next_files_state())
        w.e3("image", "backup", str(w.disk), "--snapshot", "none", "--tag", w.next_disk_state())
    return w


def crash_points(world: World, kind: str, scratch: Path) -> list[tuple[str, str]]:
    """Every (env var, point#n) the command reaches, learnt from a traced run on a copy."""
    w = world.copy(scratch, seed=0)
    w.prepare(kind)
    trace = scratch / "trace"
    w.e3(*w.command(kind), E3BACKUP_CRASH_TRACE=str(trace))
    seen: collections.Counter[str] = collections.Counter()
    points = []
    for name in trace.read_text().split():
        seen[name] += 1
        points.append(("E3BACKUP_CRASH_AT", f"{name}#{seen[name]}"))
    if kind == "prune":
        points += [(PRUNE_CRASH_ENV, step) for step in PRUNE_STEPS]
    shutil.rmtree(scratch)
    return points


@dataclass
class Outcome:
    kind: str
    point: str
    killed: bool
    snapshots: int


def kill_and_verify(
    world: World, kind: str, env_var: str, point: str, work: Path, verified: set[str] | None = None
) -> Outcome:
    """Steps 1-3 of the module docstring on ``world`` (changed in place). ``verified``: IDs of
    snapshots restored before, skipped after a backup (which never touches old snapshots; the
    checks read every pack anyway) and updated; after a prune every snapshot is restored."""
    world.prepare(kind)
    args = world.command(kind)
    p = world.e3(*args, check=False, **{env_var: point})
    killed = p.returncode == -signal.SIGKILL
    assert killed or p.returncode == 0, f"{kind} at {point}: exit {p.returncode}\n{p.stderr}"
    if kind in ("files", "image"):
        args[-1] = world._tag(kind, world.src if kind == "files" else world.disk)  # same bytes, new tag
    world.e3(*args)  # the next command: removes the dead lock and temporaries, completes
    n = verify(world, work, verified if kind != "prune" else None)
    return Outcome(kind, point, killed, n)


def verify(world: World, work: Path, skip: set[str] | None = None) -> int:
    """Step 3; the restores and our check run in this process (a process each would triple the
    time), restic's check as its own process."""
    left = LocalStore(world.repo).temporaries()
    assert not left, f"temporary files left: {[t.path for t in left]}"
    repo = Repository.open(LocalStore(world.repo), PASSWORD.encode())
    assert list_locks(repo.store, repo.key) == [], "a lock was left"
    r = subprocess.run(["restic", "-r", str(world.repo), "--no-cache", "check", "--read-data"],
                       env={**os.environ, "RESTIC_PASSWORD": PASSWORD}, capture_output=True, text=True)
    assert r.returncode == 0, f"restic check --read-data:\n{r.stdout}\n{r.stderr}"
    result = Checker(repo).run("100%")
    assert result.ok, f"e3backup check --read-data: {[p.message for p in result.errors]}"
    snaps = repo.snapshots()
    work.mkdir(parents=True, exist_ok=True)
    for s in snaps:
        if skip is not None and s.id in skip:
            continue
        (tag,) = [t for t in s.tags if t.startswith(("files-", "image-"))]
        want = world.states[tag]
        out = work / f"restore-{s.id[:12]}"
        if tag.startswith("files-"):
            run_restore(repo, RestoreOptions(str(out), snapshot=s.id))
            got = out / s.paths[0].lstrip("/")  # the template's path in copied worlds
            assert _files(got) == _files(want), f"snapshot {s.short_id} ({tag}) restores other bytes"
            shutil.rmtree(out)
        else:
            run_image_restore(repo, ImageRestoreOptions(str(out), snapshot=s.id))
            assert out.read_bytes() == want.read_bytes(), f"image snapshot {s.short_id} ({tag}) differs"
            out.unlink()
        if skip is not None:
            skip.add(s.id)
    repo.close()
    return len(snaps)


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mode & 0o7777) for p in sorted(root.iterdir())}


__all__ = ["KINDS", "Outcome", "World", "crash_points", "kill_and_verify", "make_world", "verify"]
