"""The wheel and sdist: built by ``python -m build``, installed into a fresh virtualenv, where
``e3backup version`` names the build and a backup and restore give back the same bytes (restic
judges the repository). Without a C compiler the wheel is built without the extension and works."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import PASSWORD, restic

from .conftest import Dists, fresh_venv, run, unpack_sdist

pytestmark = pytest.mark.slow


def test_wheel_in_a_fresh_virtualenv_backs_up_and_restores(dists: Dists, tmp_path: Path) -> None:
    venv = fresh_venv(tmp_path / "venv", dists.wheel)
    e3 = str(venv / "bin" / "e3backup")
    py = str(venv / "bin" / "python")
    where = run([py, "-c", "import e3backup; print(e3backup.__file__)"]).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout
    run([py, "-m", "pip", "check"])
    doc = json.loads(run([e3, "version", "--json"]).stdout)
    assert doc["install"] == "wheel" and doc["build"] != "dev" and doc["built_at"]
    assert doc["sha256_extension"].startswith("present")  # a compiler is here (scripts/setup.sh: gcc)
    assert run([e3, "--version"]).stdout.startswith(f"e3backup {doc['version']} (")

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("through the wheel\n" * 1000)
    (src / "b.bin").write_bytes(os.urandom(300_000))
    repo = tmp_path / "repo"
    env = {**os.environ, "E3BACKUP_PASSWORD": PASSWORD}
    run([e3, "-r", str(repo), "init"], env=env)
    run([e3, "-r", str(repo), "backup", str(src)], env=env)
    snaps = json.loads(run([e3, "-r", str(repo), "snapshots", "--json"], env=env).stdout)
    run([e3, "-r", str(repo), "restore", snaps[0]["id"], "--target", str(tmp_path / "out")], env=env)
    restored = tmp_path / "out" / str(src).lstrip("/")
    cmp = filecmp.dircmp(src, restored)
    assert not (cmp.left_only or cmp.right_only or cmp.diff_files)
    assert filecmp.cmp(src / "b.bin", restored / "b.bin", shallow=False)
    restic(repo, "check", "--read-data")


def test_wheel_without_a_compiler_leaves_the_extension_out(dists: Dists, tmp_path: Path) -> None:
    names = zipfile.ZipFile(dists.wheel).namelist()
    assert any(n.startswith("e3backup/_sha256mb.") and n.endswith(".so") for n in names)
    assert not any(n.endswith(".c") for n in names)  # the C source ships in the sdist only
    src = unpack_sdist(dists.sdist, tmp_path / "sdist")
    out = tmp_path / "nocc"
    p = run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(src)],
            env={**os.environ, "CC": "/bin/false"})
    assert 'building extension "e3backup._sha256mb" failed' in p.stdout + p.stderr
    (wheel,) = out.glob("*.whl")
    assert not any(n.endswith(".so") for n in zipfile.ZipFile(wheel).namelist())
    venv = fresh_venv(tmp_path / "venv", wheel)
    doc = json.loads(run([str(venv / "bin" / "e3backup"), "version", "--json"]).stdout)
    assert doc["sha256_extension"] == "absent (hashlib is used)"
    p = subprocess.run([str(venv / "bin" / "python"), "-c", "from e3backup.repo import hashing; "
                        "print(hashing.MULTI_BUFFER)"], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "False"
