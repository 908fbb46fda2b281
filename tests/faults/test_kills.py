"""Kill tests (issue #28): SIGKILL image backups, files backups and prunes at random crash points.

Each command's crash points are learnt from a traced run (``e3backup.crashpoints``; prune adds
its own steps), then a few are drawn at random per run: the seed is printed, and
``E3BACKUP_KILL_SEED`` replays one. After each kill the next command must succeed and leave no
temporary file and no lock, our check and ``restic check --read-data`` (which locks) must pass,
and every snapshot must restore to the bytes it was made from (``killing.py``). The long
version is ``scripts/soak.py`` (counts in docs/faults.md).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from .killing import KINDS, World, crash_points, kill_and_verify, make_world

pytestmark = [pytest.mark.restic, pytest.mark.slow]

KILLS_PER_COMMAND = 3
SEED = int(os.environ.get("E3BACKUP_KILL_SEED") or random.SystemRandom().randrange(1 << 32))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("kills") / "world", SEED)


@pytest.mark.parametrize("kind", KINDS)
def test_kills_leave_nothing_behind(kind: str, template: World, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    points = crash_points(template, kind, tmp_path / "trace")
    world = template.copy(tmp_path / "world", seed=rng.randrange(1 << 32))
    killed = 0
    for i, (env_var, point) in enumerate(rng.sample(points, min(KILLS_PER_COMMAND, len(points)))):
        try:
            outcome = kill_and_verify(world, kind, env_var, point, tmp_path / f"work-{i}")
        except AssertionError as e:
            raise AssertionError(f"{kind} killed at {point} (E3BACKUP_KILL_SEED={SEED}): {e}") from e
        killed += outcome.killed
    assert killed >= 1, f"no kill happened among the drawn points (E3BACKUP_KILL_SEED={SEED})"


def test_prune_killed_with_an_index_half_written(template: World, tmp_path: Path) -> None:
    """Found by the soak: forget had removed the snapshots, so the next ``forget --prune`` has
    nothing to forget and does not prune (restic's rule); it must still remove the temporary."""
    world = template.copy(tmp_path / "world", seed=SEED)
    out = kill_and_verify(world, "prune", "E3BACKUP_CRASH_AT", "save-index-tmp#1", tmp_path / "work")
    assert out.killed
