"""Proof of restore: show that a snapshot can really be restored (``docs/proof.md``).

options.py    ProofOptions (snapshot, scratch directory, sample size, boot timeout, marker)
result.py     ProofResult: verdict, reason, the checks behind it, the screenshot
files.py      files snapshots: a random sample restored to scratch and hashed against the snapshot
disk.py       image snapshots: is it bootable; each partition's checker and a sample of its files
checkers.py   e2fsck -fn, ntfsfix -n, xfs_repair -n, fsck.fat -n on read-only loop devices
boot.py       bootable images: booted headless until a sign of life, screenshot taken
run.py        run_proof (the run contract)
"""

from .options import ProofOptions
from .result import Check, ProofResult
from .run import run_proof

__all__ = ["Check", "ProofOptions", "ProofResult", "run_proof"]
