"""Hyper-V RCT incremental vs a full re-read vs restic reading the VHDX, on the simulated host.

A 16 GiB dynamic VHDX (qemu-img) with DATA_GIB of pseudo-random data written by the "guest" in
4 MiB pieces spread over the disk; a full backup; then 1 % of the disk (164 MiB) rewritten in
1 MiB guest writes at random 1 MiB-aligned offsets. Then, each timed:

- e3backup RCT incremental (run_hyperv with the chain of the full): reads the changed chunks only;
- e3backup full re-read (RCT off): reads the whole virtual disk (zeros of unallocated blocks
  come from the VHDX reader without I/O) and deduplicates;
- restic 0.x ``backup`` of the VHDX file itself (its second backup: the file changed, so restic
  reads and chunks all of it).

Run: .venv/bin/python bench/hyperv_rct.py [--data-gib 2] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from e3backup.engines.hyperv import HyperVOptions, VmChain, run_hyperv
from e3backup.repo import Repository
from e3backup.sources.hyperv.sim import SimHost
from e3backup.store import LocalStore

GiB, MiB = 1 << 30, 1 << 20
PASSWORD = "bench password"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-gib", type=float, default=2.0)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="e3b-hyperv-bench-", dir=args.dir))
    try:
        run(root, args.data_gib)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, data_gib: float) -> None:
    size = 16 * GiB
    sim = SimHost.create(root / "host")
    sim.create_vm("bench", [size])
    rng = random.Random(1)
    pieces = int(data_gib * GiB // (4 * MiB))
    stride = size // (4 * MiB) // pieces
    t = time.monotonic()
    for i in range(pieces):
        sim.guest_write("bench", 0, i * stride * 4 * MiB, rng.randbytes(4 * MiB))
    print(f"guest data: {pieces * 4} MiB in {pieces} pieces over {size // GiB} GiB ({time.monotonic() - t:.1f} s)")
    repo = Repository.init(LocalStore(root / "repo"), PASSWORD.encode())
    t = time.monotonic()
    full = run_hyperv(repo, HyperVOptions(host=sim, vms=("bench",), read_plan="full"))
    print(f"e3backup full:            {time.monotonic() - t:6.1f} s, read {full.bytes_read / GiB:.2f} GiB")
    vm = full.vms[0]
    chain = {"bench": VmChain(vm.id, vm.checkpoint_id, dict(vm.rct_ids))}

    vhdx = Path(sim.vm_dir("bench")) / "disk0.vhdx"
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(root / "restic")}
    subprocess.run(["restic", "init", "-q"], env=env, check=True)
    t = time.monotonic()
    subprocess.run(["restic", "backup", "-q", str(vhdx)], env=env, check=True)
    print(f"restic first backup:      {time.monotonic() - t:6.1f} s, VHDX file {vhdx.stat().st_size / GiB:.2f} GiB")

    changed = size // 100
    for _ in range(changed // MiB):
        sim.guest_write("bench", 0, rng.randrange(size // MiB) * MiB, rng.randbytes(MiB))
    print(f"guest rewrote {changed // MiB} MiB (1 %) in 1 MiB writes")

    t = time.monotonic()
    incr = run_hyperv(repo, HyperVOptions(host=sim, vms=("bench",), read_plan="full", chain=chain))
    t_incr = time.monotonic() - t
    v = incr.vms[0]
    print(f"e3backup RCT incremental: {t_incr:6.1f} s, read {v.bytes_read / MiB:.0f} MiB "
          f"(RCT ranges {v.changed_bytes / MiB:.0f} MiB), type {v.backup_type}")
    t = time.monotonic()
    again = run_hyperv(repo, HyperVOptions(host=sim, vms=("bench",), read_plan="full", enable_rct=False))
    t_full = time.monotonic() - t
    print(f"e3backup full re-read:    {t_full:6.1f} s, read {again.bytes_read / GiB:.2f} GiB")
    t = time.monotonic()
    p = subprocess.run(["restic", "backup", "--json", str(vhdx)], env=env, check=True,
                       capture_output=True, text=True)
    t_restic = time.monotonic() - t
    summary = next(json.loads(x) for x in p.stdout.splitlines() if '"summary"' in x)
    print(f"restic second backup:     {t_restic:6.1f} s, read {summary['total_bytes_processed'] / GiB:.2f} GiB "
          f"(the VHDX file), added {summary['data_added'] / MiB:.0f} MiB")
    print(f"RCT incremental vs full re-read: {t_full / t_incr:.1f}x faster, "
          f"{again.bytes_read / max(1, v.bytes_read):.0f}x fewer bytes read")
    print(f"RCT incremental vs restic:       {t_restic / t_incr:.1f}x faster, "
          f"{summary['total_bytes_processed'] / max(1, v.bytes_read):.1f}x fewer bytes read")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
