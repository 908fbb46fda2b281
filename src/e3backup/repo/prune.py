"""Prune: remove data no snapshot uses, without ever making a snapshot unreadable.

``plan_prune`` decides; ``execute`` acts. Under an exclusive lock:

1. Mark: walk every snapshot's trees; the used blobs are the trees and the file contents.
2. Per pack: a used blob stored several times is attributed to one copy (the holder, in the
   pack most worth keeping); every other copy counts as unused. A pack with no used blob is
   deleted; a pack mixing trees and data, or holding unused bytes, is repacked while the unused
   bytes left exceed ``max_unused`` (most wasteful packs first, at most ``max_repack`` bytes).
   Stored packs that no index names are read by header: kept if they hold a used blob that is
   nowhere else, deleted otherwise.
3. ``execute`` runs the steps of spec 13.1 item 8 in order, each safe to interrupt:
   copy the used blobs of repacked packs into new packs (verified, copied sealed, flushed and
   indexed) -> write a new full index of every remaining pack (``supersedes`` naming the old
   index files) -> delete the old index files -> delete the obsolete packs.
   Until the new index is complete the old one still describes every pack; once old index files
   go, only the new one is left, and it names no pack that is about to be deleted.

``crash_point`` lets tests kill the process (SIGKILL) at each named step; see docs/prune.md.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from ..errors import E3Error, NotFoundError, RepoError, UsageError
from ..platform.compat import kill_self
from ..store.base import FileType, Handle
from .blob import BlobType
from .index import IndexPack, split_into_files
from .leftovers import remove_temporaries
from .pack import PackedBlob, read_header
from .repository import Repository

log = logging.getLogger(__name__)

CRASH_ENV = "E3BACKUP_PRUNE_CRASH_AT"
STEPS = (
    "forget",  # the first snapshot file removed by forget (see maintenance.forget)
    "plan",  # planned, nothing changed yet
    "repack",  # the first repacked pack's blobs handed to the writer (uploads in flight)
    "repacked",  # new packs stored and indexed by their own index file
    "index",  # the first file of the new full index written
    "indexed",  # the new full index written
    "delete-index",  # the first old index file deleted
    "deleted-index",  # every old index file deleted
    "delete-packs",  # the first obsolete pack deleted
    "done",  # everything deleted, lock still held
)


def crash_point(step: str) -> None:
    """Test hook: SIGKILL this process at ``step`` when ``E3BACKUP_PRUNE_CRASH_AT`` names it."""
    if os.environ.get(CRASH_ENV) == step:
        kill_self()


class Action(Enum):
    KEEP = "keep"
    REPACK = "repack"
    DELETE = "delete"
    DROP = "drop"  # named by the index but missing from storage, and holding nothing used


@dataclass
class PackInfo:
    id: str
    size: int  # stored file size (0 when missing)
    blobs: list[PackedBlob]
    indexed: bool = True
    used: list[PackedBlob] = field(default_factory=list)  # blobs this pack holds for snapshots
    used_bytes: int = 0
    unused_bytes: int = 0
    mixed: bool = False
    action: Action = Action.KEEP
    reason: str = ""


@dataclass
class PruneStats:
    snapshots: int = 0
    used_blobs: int = 0
    used_bytes: int = 0
    unused_bytes: int = 0
    duplicate_blobs: int = 0
    unindexed_packs: int = 0
    missing_packs: int = 0
    delete_packs: int = 0
    delete_bytes: int = 0
    repack_packs: int = 0
    repack_bytes: int = 0
    repack_used_bytes: int = 0
    unused_after: int = 0
    total_bytes: int = 0


@dataclass
class PrunePlan:
    packs: dict[str, PackInfo]
    stats: PruneStats
    index_files: list[str]  # index files loaded when planning

    def by_action(self, action: Action) -> list[PackInfo]:
        return [p for p in self.packs.values() if p.action is action]

    @property
    def nothing_to_do(self) -> bool:
        return all(p.action is Action.KEEP and p.indexed for p in self.packs.values())

    def summary_json(self) -> dict[str, int]:
        return dict(vars(self.stats))


@dataclass
class PruneResult:
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    index_files_written: int = 0
    index_files_deleted: int = 0
    bytes_deleted: int = 0
    bytes_written: int = 0
    temporaries_removed: int = 0
    duration: float = 0.0

    @property
    def bytes_freed(self) -> int:
        return self.bytes_deleted - self.bytes_written

    def summary_json(self) -> dict[str, object]:
        return {**vars(self), "bytes_freed": self.bytes_freed}


# -- limits -----------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(s: str) -> int:
    """``500M``, ``2G``, ``1024`` (bytes; k/m/g/t are powers of 1024, as restic's)."""
    m = _SIZE_RE.match(s.strip())
    if not m:
        raise UsageError(f"invalid size {s!r}: expected e.g. 500M or 2G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_max_unused(s: str) -> Callable[[int], int]:
    """``5%`` (of the repository after pruning), a size, or ``unlimited`` -> limit(used_bytes)."""
    s = s.strip().lower()
    if s == "unlimited":
        return lambda used: 1 << 62
    if s.endswith("%"):
        try:
            p = float(s[:-1])
        except ValueError as e:
            raise UsageError(f"invalid unused-space limit {s!r}: expected e.g. 5%, 500M or unlimited") from e
        if not 0 <= p <= 100:
            raise UsageError(f"invalid unused-space limit {s!r}: percentage must be in [0, 100]")
        if p == 100:
            return lambda used: 1 << 62
        # unused / (used + unused) <= p%  <=>  unused <= p / (100 - p) * used
        return lambda used: int(p / (100 - p) * used)
    n = parse_size(s)
    return lambda used: n


# -- planning ---------------------------------------------------------------------------------


def find_used_blobs(repo: Repository, tree_ids: list[bytes]) -> dict[BlobType, set[bytes]]:
    """Every tree reachable from ``tree_ids`` and every data blob the files name."""
    trees: set[bytes] = set()
    data: set[bytes] = set()
    stack = list(tree_ids)
    while stack:
        tid = stack.pop()
        if tid in trees:
            continue
        trees.add(tid)
        try:
            nodes = repo.load_tree(tid)
        except E3Error as e:
            raise RepoError(f"cannot read a snapshot's tree ({e}); refusing to prune: run `e3backup check`") from e
        for node in nodes:
            if node.type == "file" and node.content:
                data.update(node.content)
            elif node.type == "dir" and node.subtree is not None and node.subtree not in trees:
                stack.append(node.subtree)
    return {BlobType.TREE: trees, BlobType.DATA: data}


def _collect_packs(repo: Repository) -> dict[str, PackInfo]:
    """Indexed packs with their stored sizes, plus stored packs no index names (by header)."""
    stored = dict(repo.store.list(FileType.PACK))
    packs = {pid: PackInfo(pid, stored.get(pid, 0), blobs) for pid, blobs in repo.index.packs().items()}
    for pid, size in stored.items():
        if pid in packs:
            continue
        try:
            blobs = read_header(repo.store, repo.key, pid, size)
        except E3Error as e:
            log.warning("pack %s is in no index and its header cannot be read: %s", pid, e)
            blobs = []
        packs[pid] = PackInfo(pid, size, blobs, indexed=False)
        repo.index.add_pack(pid, blobs)  # so that trees stored only there can be read
    return packs


def _pack_rank(p: PackInfo, used: dict[BlobType, set[bytes]]) -> tuple[int, int, int, int, str]:
    """Which copy of a duplicated blob to keep: indexed, stored, unmixed, fullest packs first."""
    used_bytes = sum(b.length for b in p.blobs if b.id in used[b.type])
    mixed = len({b.type for b in p.blobs}) > 1
    return (int(not p.indexed), int(p.size == 0), int(mixed), -used_bytes, p.id)


def _assign_holders(packs: dict[str, PackInfo], used: dict[BlobType, set[bytes]], stats: PruneStats) -> None:
    """Give each used blob to exactly one stored pack; fills ``used`` and byte counts."""
    copies: dict[tuple[BlobType, bytes], int] = {}
    for p in packs.values():
        if p.size == 0:
            continue
        for b in p.blobs:
            if b.id in used[b.type]:
                k = (b.type, b.id)
                copies[k] = copies.get(k, 0) + 1
    dup_keys = {k for k, n in copies.items() if n > 1}
    stats.duplicate_blobs = len(dup_keys)
    ranked = sorted(packs.values(), key=lambda p: _pack_rank(p, used))
    held: set[tuple[BlobType, bytes]] = set()
    for p in ranked:
        p.mixed = len({b.type for b in p.blobs}) > 1
        seen_here: set[tuple[BlobType, bytes]] = set()
        for b in p.blobs:
            k = (b.type, b.id)
            if p.size and b.id in used[b.type] and k not in held and k not in seen_here:
                if k in dup_keys:
                    held.add(k)
                seen_here.add(k)
                p.used.append(b)
                p.used_bytes += b.length
            else:
                p.unused_bytes += b.length
    missing = sum(len(used[t]) for t in used) - len(copies)
    if missing:
        examples = []
        for t, ids in used.items():
            examples += [f"{t.json_name} {bid.hex()}" for bid in ids if (t, bid) not in copies][:3]
        raise RepoError(
            f"{missing} blobs used by snapshots are in no stored pack (e.g. {', '.join(examples)}); "
            "refusing to prune: run `e3backup check`"
        )


def _choose_actions(
    packs: dict[str, PackInfo], max_unused: Callable[[int], int], max_repack: int | None, stats: PruneStats
) -> None:
    candidates = []
    for p in packs.values():
        if p.size == 0:
            p.action, p.reason = Action.DROP, "listed in the index but missing from storage"
        elif not p.used:
            p.action = Action.DELETE
            p.reason = "no blob is used" if p.indexed else "in no index and no blob is used"
        elif p.mixed:
            p.action, p.reason = Action.REPACK, "mixes tree and data blobs"
        elif not p.indexed:
            p.action, p.reason = Action.KEEP, "in no index but holds used blobs: indexed again"
        elif p.unused_bytes:
            candidates.append(p)
    stats.used_bytes = sum(p.used_bytes for p in packs.values())
    stats.used_blobs = sum(len(p.used) for p in packs.values())
    stats.unused_bytes = sum(p.unused_bytes for p in packs.values() if p.size)
    limit = max_unused(stats.used_bytes)
    unused_after = sum(p.unused_bytes for p in candidates)
    repack_bytes = sum(p.size for p in packs.values() if p.action is Action.REPACK)
    candidates.sort(key=lambda p: (-p.unused_bytes / max(1, p.used_bytes + p.unused_bytes), p.id))
    for p in candidates:
        if unused_after <= limit:
            break
        if max_repack is not None and repack_bytes + p.size > max_repack:
            continue
        p.action, p.reason = Action.REPACK, f"{p.unused_bytes} of {p.used_bytes + p.unused_bytes} bytes unused"
        unused_after -= p.unused_bytes
        repack_bytes += p.size
    stats.unused_after = unused_after
    for p in packs.values():
        if p.action is Action.DELETE:
            stats.delete_packs += 1
            stats.delete_bytes += p.size
        elif p.action is Action.REPACK:
            stats.repack_packs += 1
            stats.repack_bytes += p.size
            stats.repack_used_bytes += p.used_bytes
        elif p.action is Action.DROP:
            stats.missing_packs += 1
        stats.total_bytes += p.size


def plan_prune(
    repo: Repository,
    max_unused: Callable[[int], int] | str = "5%",
    max_repack: int | None = None,
) -> PrunePlan:
    """Decide what to delete and repack. The caller holds an exclusive lock."""
    if isinstance(max_unused, str):
        max_unused = parse_max_unused(max_unused)
    if not repo.index_files and not len(repo.index):
        repo.load_index()
    stats = PruneStats()
    snaps = repo.snapshots()
    stats.snapshots = len(snaps)
    packs = _collect_packs(repo)
    used = find_used_blobs(repo, [s.tree for s in snaps])
    stats.unindexed_packs = sum(1 for p in packs.values() if not p.indexed)
    _assign_holders(packs, used, stats)
    for p in packs.values():
        if p.size == 0 and p.used:
            raise RepoError(f"pack {p.id} is missing but holds used blobs")
    _choose_actions(packs, max_unused, max_repack, stats)
    return PrunePlan(packs, stats, list(repo.index_files))


# -- executing --------------------------------------------------------------------------------


_RUN_BYTES = 4 << 20  # read used blobs in runs of at most this much (plus one blob)
_RUN_GAP = 256 << 10  # a gap of unused bytes this small is read through rather than skipped


def _runs(blobs: list[PackedBlob]) -> Iterator[list[PackedBlob]]:
    """Used blobs in offset order, grouped into contiguous-enough ranged reads."""
    run: list[PackedBlob] = []
    for b in sorted(blobs, key=lambda b: b.offset):
        if run:
            start, end = run[0].offset, run[-1].offset + run[-1].length
            if b.offset - end > _RUN_GAP or b.offset + b.length - start > _RUN_BYTES:
                yield run
                run = []
        run.append(b)
    if run:
        yield run


def _repack(
    repo: Repository,
    plan: PrunePlan,
    result: PruneResult,
    progress: Callable[[str, int, int], None],
) -> list[IndexPack]:
    """Copy the used blobs of repacked packs into new packs; returns the new packs.

    One reader and one uploader: repacking is bounded by the store. Packs are built in temporary
    files (``spill``), so memory stays at one read run plus the blob being checked, whatever the
    pack size; restic's repack buffers packs in temporary files too.
    """
    todo = plan.by_action(Action.REPACK)
    if not todo:
        return []
    total = sum(p.used_bytes for p in todo)
    done = 0
    with repo.writer(connections=1, spill=True) as w:
        for i, p in enumerate(todo):
            h = Handle(FileType.PACK, p.id)
            for run in _runs(p.used):
                base = run[0].offset
                data = memoryview(repo.store.load(h, base, run[-1].offset + run[-1].length - base))
                for b in run:
                    sealed = data[b.offset - base : b.offset - base + b.length]  # a view: no copy
                    repo.verify_blob(p.id, b, sealed)  # never copy a corrupt blob
                    w.save_sealed(b.type, b.id, sealed, b.uncompressed_length)
                del data, sealed
            done += p.used_bytes
            result.packs_repacked += 1
            progress("repack", done, total)
            if i == 0:
                crash_point("repack")
    result.packs_written = len(w.stored)
    result.index_files_written += w.stats.index_files
    return list(w.stored)


def _stored_size(p: IndexPack) -> int:
    from .pack import header_size

    return sum(b.length for b in p.blobs) + header_size(p.blobs)


def _write_full_index(repo: Repository, plan: PrunePlan, new_packs: list[IndexPack]) -> tuple[int, set[str]]:
    """One index of every pack that stays, superseding every index file there is now."""
    old = sorted(repo.list_ids(FileType.INDEX))
    remaining: Iterator[IndexPack] = (
        IndexPack(p.id, p.blobs) for p in plan.packs.values() if p.action is Action.KEEP
    )
    written: set[str] = set()
    new_ids = {p.id for p in new_packs}
    kept = [p for p in remaining if p.id not in new_ids]
    for i, f in enumerate(split_into_files([*kept, *new_packs])):
        f.supersedes = old
        written.add(repo.save_unpacked(FileType.INDEX, f.to_json()))
        if i == 0:
            crash_point("index")
    crash_point("indexed")
    return len(written), {name for name in old if name not in written}


def _remove_all(repo: Repository, t: FileType, names: list[str], step: str) -> int:
    n = 0
    for name in names:
        try:
            repo.store.remove(Handle(t, name))
            n += 1
        except NotFoundError:
            pass
        if n == 1:
            crash_point(step)
    return n


def execute(
    repo: Repository,
    plan: PrunePlan,
    progress: Callable[[str, int, int], None] | None = None,
) -> PruneResult:
    """Carry out a plan in the crash-safe order. The caller holds the same exclusive lock."""
    report = progress or (lambda stage, done, total: None)
    start = time.monotonic()
    result = PruneResult()
    crash_point("plan")
    # under the exclusive lock no writer runs anywhere: every temporary but our own is abandoned
    result.temporaries_removed = len(remove_temporaries(repo.store, exclusive=True))
    if plan.nothing_to_do:
        result.duration = time.monotonic() - start
        return result
    new_packs = _repack(repo, plan, result, report)
    result.bytes_written = sum(_stored_size(p) for p in new_packs)
    crash_point("repacked")
    n_written, old_index = _write_full_index(repo, plan, new_packs)
    result.index_files_written += n_written
    report("index", 1, 1)
    result.index_files_deleted = _remove_all(repo, FileType.INDEX, sorted(old_index), "delete-index")
    crash_point("deleted-index")
    obsolete = [p for p in plan.packs.values() if p.action in (Action.DELETE, Action.REPACK)]
    for i, p in enumerate(obsolete):
        try:
            repo.store.remove(Handle(FileType.PACK, p.id))
            result.packs_deleted += 1
            result.bytes_deleted += p.size
        except NotFoundError:
            pass
        report("delete", i + 1, len(obsolete))
        if i == 0:
            crash_point("delete-packs")
    crash_point("done")
    result.duration = time.monotonic() - start
    return result


__all__ = [
    "CRASH_ENV",
    "STEPS",
    "Action",
    "PackInfo",
    "PrunePlan",
    "PruneResult",
    "PruneStats",
    "crash_point",
    "execute",
    "find_used_blobs",
    "parse_max_unused",
    "parse_size",
    "plan_prune",
]
