"""The long fault soak of issue #28: many SIGKILLs per command and random byte flips.

    .venv/bin/python scripts/soak.py [--kills 50] [--flips 200] [--per-world 10] [--seed N]

Kills: for each of files backup, image backup and prune, ``--kills`` runs killed at a crash point
drawn at random from the points the command reaches (``tests/faults/killing.py``: after each, the
next command succeeds, nothing is left behind, our check and ``restic check --read-data`` pass,
and every snapshot restores to its bytes); a fresh repository every ``--per-world`` kills keeps
the checks' reading bounded. Flips: one random byte of one random repository file is flipped,
then our ``check --read-data`` must fail naming the file, unless nothing the format protects was
hit (a key file's unauthenticated JSON), and no snapshot may restore wrong bytes: each restore
either gives the right bytes or fails. The byte is flipped back before the next one.
Prints one JSON line per case and a summary (recorded in docs/faults.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.killing import KINDS, PASSWORD, World, crash_points, kill_and_verify, make_world

from e3backup.errors import E3Error
from e3backup.repo import Repository
from e3backup.repo.check import Checker
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.restore.image import ImageRestoreOptions, run_image_restore
from e3backup.store import LocalStore


def soak_kills(base: Path, kind: str, kills: int, per_world: int, rng: random.Random) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    done = 0
    while done < kills:
        world_dir = base / f"{kind}-{done}"
        world = make_world(world_dir / "world", rng.randrange(1 << 32))
        points = crash_points(world, kind, world_dir / "trace")
        verified: set[str] = set()
        for _ in range(min(per_world, kills - done)):
            env_var, point = rng.choice(points)
            t = time.monotonic()
            out = kill_and_verify(world, kind, env_var, point, world_dir / f"work-{done}", verified)
            done += 1
            counts["killed" if out.killed else "finished before the point"] += 1
            print(json.dumps({"kind": kind, "point": point, "killed": out.killed,
                              "snapshots": out.snapshots, "s": round(time.monotonic() - t, 1)}), flush=True)
        shutil.rmtree(world_dir)
    return counts


def _restores_right(world: World, repo: Repository, work: Path) -> tuple[int, int]:
    """(snapshots restored right, restores that failed); a wrong restore raises."""
    right = failed = 0
    for s in repo.snapshots(on_error=lambda name, e: None):
        tag = next(t for t in s.tags if t.startswith(("files-", "image-")))
        want = world.states[tag]
        out = work / f"r-{s.id[:12]}"
        try:
            if tag.startswith("files-"):
                result = run_restore(repo, RestoreOptions(str(out), snapshot=s.id))
                got = out / s.paths[0].lstrip("/")
                for p in sorted(want.iterdir()):
                    q = got / p.name
                    if q.exists():  # a file that could not be restored is absent, never wrong
                        assert q.read_bytes() == p.read_bytes(), f"{q}: wrong bytes restored"
                    else:  # named itself, or a directory above it whose tree was unreadable
                        named = str(q) in result.failed_files or any(
                            str(q).startswith(e.split(": ", 1)[0] + "/") for e in result.errors)
                        assert named, f"{q}: missing and not named ({result.errors})"
                if result.errors:
                    failed += 1
                else:
                    right += 1
            else:
                run_image_restore(repo, ImageRestoreOptions(str(out), snapshot=s.id))
                assert out.read_bytes() == want.read_bytes(), f"image {s.short_id}: wrong bytes restored"
                right += 1
        except E3Error:
            failed += 1
        finally:
            if out.is_dir():
                shutil.rmtree(out)
            elif out.exists():
                out.unlink()
    return right, failed


def soak_flips(base: Path, flips: int, rng: random.Random) -> collections.Counter[str]:
    world = make_world(base / "flips" / "world", rng.randrange(1 << 32))
    world.prepare("prune")  # a few more snapshots
    counts: collections.Counter[str] = collections.Counter()
    files = sorted(p for p in world.repo.rglob("*") if p.is_file())
    for i in range(flips):
        victim = rng.choice(files)
        data = bytearray(victim.read_bytes())
        offset = rng.randrange(len(data))
        bit = 1 << rng.randrange(8)
        os.chmod(victim, 0o600)
        data[offset] ^= bit
        victim.write_bytes(bytes(data))
        rel = str(victim.relative_to(world.repo))
        try:
            try:
                repo = Repository.open(LocalStore(world.repo), PASSWORD.encode())
            except E3Error as e:
                counts["refused to open (named)" if rel.split("/")[0] in ("config", "keys") else "??"] += 1
                outcome = f"open refused: {e}"
            else:
                result = Checker(repo).run("100%")
                work = base / "flips" / f"work-{i}"
                work.mkdir()
                right, failed = _restores_right(world, repo, work)
                named = any(rel.rsplit("/", 1)[-1][:8] in p.message for p in result.errors)
                if not result.ok:
                    counts["detected by check" + ("" if named else " (file not named)")] += 1
                else:
                    counts["not detected (unauthenticated bytes)"] += 1
                counts["restores right"] += right
                counts["restores failed (named)"] += failed
                outcome = f"check ok={result.ok}, restores right {right}, failed {failed}"
                repo.close()
        finally:
            data[offset] ^= bit
            victim.write_bytes(bytes(data))
            os.chmod(victim, 0o400)
        print(json.dumps({"flip": rel, "offset": offset, "outcome": outcome}), flush=True)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="kills per command")
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--per-world", type=int, default=10)
    ap.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1 << 32))
    ap.add_argument("--only", choices=[*KINDS, "flips"], action="append")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(json.dumps({"seed": args.seed}), flush=True)
    summary: dict[str, object] = {"seed": args.seed}
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="e3-soak-") as tmp:
        for kind in KINDS:
            if not args.only or kind in args.only:
                summary[kind] = dict(soak_kills(Path(tmp), kind, args.kills, args.per_world, rng))
        if not args.only or "flips" in args.only:
            summary["flips"] = dict(soak_flips(Path(tmp), args.flips, rng))
    summary["minutes"] = round((time.monotonic() - start) / 60, 1)
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
