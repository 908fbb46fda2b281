"""The C extension and the build stamp live here; everything else is in pyproject.toml.

Multi-buffer SHA-256 for restore and verify (``e3backup.repo.hashing`` falls back to hashlib where
it is not built or the CPU lacks AVX-512). Optional: an install without a C compiler still works
(``optional=True``: a failed compile is a warning, the wheel is made without it).
"""

import importlib.util
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _stamper() -> Any:
    spec = importlib.util.spec_from_file_location("stamp_build", ROOT / "packaging" / "stamp_build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildWithStamp(build_py):  # type: ignore[misc]
    """Adds ``e3backup/_build.py`` (version, build, commit, date) to what the wheel installs."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            _stamper().stamp(Path(self.build_lib) / "e3backup" / "_build.py", ROOT)


class SdistWithCommit(sdist):  # type: ignore[misc]
    """Records the commit in the sdist (``packaging/COMMIT``): a wheel built from it has no git."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        commit = _stamper().commit_of(ROOT)
        if commit:
            (Path(base_dir) / "packaging" / "COMMIT").write_text(commit + "\n")


setup(
    cmdclass={"build_py": BuildWithStamp, "sdist": SdistWithCommit},
    ext_modules=[
        Extension(
            "e3backup._sha256mb",
            sources=["src/e3backup/_sha256mb.c"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ],
)
