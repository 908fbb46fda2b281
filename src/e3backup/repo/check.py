"""``check``: verify the repository's structure and, optionally, every byte of its data.

Like restic's checker (spec section 11): index files load; every indexed pack exists with the
size the index implies; every snapshot loads and every tree reachable from it decodes, with
valid nodes whose blobs are indexed. With ``read_data``, each selected pack is downloaded, its
hash compared with its name, its header compared with the index, and every blob decrypted,
decompressed and hashed. Every problem names the file and blob at fault.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import E3Error, NotFoundError
from ..store.base import FileType, Handle
from .blob import BlobType
from .leftovers import find_temporaries
from .node import NODE_TYPES
from .pack import PackedBlob, header_size, parse_header
from .repository import Repository


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "hint"
    message: str


@dataclass
class CheckResult:
    problems: list[Problem] = field(default_factory=list)
    packs_checked: int = 0
    packs_read: int = 0
    snapshots: int = 0
    trees: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_subset(spec: str) -> Callable[[list[str]], list[str]]:
    """``N%`` (random N percent of packs) or ``n/t`` (the n-th of t groups by pack ID)."""
    spec = spec.strip()
    if spec.endswith("%"):
        pct = float(spec[:-1])
        if not 0 < pct <= 100:
            raise ValueError(f"invalid subset {spec!r}: percentage must be in (0, 100]")

        def pick_pct(ids: list[str]) -> list[str]:
            k = max(1, round(len(ids) * pct / 100)) if ids else 0
            return random.sample(ids, k)

        return pick_pct
    n_s, _, t_s = spec.partition("/")
    n, t = int(n_s), int(t_s)
    if not 1 <= n <= t:
        raise ValueError(f"invalid subset {spec!r}: expected n/t with 1 <= n <= t")
    return lambda ids: [i for i in ids if int(i[:8], 16) % t == n - 1]


class Checker:
    def __init__(
        self,
        repo: Repository,
        workers: int = 4,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.repo = repo
        self.workers = workers
        self.progress = progress or (lambda stage, done, total: None)
        self.result = CheckResult()

    def _error(self, msg: str) -> None:
        self.result.problems.append(Problem("error", msg))

    def _hint(self, msg: str) -> None:
        self.result.problems.append(Problem("hint", msg))

    def run(self, read_data_subset: str | None = None) -> CheckResult:
        """Run every check; ``read_data_subset`` is ``None`` (structure only), ``"100%"``, ...."""
        self.repo.load_index(on_error=lambda name, e: self._error(f"index {name}: {e}"))
        packs = self._check_packs()
        for t in find_temporaries(self.repo.store):
            self._hint(f"{t.describe()}: left by an interrupted save; the next backup or prune removes it")
        self._check_snapshots()
        if read_data_subset is not None:
            ids = sorted(packs)
            chosen = parse_subset(read_data_subset)(ids)
            self._read_packs(chosen, packs)
        return self.result

    def _check_packs(self) -> dict[str, list[PackedBlob]]:
        indexed = self.repo.index.packs()
        stored = dict(self.repo.store.list(FileType.PACK))
        self.result.packs_checked = len(indexed)
        for pack_id, blobs in indexed.items():
            types = {b.type for b in blobs}
            if len(types) > 1:
                self._hint(f"pack {pack_id}: contains a mix of tree and data blobs")
            pos = 0
            for b in blobs:
                if b.offset != pos:
                    kind = "gaps" if b.offset > pos else "overlapping blobs"
                    self._error(f"pack {pack_id}: index for pack contains {kind} at offset {b.offset}")
                    break
                pos += b.length
            expected = pos + header_size(blobs)
            size = stored.get(pack_id)
            if size is None:
                self._error(f"pack {pack_id}: does not exist (listed in the index)")
            elif size != expected:
                self._error(f"pack {pack_id}: unexpected file size: got {size}, expected {expected}")
        for pack_id in stored:
            if pack_id not in indexed:
                self._hint(f"pack {pack_id}: not referenced in any index")
        return indexed

    def _check_snapshots(self) -> None:
        snaps = self.repo.snapshots(on_error=lambda name, e: self._error(f"snapshot {name}: {e}"))
        self.result.snapshots = len(snaps)
        seen: set[bytes] = set()
        for s in snaps:
            self._check_tree(s.tree, f"snapshot {s.id[:8]}", seen)

    def _check_tree(self, tree_id: bytes, where: str, seen: set[bytes]) -> None:
        stack = [(tree_id, where)]
        while stack:
            tid, path = stack.pop()
            if tid in seen:
                continue
            seen.add(tid)
            self.result.trees += 1
            try:
                nodes = self.repo.load_tree(tid)
            except E3Error as e:
                self._error(f"tree {tid.hex()} ({path}): {e}")
                continue
            index = self.repo.index
            for n in nodes:
                npath = f"{path}/{n.display_name}"
                if not n.name or b"/" in n.name or n.name in (b".", b".."):
                    self._error(f"tree {tid.hex()}: invalid node name {n.name!r}")
                if n.type not in NODE_TYPES or n.type == "irregular":
                    self._error(f"tree {tid.hex()}: node {npath!r} with invalid type {n.type!r}")
                if n.type == "file":
                    if n.content is None:
                        self._error(f"tree {tid.hex()}: file {npath!r} has nil blob list")
                        continue
                    for c in n.content:
                        if not index.has(BlobType.DATA, c):
                            self._error(f"file {npath!r}: data blob {c.hex()} not found in index")
                elif n.type == "dir":
                    if n.subtree is None:
                        self._error(f"tree {tid.hex()}: dir node {npath!r} has no subtree")
                    elif not index.has(BlobType.TREE, n.subtree):
                        self._error(f"dir {npath!r}: tree blob {n.subtree.hex()} not found in index")
                    else:
                        stack.append((n.subtree, npath))

    def _read_packs(self, chosen: list[str], packs: dict[str, list[PackedBlob]]) -> None:
        total = len(chosen)
        done = 0

        def read(pack_id: str) -> list[str]:
            return self._read_pack(pack_id, packs[pack_id])

        with ThreadPoolExecutor(max_workers=self.workers) as ex:
            for problems in ex.map(read, chosen):
                done += 1
                self.result.packs_read += 1
                for p in problems:
                    self._error(p)
                self.progress("read-data", done, total)

    def _read_pack(self, pack_id: str, blobs: list[PackedBlob]) -> list[str]:
        problems: list[str] = []
        try:
            data = self.repo.store.load(Handle(FileType.PACK, pack_id))
        except NotFoundError:
            return [f"pack {pack_id}: does not exist"]
        except E3Error as e:
            return [f"pack {pack_id}: cannot be read: {e}"]
        if hashlib.sha256(data).hexdigest() != pack_id:
            problems.append(f"pack {pack_id}: Pack ID does not match (file content is corrupt)")
        try:
            header = parse_header(self.repo.key, data, len(data), pack_id)
        except E3Error as e:
            problems.append(str(e))
            header = None
        if header is not None:
            indexed = set(blobs)
            for h in header:
                if h not in indexed:
                    problems.append(
                        f"pack {pack_id}: blob {h.id.hex()} is not contained in index or position is incorrect"
                    )
        for b in blobs:
            sealed = data[b.offset : b.offset + b.length]
            try:
                self.repo.decode_blob(pack_id, b, sealed)
            except E3Error as e:
                problems.append(str(e))
        return problems


__all__ = ["CheckResult", "Checker", "Problem", "parse_subset"]
