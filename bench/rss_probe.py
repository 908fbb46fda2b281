"""Where a command's resident memory is at its peak: anonymous, file-mapped, threads (from outside).

    .venv/bin/python bench/rss_probe.py [--interval 0.02] -- e3backup ARGS...

Runs the command and samples ``/proc/PID/status`` and ``/proc/PID/smaps_rollup`` every
``--interval`` seconds: prints the peak of each field (RssAnon, RssFile, threads), the mappings
at the sample with the highest RSS (largest first, ``/proc/PID/smaps``), and ``ru_maxrss`` from
``wait4``. Used for docs/memory.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads", "VmSize"):
                out[k] = int(v.split()[0])
    return out


def mappings(pid: int) -> list[tuple[int, str]]:
    """(RSS KiB, name) per mapping, largest first."""
    rows: list[tuple[int, str]] = []
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else f"[anon {parts[0]}]"
            elif parts[0] == "Rss:":
                rows.append((int(parts[1]), name))
    merged: dict[str, int] = {}
    for kib, n in rows:
        key = n if not n.startswith("[anon") else "[anonymous mappings]"
        merged[key] = merged.get(key, 0) + kib
    anon = [(k, n) for k, n in rows if n.startswith("[anon")]
    big = sorted(anon, reverse=True)[:8]
    return sorted(((v, k) for k, v in merged.items()), reverse=True)[:12] + [(k, f"  largest: {n}") for k, n in big]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak: dict[str, int] = {}
    best: list[tuple[int, str]] = []
    best_rss = 0
    while True:
        pid, sts, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        try:
            s = status(p.pid)
            for k, v in s.items():
                peak[k] = max(peak.get(k, 0), v)
            if s.get("VmRSS", 0) > best_rss:
                best_rss = s["VmRSS"]
                best = mappings(p.pid)
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(a.interval)
    print(f"exit {os.waitstatus_to_exitcode(sts)}; ru_maxrss {ru.ru_maxrss / 1024:.0f} MiB", file=sys.stderr)
    for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSize"):
        print(f"peak {k}: {peak.get(k, 0) / 1024:.0f} MiB", file=sys.stderr)
    print(f"peak threads: {peak.get('Threads', 0)}", file=sys.stderr)
    print(f"mappings at the highest sample ({best_rss / 1024:.0f} MiB):", file=sys.stderr)
    for kib, n in best:
        print(f"  {kib / 1024:8.1f} MiB  {n}", file=sys.stderr)


if __name__ == "__main__":
    main()
