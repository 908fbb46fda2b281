"""Built artefacts shared by the packaging tests, each made once per session: the sdist and the
wheel (``python -m build``), and the single-file agent (``scripts/build_agent.sh``, ~1-3 min)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .restamp import restamped

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Dists:
    sdist: Path
    wheel: Path


def run(cmd: list[str], timeout: float = 600, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """sdist, then the wheel built from the unpacked sdist (as ``python -m build`` does): a file the
    sdist forgot fails here. No build isolation: the dev extras hold setuptools and wheel."""
    out = tmp_path_factory.mktemp("dists")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    (sdist,) = out.glob("e3backup-*.tar.gz")
    (wheel,) = out.glob("e3backup-*.whl")
    return Dists(sdist, wheel)


def unpack_sdist(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as t:
        t.extractall(into, filter="data")
    (top,) = into.iterdir()
    return top


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A new virtualenv with only the wheel installed in it. Its dependencies come from the test
    run's own environment through a path entry (``deps.pth``) instead of PyPI, to keep the test
    offline and quick; ``pip check`` then proves the wheel's declared dependencies are met."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    site = next((path / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    run([str(path / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)])
    return path


@pytest.fixture(scope="session")
def agent_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-file agent, built once per session by ``scripts/build_agent.sh`` (1-3 min on
    2 cores; ``E3BACKUP_TEST_AGENT_EXE`` names one built beforehand, e.g. by a CI step)."""
    given = os.environ.get("E3BACKUP_TEST_AGENT_EXE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("agent-exe")
    run(["bash", str(ROOT / "scripts" / "build_agent.sh"), str(out / "dist")],
        env={**os.environ, "WORK": str(out / "work")}, timeout=1200)
    return out / "dist" / "e3backup"


@pytest.fixture(scope="session")
def debs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both Debian packages built by ``scripts/build_debs.sh`` (version 0.0.1-1) from the session's
    executable and wheel (``E3BACKUP_TEST_DEBS``: a directory holding them built beforehand), and
    the same build as 0.0.1-2 to upgrade to (``dpkg-deb -R``, new version)."""
    out = tmp_path_factory.mktemp("debs")
    given = os.environ.get("E3BACKUP_TEST_DEBS")
    if given:
        built = sorted(Path(given).glob("*_0.0.1-1_*.deb"))
    else:
        exe: Path = request.getfixturevalue("agent_exe")
        wheel: Path = request.getfixturevalue("dists").wheel
        built = [Path(p) for p in run(["bash", str(ROOT / "scripts" / "build_debs.sh"), "--version", "0.0.1-1",
                                       "--agent-exe", str(exe), "--wheel", str(wheel), "--out", str(out)],
                                      timeout=1200).stdout.split()]
    found: dict[str, Path] = {}
    for deb in built:
        name = deb.name.split("_")[0]
        found[f"{name}-1"] = deb
        raw = out / f"{name}-raw"
        run(["dpkg-deb", "-R", str(deb), str(raw)])
        control = raw / "DEBIAN" / "control"
        control.write_text(control.read_text().replace("Version: 0.0.1-1", "Version: 0.0.1-2"))
        found[f"{name}-2"] = out / deb.name.replace("0.0.1-1", "0.0.1-2")
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(raw), str(found[f"{name}-2"])])
    return found


@pytest.fixture(scope="session")
def agent_exe_next(agent_exe: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The session's single-file agent saying a newer version (``restamp.py``: its build stamp
    rewritten in a copy, no second build), what self-update switches to."""
    version = "99.0.0"
    return restamped(agent_exe, tmp_path_factory.mktemp("agent-exe-next") / "e3backup", version), version
