"""Self-update against the real server app: the tenant's wanted version is offered with a poll,
the agent downloads the release, checks size, SHA-256 and Ed25519 signature, tries it, switches
to it between runs on trial, and the new process commits once the server answers it or goes back
to the installed version; a corrupted or badly signed download or a version that fails to start
is refused, said to the server, and leaves the running executable alone. The executables here
are small scripts that answer ``agent run --check-start`` like the real one (the single-file agent
itself, end to end: tests/packaging/test_self_update_exe.py)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from e3backup.agent.runner import Agent
from e3backup.agent.selfupdate import REFUSED, ROLLED_BACK, UPDATED, SelfUpdater
from e3backup.api.agent import release_message
from e3backup.buildinfo import platform_tag, version
from e3backup.server.db.models import Agent as AgentRow
from e3backup.server.db.models import Tenant
from e3backup.server.services import agent_releases

from .conftest import Harness

NEW = "9.9.9"


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def _pub(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _release(h: Harness, file: Path, key: Ed25519PrivateKey, ver: str = NEW) -> None:
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    sig = base64.b64encode(key.sign(release_message(ver, platform_tag(), sha))).decode()
    state = h.client.app.state.e3  # type: ignore[attr-defined]
    with state.sessions() as s:
        agent_releases.add_release(s, state.settings.data_dir, ver, platform_tag(), file, sig, state.clock.now())
        for t in s.query(Tenant):
            agent_releases.set_wanted_version(t, ver)
        s.commit()


def _server_event(h: Harness, agent: Agent) -> dict[str, Any] | None:
    state = h.client.app.state.e3  # type: ignore[attr-defined]
    with state.sessions() as s:
        row = s.get(AgentRow, agent.config.agent_id)
        assert row is not None
        return row.update_event


class Swapped(Exception):
    """Stands for execve: the process would be replaced here."""


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _agent(h: Harness, key: Ed25519PrivateKey) -> tuple[Agent, Path, list[Path]]:
    (h.tmp / "bin").mkdir()
    exe = _script(h.tmp / "bin" / "e3backup", "exit 0")
    execs: list[Path] = []

    def exec_new(p: Path) -> None:
        execs.append(p)
        raise Swapped

    agent, _ = h.make_agent("u", update_public_key=_pub(key))
    agent.updater = SelfUpdater(Path(agent.config.state_dir), _pub(key), None, agent.client.download,
                                executable=exe, exec_new=exec_new)
    return agent, exe, execs


def test_an_idle_agent_switches_to_the_offered_version_which_commits_once_it_reports(
    harness: Harness, key: Ed25519PrivateKey
) -> None:
    agent, exe, execs = _agent(harness, key)
    old = exe.read_bytes()
    new = _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'")
    _release(harness, new, key)
    assert agent.poll_once() is False  # no run: the offer is fetched, checked and tried
    assert agent._update is not None and agent.stopping  # polling stops; the switch waits for no run
    with pytest.raises(Swapped):
        agent.apply_update()
    trial = exe.with_name(f".e3backup-{NEW}.new")
    assert execs == [trial] and exe.read_bytes() == old  # on trial: the installed file is untouched
    # the new process: on trial until the server answers its first poll, then it is installed
    after = _after_switch(harness, agent, key, trial, execs)
    assert after.trial_left() is not None and after.executable == exe
    after.reported()
    assert exe.read_bytes() == new.read_bytes() and exe.with_name("e3backup.previous").read_bytes() == old
    assert trial.samefile(exe)  # the name the running process reads its modules from stays ...
    event = after.pending_event()
    assert event is not None and (event.code, event.version) == (UPDATED, NEW)
    assert f"updated from {version()}" in event.message and after.trial_left() is None
    _after_switch(harness, agent, key, exe, execs)  # ... until the next start
    assert not trial.exists() and exe.read_bytes() == new.read_bytes()


def _after_switch(h: Harness, agent: Agent, key: Ed25519PrivateKey, running: Path, execs: list[Path],
                  version_: str = NEW, clock: Callable[[], float] = time.monotonic) -> SelfUpdater:
    """The updater of the process that the switch (or a restart) started, running ``running``."""

    def exec_new(p: Path) -> None:
        execs.append(p)
        raise Swapped

    after = SelfUpdater(Path(agent.config.state_dir), _pub(key), None, agent.client.download, executable=running,
                        exec_new=exec_new, version=version_, trial_seconds=30, clock=clock)
    after.after_start()
    return after


def test_a_switched_version_that_does_not_report_in_time_goes_back_to_the_installed_one(
    harness: Harness, key: Ed25519PrivateKey
) -> None:
    agent, exe, execs = _agent(harness, key)
    old = exe.read_bytes()
    _release(harness, _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'"), key)
    agent.poll_once()
    with pytest.raises(Swapped):
        agent.apply_update()
    trial = execs[-1]
    now = [1000.0]
    after = _after_switch(harness, agent, key, trial, execs, clock=lambda: now[0])
    assert after.trial_left() == 30 and not after.trial_expired()
    now[0] += 30  # no poll answered within the bound (the server unreachable, the new code broken)
    assert after.trial_expired()
    with pytest.raises(Swapped):
        after.roll_back()
    assert execs[-1] == exe and exe.read_bytes() == old
    # the installed version starts again and says why, with its first poll; it does not retry NEW
    back = SelfUpdater(Path(agent.config.state_dir), _pub(key), None, agent.client.download, executable=exe)
    back.after_start()
    agent.updater, agent._update = back, None  # this object stands for the restarted process
    agent.poll_once()
    event = _server_event(harness, agent)
    assert event is not None and (event["code"], event["version"]) == (ROLLED_BACK, NEW), event
    assert f"{NEW} did not report to the server within 30 s after the switch; back on {version()}" in event["message"]
    assert agent._update is None and not list(exe.parent.glob(".*.new"))


def test_a_switched_version_that_dies_at_start_is_rolled_back_by_the_installed_one(
    harness: Harness, key: Ed25519PrivateKey
) -> None:
    agent, exe, execs = _agent(harness, key)
    _release(harness, _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'"), key)
    agent.poll_once()
    with pytest.raises(Swapped):
        agent.apply_update()
    # the trial process died before any of its code ran; the service manager starts the installed file
    back = _after_switch(harness, agent, key, exe, execs, version_=version())
    assert back.trial_left() is None and not list(exe.parent.glob(".*.new"))
    event = back.pending_event()
    assert event is not None and (event.code, event.version) == (ROLLED_BACK, NEW)
    assert f"{NEW} stopped before it reported to the server" in event.message
    assert not back.wants(agent.client.next_run(self_update=True).update)  # not tried again


def test_a_stop_while_an_update_waits_for_a_run_drops_the_update(
    harness: Harness, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, exe, execs = _agent(harness, key)
    _release(harness, _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'"), key)
    agent.poll_once()
    assert agent._update is not None
    agent.request_exit()  # SIGTERM while the switch was pending (systemctl stop)
    agent.run_forever()
    assert execs == [] and agent._update is None and not list(exe.parent.glob(".*.new"))


@pytest.mark.parametrize("fault", ["corrupted", "badly signed", "crashes at start"])
def test_a_bad_release_is_refused_with_an_event_and_the_executable_stays(
    harness: Harness, key: Ed25519PrivateKey, fault: str
) -> None:
    agent, exe, execs = _agent(harness, key)
    old = exe.read_bytes()
    if fault == "crashes at start":
        new = _script(harness.tmp / "new", "echo 'Fatal Python error: boom' >&2; exit 3")
    else:
        new = _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'")
    _release(harness, new, Ed25519PrivateKey.generate() if fault == "badly signed" else key)
    if fault == "corrupted":  # the stored file changes after it was signed and registered
        stored = next((harness.tmp / "server" / agent_releases.RELEASE_DIR).iterdir())
        stored.write_bytes(stored.read_bytes().replace(b"9.9.9", b"6.6.6"))
    agent.poll_once()
    assert agent._update is None and not agent.stopping and execs == []
    assert exe.read_bytes() == old and not list(exe.parent.glob(".*.new"))
    code, reason = {
        "corrupted": (REFUSED, "SHA-256 mismatch"),
        "badly signed": (REFUSED, "signature does not verify"),
        "crashes at start": (ROLLED_BACK, "failed to start (exit status 3: Fatal Python error: boom)"),
    }[fault]
    agent.poll_once()  # the event goes to the server with the next poll; the version is not retried
    event = _server_event(harness, agent)
    assert event is not None and event["code"] == code and event["version"] == NEW, event
    assert reason in event["message"]
    assert agent._update is None and agent.updater.pending_event() is None
    page = harness.client.get(f"/api/agents/{agent.config.agent_id}", headers=harness.admin_headers).json()
    assert page["update_event"]["code"] == code


def test_no_offer_without_an_update_key_or_while_a_run_is_in_progress(
    harness: Harness, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, exe, _ = _agent(harness, key)
    _release(harness, _script(harness.tmp / "new", f"echo '{{\"version\": \"{NEW}\"}}'"), key)
    agent.updater.public_key = None  # enrolled without --update-key: the server offers nothing
    assert agent.client.next_run(self_update=agent.updater.enabled).update is None
    agent.updater.public_key = _pub(key)
    assert agent.client.next_run(self_update=True).update is not None

    monkeypatch.setattr(agent.active, "ids", lambda: [1])  # a run in progress
    agent.poll_once()
    assert agent._update is None and not list(exe.parent.glob(".*.new"))  # nothing fetched mid-run
