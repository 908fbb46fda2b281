"""The Debian packages installed, started, upgraded with their state kept, and purged, in a
scratch root: an overlay of this machine's own root (writes go to a temporary upper layer; the
host's files and dpkg database are never changed) entered with chroot, ``/proc`` and ``/dev``
bound in. Maintainer scripts run as dpkg runs them; systemd is not running in the chroot, so
they skip systemctl (as in a container) and the test starts each unit's ``ExecStart`` itself."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.test_e2e import wait_for
from tests.plugins.seaweedfs import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.root]
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}  # not the test run's E3BACKUP_*


class Chroot:
    def __init__(self, path: Path) -> None:
        self.path = path

    def run(self, cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["chroot", str(self.path), "/bin/sh", "-c", cmd], capture_output=True, text=True,
                           timeout=600, env=CLEAN_ENV)
        if check:
            assert p.returncode == 0, f"{cmd}: {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        return p

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def exec_start(self, unit: str) -> list[str]:
        line = next(ln for ln in (self / f"/lib/systemd/system/{unit}").read_text().splitlines()
                    if ln.startswith("ExecStart="))
        return shlex.split(line.removeprefix("ExecStart="))


@pytest.fixture
def scratch_root() -> Iterator[Chroot]:
    if os.geteuid() != 0:
        pytest.skip("needs root (overlay mount, chroot)")
    base = Path(tempfile.mkdtemp(prefix="e3b-deb-root-", dir="/var/tmp"))
    upper, work, root = base / "upper", base / "work", base / "root"
    for d in (upper, work, root):
        d.mkdir()
    mounts: list[Path] = []
    try:
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={work}",
                        str(root)], check=True)
        mounts.append(root)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        mounts.append(root / "proc")
        subprocess.run(["mount", "--bind", "/dev", str(root / "dev")], check=True)
        mounts.append(root / "dev")
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "run")], check=True)  # no systemd there
        mounts.append(root / "run")
        yield Chroot(root)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _installed(root: Chroot, package: str) -> str:
    p = root.run(f"dpkg-query -W -f='${{Status}} ${{Version}}' {package}", check=False)
    return p.stdout if p.returncode == 0 else "not installed"


def test_agent_package_install_upgrade_purge(scratch_root: Chroot, debs: dict[str, Path]) -> None:
    root = scratch_root
    out = root.run(f"dpkg -i {debs['e3backup-agent-1']}").stdout
    assert "e3backup agent enroll --server" in out  # the next step, said at install
    assert _installed(root, "e3backup-agent") == "install ok installed 0.0.1-1"
    assert '"install": "executable"' in root.run("e3backup version --json").stdout
    assert (root / "/lib/systemd/system/e3backup-agent.service").exists()
    assert root.exec_start("e3backup-agent.service")[:3] == ["/usr/bin/e3backup", "agent", "run"]
    for d, mode in (("/etc/e3backup", 0o700), ("/var/lib/e3backup/agent", 0o700)):
        assert (root / d).stat().st_mode & 0o777 == mode, d
    # the agent's state: its config (enrolled) and what it keeps between runs
    config = root / "/etc/e3backup/agent.yaml"
    config.write_text("server_url: http://127.0.0.1:9\nagent_token: e3a_kept\n")
    config.chmod(0o600)
    (root / "/var/lib/e3backup/agent/last-contact").write_text("2026-12-03T00:00:00+00:00")
    assert "config:        /etc/e3backup/agent.yaml" in root.run("e3backup agent status").stdout

    out = root.run(f"dpkg -i {debs['e3backup-agent-2']}").stdout
    assert _installed(root, "e3backup-agent") == "install ok installed 0.0.1-2"
    assert "not enrolled yet" not in out
    assert "e3a_kept" in config.read_text() and (root / "/var/lib/e3backup/agent/last-contact").exists()

    root.run("dpkg --remove e3backup-agent")  # remove: the binary goes, config and state stay
    assert not (root / "/usr/bin/e3backup").exists() and config.exists()
    root.run("dpkg --purge e3backup-agent")
    assert _installed(root, "e3backup-agent") == "not installed"
    assert not config.exists() and not (root / "/var/lib/e3backup/agent").exists()
    assert not (root / "/etc/e3backup").exists()


def test_server_package_install_start_upgrade_purge(scratch_root: Chroot, debs: dict[str, Path]) -> None:
    root = scratch_root
    out = root.run(f"dpkg -i {debs['e3backup-server-1']}").stdout
    assert "database at revision" in out  # the postinst ran the migrations
    data = root / "/var/lib/e3backup/server"
    assert data.stat().st_mode & 0o777 == 0o700
    uid = int(root.run("id -u e3backup").stdout)
    assert data.stat().st_uid == uid
    assert (root / "/etc/e3backup/server.env").exists()

    # start it as its unit does (environment file read as root, then the command as User=), on a free port
    port = free_ports(1)[0]
    cmd = " ".join(map(shlex.quote, root.exec_start("e3backup-server.service")))
    log = open(root.path.parent / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(["chroot", str(root.path), "/bin/sh", "-c",
                               f"set -a; . /etc/e3backup/server.env; E3BACKUP_LISTEN=127.0.0.1:{port}; "
                               f"exec runuser -u e3backup -- {cmd}"],
                              stdout=log, stderr=log, start_new_session=True, env=CLEAN_ENV)
    try:
        try:
            wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                     or server.poll() is not None, 180, "the packaged server")
        except AssertionError as e:
            raise AssertionError(f"{e}: {(root.path.parent / 'server.log').read_text()[-3000:]}") from None
        assert server.poll() is None, (root.path.parent / "server.log").read_text()[-3000:]
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
        log.close()
    root.run("runuser -u e3backup -- e3backup-server server --data-dir /var/lib/e3backup/server "
             "create-tenant --name Kept")
    (root / "/etc/e3backup/server.env").write_text("E3BACKUP_LISTEN=127.0.0.1:8099\n")  # a local change

    out = root.run(f"dpkg --force-confold -i {debs['e3backup-server-2']}").stdout
    assert "database at revision" in out and "create-admin" not in out  # upgrade: migrated, no first steps
    assert _installed(root, "e3backup-server") == "install ok installed 0.0.1-2"
    with sqlite3.connect(data / "e3backup.db") as db:
        assert db.execute("SELECT name FROM tenants").fetchall() == [("Kept",)]
    assert (root / "/etc/e3backup/server.env").read_text() == "E3BACKUP_LISTEN=127.0.0.1:8099\n"

    root.run("dpkg --purge e3backup-server")
    assert _installed(root, "e3backup-server") == "not installed"
    assert not data.exists() and not (root / "/opt/e3backup-server").exists()
    assert not (root / "/etc/e3backup/server.env").exists()
