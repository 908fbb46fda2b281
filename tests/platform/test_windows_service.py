"""The Windows service: its body (start, stop that cancels) with a fake agent, and the pywin32
glue with stand-in modules that record what pywin32's ``win32serviceutil.ServiceFramework``,
``InstallService`` and ``servicemanager`` would be asked (pywin32's documented API; the real thing
runs in ``pytest -m windows``)."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.service import AgentServiceBody, service_logging
from e3backup.platform.windows import service
from tests.helpers import run_cli


class FakeAgent:
    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped_with: float | None = None

    def start(self) -> None:
        self.started.set()

    def stop(self, timeout: float = 60.0) -> None:
        self.stopped_with = timeout


def test_service_stop_stops_the_agent_within_the_scm_wait_hint() -> None:
    agent = FakeAgent()
    body = AgentServiceBody(lambda: agent)
    t = threading.Thread(target=body.run)
    t.start()
    assert agent.started.wait(10)
    assert agent.stopped_with is None  # runs until the service is stopped
    body.stop()
    t.join(10)
    assert not t.is_alive()
    assert agent.stopped_with is not None and agent.stopped_with * 1000 < service.STOP_WAIT_HINT_MS


@pytest.fixture
def pywin32(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {"install": [], "remove": [], "stop": [], "status": [], "log": [], "host": []}

    class ServiceFramework:
        def __init__(self, args: Any) -> None:
            self.args = args

        def ReportServiceStatus(self, status: int, waitHint: int = 0) -> None:
            calls["status"].append((status, waitHint))

    util = types.ModuleType("win32serviceutil")
    util.ServiceFramework = ServiceFramework  # type: ignore[attr-defined]
    util.InstallService = lambda *a, **kw: calls["install"].append((a, kw))  # type: ignore[attr-defined]
    util.RemoveService = lambda name: calls["remove"].append(name)  # type: ignore[attr-defined]

    def stop_service(name: str) -> None:
        calls["stop"].append(name)
        raise RuntimeError("(1062, 'ControlService', 'The service has not been started.')")

    util.StopService = stop_service  # type: ignore[attr-defined]
    svc = types.ModuleType("win32service")
    svc.SERVICE_AUTO_START = 2  # type: ignore[attr-defined]
    svc.SERVICE_STOP_PENDING = 3  # type: ignore[attr-defined]
    mgr = types.ModuleType("servicemanager")
    mgr.EVENTLOG_INFORMATION_TYPE = 4  # type: ignore[attr-defined]
    mgr.PYS_SERVICE_STARTED = 0x40000001  # type: ignore[attr-defined]
    mgr.PYS_SERVICE_STOPPED = 0x40000002  # type: ignore[attr-defined]
    mgr.LogMsg = lambda *a: calls["log"].append(a)  # type: ignore[attr-defined]
    mgr.Initialize = lambda: None  # type: ignore[attr-defined]
    mgr.PrepareToHostSingle = lambda cls: calls["host"].append(cls)  # type: ignore[attr-defined]
    mgr.StartServiceCtrlDispatcher = lambda: None  # type: ignore[attr-defined]
    for name, mod in (("win32serviceutil", util), ("win32service", svc), ("servicemanager", mgr)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_install_registers_an_automatic_service_running_the_agent(pywin32: dict[str, list[Any]]) -> None:
    service.install(["C:\\Program Files\\E3Backup\\e3backup.exe", "agent", "service-host"])
    (args, kw), = pywin32["install"]
    assert args[1:3] == ("E3BackupAgent", "E3Backup Agent")
    assert kw["startType"] == 2 and kw["exeName"] == "C:\\Program Files\\E3Backup\\e3backup.exe"
    assert kw["exeArgs"] == "agent service-host"
    service.uninstall()  # not running: removed anyway
    assert pywin32["stop"] == ["E3BackupAgent"] and pywin32["remove"] == ["E3BackupAgent"]


def test_scm_start_and_stop_drive_the_body(pywin32: dict[str, list[Any]]) -> None:
    agent = FakeAgent()
    service.host(lambda: AgentServiceBody(lambda: agent))
    cls = pywin32["host"][0]
    instance = cls(["E3BackupAgent"])
    t = threading.Thread(target=instance.SvcDoRun)
    t.start()
    assert agent.started.wait(10)
    instance.SvcStop()  # what the SCM calls on "sc stop"
    t.join(10)
    assert not t.is_alive() and agent.stopped_with is not None
    assert pywin32["status"] == [(3, service.STOP_WAIT_HINT_MS)]
    assert [a[1] for a in pywin32["log"]] == [0x40000001, 0x40000002]


def test_without_pywin32_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "win32serviceutil", None)
    with pytest.raises(service.ServiceError, match="needs pywin32"):
        service.uninstall()


def test_service_commands_refuse_other_platforms(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "agent", "install-service")
    assert r.code != 0 and "install-service needs Windows (this machine: linux)" in r.err


def test_service_log_file_rotates_and_redacts(tmp_path: Path) -> None:
    import logging

    handlers = service_logging(tmp_path / "logs", event_log=False)
    try:
        logging.getLogger("e3backup.agent").warning("run 7 failed")
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()
    assert "WARNING e3backup.agent: run 7 failed" in (tmp_path / "logs" / "agent.log").read_text()
    assert handlers[0].maxBytes == 10 * 1024 * 1024  # type: ignore[attr-defined]
