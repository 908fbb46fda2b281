"""A repository mounted by ``e3backup mount`` in a background process, unmounted afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import PASSWORD
from tests.sources.conftest import gpt_disk  # noqa: F401  (fixture)


@contextmanager
def mounted_repo(repo_path: Path, mnt: Path, sig: int = signal.SIGINT) -> Iterator[subprocess.Popen[str]]:
    """Yields the mount process once the mount is up; stops it with ``sig`` and checks it exits 0."""
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    mnt.mkdir(exist_ok=True)
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD}
    proc = subprocess.Popen(
        [sys.executable, "-m", "e3backup", "-r", str(repo_path), "mount", str(mnt)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                raise AssertionError(f"mount exited early ({proc.returncode}): {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("mount did not come up in 30 s")
            time.sleep(0.1)
        yield proc
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not os.path.ismount(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
