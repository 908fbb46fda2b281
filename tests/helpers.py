"""Helpers shared by the tests: run the CLI in-process or as a real process, call restic."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from e3backup.cli.main import main

T = TypeVar("T")

PASSWORD = "correct horse battery staple"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``e3backup ARGS`` in this process; returns exit code and captured output."""
    capsys.readouterr()
    code = main(list(args))
    cap = capsys.readouterr()
    return Result(code, cap.out, cap.err)


def e3(
    *args: str, env: dict[str, str] | None = None, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``e3backup ARGS`` as a real process."""
    full_env = {**os.environ, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], env=full_env, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if check and p.returncode != 0:
        raise AssertionError(f"e3backup {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def restic_bin() -> str:
    path = shutil.which("restic")
    if path is None:
        pytest.fail("the restic binary is missing: run scripts/setup.sh")
    return path


def restic(
    repo: Path | str,
    *args: str,
    password: str = PASSWORD,
    check: bool = True,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **(env or {}), "RESTIC_PASSWORD": password}
    p = subprocess.run([restic_bin(), "-r", str(repo), "--no-cache", *args], env=env, capture_output=True, input=input)
    if check and p.returncode != 0:
        raise AssertionError(
            f"restic {' '.join(args)} failed ({p.returncode}):\n{p.stdout.decode()}\n{p.stderr.decode()}"
        )
    return p


def run_coroutine(coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
    """``asyncio.run(coro)`` in a thread of its own: a worker that ran a browser test has
    Playwright's event loop running in its main thread, where ``asyncio.run`` refuses to start."""
    out: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(asyncio.run(coro))
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    thread = threading.Thread(target=target, name="test-coroutine", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"the coroutine did not finish in {timeout} s")
    if errors:
        raise errors[0]
    return out[0]
