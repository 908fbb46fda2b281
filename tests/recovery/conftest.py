"""A real site for the recovery console tests: the server on a socket, a tenant with a user and an
enrolled agent, a small GPT disk (two ext4 partitions) backed up by the real image engine into the
agent's job repository, and helpers to judge a restored disk (every backed-up extent equal,
``e2fsck -fn`` clean on each partition).

The test plays the agent only for the calls around its backup (``next_run``, ``update_run``); the
snapshot itself is a real one written by ``run_image_backup``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.repo import Repository
from e3backup.server import Settings, create_app
from e3backup.sources.extents import ExtentList
from e3backup.sources.stored_image import load_image_snapshot
from e3backup.store import LocalStore
from e3backup.store.url import open_store
from tests.conftest import FAST_KDF
from tests.helpers import PASSWORD
from tests.server.conftest import PASSWORD as USER_PASSWORD
from tests.server.conftest import SECRET_KEY, login
from tests.server.live import free_port, serve_in_thread
from tests.sources.diskimages import GPT_LINUX_FS, loop_device, make_ext, random_bytes, run

MiB = 1 << 20
DISK_SIZE = 40 * MiB
USER = "rita@acme.example"


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices)")
    missing = [t for t in ("sgdisk", "mkfs.ext4", "e2fsck", "losetup") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing}")


@dataclass
class SourceDisk:
    path: Path
    size: int
    parts: dict[int, tuple[int, int]]
    files: dict[str, bytes]


def build_source_disk(workdir: Path, size: int = DISK_SIZE) -> SourceDisk:
    """GPT: partition 1 "boot" (8 MiB ext4), partition 2 "root" (24 MiB ext4 with files)."""
    path = workdir / "source.img"
    with open(path, "wb") as f:
        f.truncate(size)
    run("sgdisk", "-Z", path)
    run(
        "sgdisk",
        "-n",
        "1:2048:+8M",
        "-t",
        f"1:{GPT_LINUX_FS}",
        "-c",
        "1:boot",
        "-n",
        "2:0:+24M",
        "-t",
        f"2:{GPT_LINUX_FS}",
        "-c",
        "2:root",
        path,
    )
    info = run("sgdisk", "-p", path)
    rows = {int(m[0]): (int(m[1]), int(m[2])) for m in re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)", info, re.M)}
    parts = {i: (s * 512, (e - s + 1) * 512) for i, (s, e) in rows.items()}
    files = {
        "vmlinuz": random_bytes(900_000, 5),
        "etc/hostname": b"acme-pc\n",
        "home/rita/report.bin": random_bytes(3_000_000, 6),
        "var/log/boot.log": b"ok\n" * 5000,
    }
    make_ext(path, parts[1][1], {"grub.cfg": b"menuentry e3\n"}, options=("-b", "4096"), offset=parts[1][0])
    make_ext(path, parts[2][1], files, options=("-b", "4096"), offset=parts[2][0])
    return SourceDisk(path, size, parts, files)


@dataclass
class Site:
    url: str
    data_dir: Path
    user: Any  # an Actor signed in as the tenant's administrator
    agent: httpx.Client
    agent_id: int
    job_id: int
    disk: SourceDisk
    snapshot_id: str
    repo_location: str
    backed_up: ExtentList = field(default_factory=ExtentList)

    def issue_code(self, snapshot_id: str | None = None) -> str:
        r = self.user.post(
            "/api/recovery/codes", json={"agent_id": self.agent_id, "snapshot_id": snapshot_id or self.snapshot_id}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def run(self, run_id: int) -> dict[str, Any]:
        r = self.user.get(f"/api/runs/{run_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def events(self, run_id: int) -> list[dict[str, Any]]:
        r = self.user.get(f"/api/runs/{run_id}/events", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(r.json())

    def recovery_runs(self) -> list[dict[str, Any]]:
        r = self.user.get("/api/runs")
        assert r.status_code == 200, r.text
        return [x for x in r.json() if x["trigger"] == "recovery"]


def server_settings(data_dir: Path, port: int) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        data_dir=data_dir,
        listen=f"127.0.0.1:{port}",
        secret_key=SECRET_KEY,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        scheduler_enabled=False,
    )


def seed_site(url: str, app: Any, disk: SourceDisk, destination: dict[str, Any], repo: Repository) -> Site:
    """Tenant Acme with its administrator and agent acme-pc, a disk image job and one backup."""
    from e3backup.server.services import users

    state = app.state.e3
    with state.sessions() as s:
        now = state.clock.now()
        tenant = users.create_tenant(s, "Acme", now)
        users.create_user(s, state.passwords, now, USER, USER_PASSWORD, False, tenant.id)
        token = users.rotate_enrollment_token(tenant)
        s.commit()
    r = httpx.post(f"{url}/api/agent/enroll", json={"enrollment_token": token, "hostname": "acme-pc", "os": "linux"})
    assert r.status_code == 201, r.text
    agent_id = r.json()["agent_id"]
    agent = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {r.json()['agent_token']}"}, timeout=30)
    user = login(httpx.Client(base_url=url, timeout=30), USER)  # type: ignore[arg-type]
    job = {
        "name": "Whole disk",
        "engine": "disk_image",
        "agent_id": agent_id,
        "source_path": "",
        "disk_source_volume": "/dev/sda",
        "destination": destination,
        "storage_mode": "direct",  # the console gets the destination itself (the gateway: tests/gateway)
        "policy": {"restore_parallel_workers": 2, "restore_segment_size_mb": 4},
    }
    r = user.post("/api/jobs", json=job)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert user.post(f"/api/jobs/{job_id}/run").status_code == 201
    run = agent.post("/api/agent/next_run", json={}).json()["run"]
    result = run_image_backup(
        repo, ImageBackupOptions(source=str(disk.path), snapshot="none", host="acme-pc", tags=(f"job:{job_id}",))
    )
    img = load_image_snapshot(repo, repo.find_snapshot(result.snapshot_id))
    r = agent.post(
        "/api/agent/update_run",
        json={"run_id": run["run_id"], "status": "success", "snapshot_id": result.snapshot_id, "backup_type": "full"},
    )
    assert r.status_code == 200, r.text
    return Site(url, Path(), user, agent, agent_id, job_id, disk, result.snapshot_id, "", img.plan)


@pytest.fixture(scope="session")
def source_disk(tmp_path_factory: pytest.TempPathFactory) -> SourceDisk:
    need_root()
    return build_source_disk(tmp_path_factory.mktemp("recovery-source"))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory, source_disk: SourceDisk) -> Iterator[Site]:
    """The server (uvicorn in a thread) with the backed-up disk in a local repository."""
    work = tmp_path_factory.mktemp("recovery-site")
    repo_path = work / "repo"
    repo = Repository.init(LocalStore(repo_path), PASSWORD.encode(), FAST_KDF)
    port = free_port()
    app = create_app(server_settings(work / "data", port))
    with serve_in_thread(app, port) as url:
        site = seed_site(
            url, app, source_disk, {"type": "local", "path": str(repo_path), "repository_password": PASSWORD}, repo
        )
        repo.close()
        site.data_dir, site.repo_location = work / "data", str(repo_path)
        yield site


@contextlib.contextmanager
def target_disk(workdir: Path, size: int, fill: bytes | None = None, partitioned: bool = False) -> Iterator[str]:
    """A loop device on a fresh sparse file of ``size`` bytes (``fill``: old data at its start;
    ``partitioned``: an old GPT with one partition, data the console must warn about)."""
    path = workdir / f"target-{size}.img"
    with open(path, "wb") as f:
        f.truncate(size)
        if fill:
            f.write(fill)
    if partitioned:
        run("sgdisk", "-n", "1:2048:+4M", "-c", "1:old-data", path)
    with loop_device(path) as dev:
        yield dev


def assert_restored(dev: str, site: Site, grown: bool = False) -> None:
    """Every backed-up extent of the source equals the target's; each file system checks clean;
    the partition table verifies. On a larger disk (``grown``) the GPT's own fields that must
    change (the protective MBR's size, the primary header at LBA 1, the backup at the old end)
    are judged by ``sgdisk -v`` instead."""
    moved = ExtentList([(458, 4), (512, 512), (site.disk.size - 33 * 512, 33 * 512)]) if grown else ExtentList()
    with open(site.disk.path, "rb") as src, open(dev, "rb") as dst:
        for e in site.backed_up - moved:
            src.seek(e.offset)
            dst.seek(e.offset)
            assert src.read(e.length) == dst.read(e.length), f"extent {e.offset}+{e.length} differs"
    for start, size in site.disk.parts.values():
        with loop_device(dev, start, size, ro=True) as part:
            check = subprocess.run(["e2fsck", "-fn", part], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
    verify = subprocess.run(["sgdisk", "-v", dev], capture_output=True, text=True)
    assert "No problems found" in verify.stdout, verify.stdout


def open_repo(location: str, **options: Any) -> Repository:
    return Repository.open(open_store(location, **options), PASSWORD.encode())


@contextlib.contextmanager
def console_process(site: Site, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``e3backup recovery`` in web mode on a free loopback port; yields the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "e3backup", "recovery", "--server", site.url, "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the socket listens
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        assert match, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        yield match.group(1), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
