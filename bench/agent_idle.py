"""The idle agent daemon: RSS and CPU of ``e3backup agent run`` enrolled, polling, no run.

    .venv/bin/python bench/agent_idle.py [--minutes 10] [--fast-seconds 60]

Starts ``e3backup server`` (SQLite, a fresh data directory), enrolls an agent with the default
intervals (next_run every 30 s +-20 %, commands every 5 s, disks every hour) and runs it as its
own process. Phase 1, ``--minutes``: samples the agent's RSS (``/proc/PID/status``) and CPU time
(``/proc/PID/stat``, user + system) every second; prints RSS at start, median and peak, and the
CPU share of one core. Phase 2, ``--fast-seconds``: a second agent polling both loops every 0.25 s
(no run either) gives what one poll costs: its CPU time over the polls the server answered.
Goal (issue 29): under 60 MiB and under 0.5 % of one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.agent.test_e2e import ADMIN, ServerProcess, e3  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def agent(work: Path, server: ServerProcess, token: str, name: str, *intervals: str) -> subprocess.Popen[bytes]:
    config = work / name / "agent.yaml"
    e3("agent", "enroll", "--server", server.url, "--token", token, "--config", str(config), "--name", name,
       "--state-dir", str(work / name / "state"), *intervals)
    log = open(work / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "e3backup", "agent", "run", "--config", str(config)],
                            stdout=log, stderr=log, start_new_session=True)


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def polls(log: Path, agent_id_hint: str) -> int:
    """Requests of the agent's two poll loops in the server's access log."""
    text = log.read_text(errors="replace")
    return sum(text.count(p) for p in ("/next_run", "/commands/poll")) if agent_id_hint else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--fast-seconds", type=float, default=60)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e3-agent-idle-"))
    server = ServerProcess(work / "server")
    try:
        e3("server", "--data-dir", str(server.data_dir), "create-admin", "--email", ADMIN[0], "--password-stdin",
           input=ADMIN[1] + "\n")
        out = e3("server", "--data-dir", str(server.data_dir), "create-tenant", "--name", "Idle")
        token = out.split("enrollment token:")[1].strip()
        server.start()
        uptime_before = Path("/proc/loadavg").read_text().split()[:3]

        idle = agent(work, server, token, "idle")
        time.sleep(5)  # let it start and make its first polls before the first sample
        rss: list[int] = []
        t0, c0 = time.monotonic(), cpu_seconds(idle.pid)
        rss_start = rss_kib(idle.pid)
        end = t0 + a.minutes * 60
        while time.monotonic() < end:
            rss.append(rss_kib(idle.pid))
            time.sleep(1)
        wall, cpu = time.monotonic() - t0, cpu_seconds(idle.pid) - c0
        stop(idle)

        fast = agent(work, server, token, "fast", "--poll-interval", "0.25", "--command-interval", "0.25")
        time.sleep(5)
        f_log = work / "server.log"
        n0, fc0, ft0 = polls(f_log, "fast"), cpu_seconds(fast.pid), time.monotonic()
        time.sleep(a.fast_seconds)
        n1, fc1, ft1 = polls(f_log, "fast"), cpu_seconds(fast.pid), time.monotonic()
        fast_rss = rss_kib(fast.pid)
        stop(fast)
        uptime_after = Path("/proc/loadavg").read_text().split()[:3]

        print(f"idle agent, {wall / 60:.1f} min (default intervals: next_run 30 s, commands 5 s):")
        print(f"  RSS start {rss_start / 1024:.1f} MiB, median {statistics.median(rss) / 1024:.1f} MiB, "
              f"peak {max(rss) / 1024:.1f} MiB")
        print(f"  CPU {cpu:.2f} s in {wall:.0f} s = {100 * cpu / wall:.3f} % of one core")
        if n1 > n0:
            per = (fc1 - fc0) / (n1 - n0)
            print(f"fast polling ({a.fast_seconds:.0f} s at 0.25 s): {n1 - n0} polls, CPU {fc1 - fc0:.2f} s, "
                  f"{per * 1000:.1f} ms of CPU a poll (RSS {fast_rss / 1024:.1f} MiB, {(ft1 - ft0):.0f} s)")
        else:
            print("fast polling: the server log shows no polls (access log off?)")
        print(f"load average before {' '.join(uptime_before)}, after {' '.join(uptime_after)}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
