"""The files proof: restore a random sample of a files snapshot to scratch and hash it.

Every tree of the snapshot is read (a damaged tree pack fails the proof), then a random sample
of regular files is restored through the ordinary restore (``restore.files.run_restore``) and
each restored file is cut along its blob list again: every piece must hash (SHA-256) to the
blob ID the snapshot records, and the file must have the recorded size. A file the restore
could not write (a corrupt or missing pack) fails the proof with the restore's reason, which
names the blob and the pack.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path

from ..contract import Cancel, check_cancel
from ..repo.blob import BlobType
from ..repo.node import Node
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from ..restore.files import RestoreOptions, run_restore
from .options import ProofOptions
from .result import Check, ProofResult

_GLOB_SPECIAL = re.compile(r"([*?\[])")


def _literal(path: str) -> str:
    """``path`` as a restore include that matches only itself (fnmatch specials bracketed)."""
    return _GLOB_SPECIAL.sub(r"[\1]", path)


def pick_sample(files: list[tuple[str, Node]], options: ProofOptions) -> list[tuple[str, Node]]:
    """Up to ``sample_files`` random files holding at most ``sample_bytes`` in all."""
    order = list(files)
    random.Random(options.seed).shuffle(order)
    sample: list[tuple[str, Node]] = []
    total = 0
    for path, node in order:
        if len(sample) >= options.sample_files:
            break
        if total + node.size > options.sample_bytes:
            continue
        sample.append((path, node))
        total += node.size
    return sample


def hash_against_snapshot(repo: Repository, restored: Path, node: Node) -> str:
    """'' when the restored file's pieces hash to the snapshot's blob IDs; else what differs."""
    with open(restored, "rb") as f:
        for n, blob_id in enumerate(node.content or []):
            loc = repo.index.lookup(BlobType.DATA, blob_id)
            if loc is None:
                return f"blob {blob_id.hex()} is not in the repository's index"
            piece = f.read(loc.blob.plaintext_length)
            if hashlib.sha256(piece).digest() != blob_id:
                offset = f.tell() - len(piece)
                return f"bytes {offset}-{f.tell()} do not hash to blob {blob_id.hex()} (piece {n})"
        size = f.tell() + len(f.read())
    if size != node.size:
        return f"restored {size} bytes, the snapshot records {node.size}"
    return ""


def prove_files(repo: Repository, snap: Snapshot, options: ProofOptions, cancel: Cancel) -> ProofResult:
    result = ProofResult(snap.id, "files")
    files: list[tuple[str, Node]] = []
    nodes = 0
    for raw, entry in repo.walk(snap.tree):
        nodes += 1
        if entry.type == "file":
            files.append((os.fsdecode(raw), entry))
        if nodes % 1000 == 0:
            check_cancel(cancel, "proof cancelled while reading the trees")
    result.checks.append(Check("trees", True, f"every tree read: {nodes} entries, {len(files)} files"))
    sample = pick_sample(files, options)
    if not sample:
        return result
    target = Path(options.scratch_dir) / "files"
    restored = run_restore(
        repo,
        RestoreOptions(target=str(target), includes=[_literal(p) for p, _ in sample], snapshot=snap.id, workers=4),
        cancel=cancel,
    )
    failed = set(restored.failed_files)
    reasons = [e for e in restored.errors if ": not restored: " in e]
    for path, node in sample:
        check_cancel(cancel, "proof cancelled while hashing the sample")
        local = target / path.lstrip("/")
        if str(local) in failed or not local.is_file():
            why = next((e.split(": not restored: ", 1)[1] for e in reasons if e.startswith(f"{local}: ")),
                       "the restore did not write it")
            result.checks.append(Check(f"file {path}", False, f"not restored: {why}"))
            continue
        problem = hash_against_snapshot(repo, local, node)
        result.checks.append(Check(f"file {path}", not problem, problem or f"{node.size} bytes hash as recorded"))
    return result


__all__ = ["hash_against_snapshot", "pick_sample", "prove_files"]
