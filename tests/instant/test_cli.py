"""``e3backup image serve`` and ``image boot`` as a user runs them: real processes, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from e3backup.repo import Repository
from tests.engines.disk_image.conftest import backup, make_mixed_image
from tests.helpers import PASSWORD, run_cli
from tests.plugins.bootdisk import BootDisk

from .conftest import pack_hashes

MiB = 1 << 20


def start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD}
    return subprocess.Popen(
        [sys.executable, "-m", "e3backup", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ctrl_c_as_at_a_terminal,
    )


def _ctrl_c_as_at_a_terminal() -> None:
    """A suite started in the background (``cmd &`` in a script) hands its children SIGINT
    ignored, and Python then installs no Ctrl-C handler: give the command the terminal's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stopped(proc: subprocess.Popen[str], timeout: float) -> str:
    """The stderr of ``proc`` once it exits; if it does not within ``timeout``, its threads'
    stacks (SIGUSR1, see cli/main.py) are put in the failure, to say what it waited for."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        raise AssertionError(f"still running {timeout:.0f} s after the signal; its threads:\n{err[-6000:]}") from None


def test_image_serve_until_ctrl_c(repo: Repository, repo_path: Path, tmp_path: Path) -> None:
    source = tmp_path / "disk.img"
    make_mixed_image(source, 4 * MiB, seed=3)
    snap = backup(repo_path, source, chunk_size=MiB).result.snapshot_id
    sock = tmp_path / "nbd.sock"
    proc = start("-r", str(repo_path), "image", "serve", snap[:8], "--nbd", f"unix:{sock}")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"Serving snapshot {snap[:8]} (disk.img, 4.00 MiB, read-only) at nbd+unix:///?socket={sock}" in line
        uri = line.rsplit(" at ", 1)[1].strip()
        cmp = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, str(source)], capture_output=True)
        assert cmp.returncode == 0, cmp.stderr
        proc.send_signal(signal.SIGUSR1)  # every thread's stack on stderr, and it serves on
        guard = threading.Timer(60, proc.kill)  # no stack printed: the reads below end
        guard.start()
        stacks = ""
        try:
            while "in _wait_for_signal" not in stacks:
                line = proc.stderr.readline() if proc.stderr else ""
                assert line, f"no stack printed on SIGUSR1: {stacks}"
                stacks += line
        finally:
            guard.cancel()
        assert "Thread 0x" in stacks and 'File "' in stacks
        proc.send_signal(signal.SIGINT)
        err = stopped(proc, 60)
        assert proc.returncode == 0, err
        assert "Stopped" in err
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_image_serve_with_an_overlay_over_tcp_stops_on_sigterm(
    repo: Repository, repo_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "disk.img"
    make_mixed_image(source, 4 * MiB, seed=4)
    backup(repo_path, source, chunk_size=MiB)
    before = pack_hashes(repo_path)
    overlay = tmp_path / "changes.e3bovl"
    proc = start("-r", str(repo_path), "image", "serve", "latest", "--nbd", "tcp:127.0.0.1:0",
                 "--writable-overlay", str(overlay))  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"writes to overlay {overlay}) at nbd://127.0.0.1:" in line
        uri = line.rsplit(" at ", 1)[1].strip()
        io = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 4096", uri], capture_output=True, text=True)
        assert io.returncode == 0 and "wrote 4096/4096" in io.stdout, io.stdout + io.stderr
        proc.send_signal(signal.SIGTERM)
        err = stopped(proc, 60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert overlay.read_bytes()[:8] == b"E3BOVL01"
    assert pack_hashes(repo_path) == before


def test_image_serve_errors_name_the_problem(
    repo: Repository, repo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], password_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    sock = f"unix:{tmp_path / 's'}"
    r = run_cli(capsys, "-r", str(repo_path), "image", "serve", "latest", "--nbd", "tcp:localhost")
    assert r.code == 2 and "NBD address 'tcp:localhost': give unix:PATH or tcp:HOST:PORT" in r.err
    r = run_cli(capsys, "-r", str(repo_path), "image", "serve", "deadbeef", "--nbd", sock)
    assert r.code == 1 and "no snapshot matches 'deadbeef'" in r.err
    r = run_cli(capsys, "-r", str(repo_path), "image", "serve", "latest", "--nbd", sock)
    assert r.code == 1 and "no image snapshot found" in r.err
    make_mixed_image(tmp_path / "disk.img", MiB)
    backup(repo_path, tmp_path / "disk.img")
    (tmp_path / "plain").write_text("x")
    r = run_cli(capsys, "-r", str(repo_path), "image", "serve", "latest", "--nbd", f"unix:{tmp_path / 'plain'}")
    assert r.code != 0 and "is not a socket" in r.err
    monkeypatch.setenv("E3BACKUP_PASSWORD", "not the password")
    r = run_cli(capsys, "-r", str(repo_path), "image", "serve", "latest", "--nbd", sock)
    assert r.code == 1 and "wrong password" in r.err


@pytest.mark.slow
def test_image_boot_of_a_uefi_disk_prints_how_to_reach_the_vm_and_keeps_the_overlay_by_flag(
    uefi_boot_disk: BootDisk, repo: Repository, repo_path: Path, tmp_path: Path
) -> None:
    """The UEFI twin of the test disk (GPT, EFI system partition): OVMF chosen by the disk."""
    boot_disk = uefi_boot_disk
    backup(repo_path, boot_disk.copy_to(tmp_path / "boot.img"))
    overlay = tmp_path / "vm.e3bovl"
    proc = start("-r", str(repo_path), "image", "boot", "latest", "--accel", "tcg", "--memory-mb", "256",
                 "--overlay", str(overlay), "--keep-overlay")  # fmt: skip
    guard = threading.Timer(400, proc.kill)  # a VM that never shows its marker ends the reads below
    guard.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        head = [proc.stderr.readline() for _ in range(5)]
        assert "UEFI, TCG (software emulation asked for), 256 MiB" in head[0], head
        assert head[1].startswith("Screen: VNC at 127.0.0.1:59"), head
        assert f"Overlay: {overlay} (kept when the VM stops)" in head[3]
        seen = ""
        while boot_disk.marker not in seen:  # the serial console, printed as it comes
            line = proc.stdout.readline()
            assert line, f"the VM stopped before its marker: {seen}"
            seen += line
        mem = proc.stdout.readline()  # the guest's MemTotal: the VM got the memory asked for
        assert "MemTotal" in mem and 150_000 < int(mem.split()[1]) <= 256 * 1024, mem
        proc.send_signal(signal.SIGINT)
        err = stopped(proc, 120)
        assert proc.returncode == 0, err
        assert "Stopping the VM" in err
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert overlay.read_bytes()[:8] == b"E3BOVL01"
