"""The agent as a Windows service, through pywin32's service framework.

Why pywin32: it is the maintained binding of the Service Control Manager and the Event Log for
CPython (``win32serviceutil.ServiceFramework``, ``servicemanager``), ships wheels for every
supported Python, works inside a single-file executable (``PrepareToHostSingle``), and is what the
alternatives wrap anyway; ``pywin32`` is a dependency on Windows only. Its modules are imported
inside the functions, so the package imports everywhere and ``mypy --platform win32`` needs no
stubs.

    install(argv)   register the service (automatic start) to run ``argv``
                    (``e3backup agent service-host``)
    uninstall()     stop it if running, then remove it
    host(factory)   run as the service: SvcDoRun runs ``factory().run()``; a service stop calls
                    ``stop()`` on it, which cancels the running job (reported, shadow copy deleted)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ...errors import E3Error

SERVICE_NAME = "E3BackupAgent"
DISPLAY_NAME = "E3Backup Agent"
DESCRIPTION = "Backs up this machine's files, volumes and virtual machines for e3backup."
STOP_WAIT_HINT_MS = 120_000  # the SCM waits this long while a run is cancelled and reported


class ServiceError(E3Error):
    pass


class ServiceBody(Protocol):
    def run(self) -> None:
        """Block until ``stop()``."""
        ...

    def stop(self) -> None: ...


def _pywin32() -> tuple[Any, Any, Any]:
    try:
        import servicemanager
        import win32service
        import win32serviceutil
    except ImportError as e:
        raise ServiceError(f"the Windows service needs pywin32 on Windows (this machine: {sys.platform}): {e}") from e
    return win32serviceutil, win32service, servicemanager


def install(argv: list[str]) -> None:
    util, svc, _ = _pywin32()
    try:
        util.InstallService(
            f"{__name__}.AgentService", SERVICE_NAME, DISPLAY_NAME, startType=svc.SERVICE_AUTO_START,
            exeName=argv[0], exeArgs=subprocess.list2cmdline(argv[1:]), description=DESCRIPTION,
        )
    except Exception as e:  # pywintypes.error: (code, function, message)
        raise ServiceError(f"installing the {SERVICE_NAME} service failed: {e}") from e


def uninstall() -> None:
    util, _svc, _ = _pywin32()
    try:
        util.StopService(SERVICE_NAME)
    except Exception:
        pass
    try:
        util.RemoveService(SERVICE_NAME)
    except Exception as e:
        raise ServiceError(f"removing the {SERVICE_NAME} service failed: {e}") from e


def service_class(factory: Callable[[], ServiceBody]) -> type:
    """The ``ServiceFramework`` subclass hosting ``factory()`` (built with ``type``: pywin32's
    base class is only known at run time)."""
    util, svc, manager = _pywin32()

    def __init__(self: Any, args: Any) -> None:
        util.ServiceFramework.__init__(self, args)
        self.body = factory()

    def SvcStop(self: Any) -> None:
        self.ReportServiceStatus(svc.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
        self.body.stop()

    def SvcDoRun(self: Any) -> None:
        manager.LogMsg(manager.EVENTLOG_INFORMATION_TYPE, manager.PYS_SERVICE_STARTED, (SERVICE_NAME, ""))
        self.body.run()
        manager.LogMsg(manager.EVENTLOG_INFORMATION_TYPE, manager.PYS_SERVICE_STOPPED, (SERVICE_NAME, ""))

    return type("AgentService", (util.ServiceFramework,), {
        "_svc_name_": SERVICE_NAME, "_svc_display_name_": DISPLAY_NAME, "_svc_description_": DESCRIPTION,
        "__init__": __init__, "SvcStop": SvcStop, "SvcDoRun": SvcDoRun,
    })


def host(factory: Callable[[], ServiceBody]) -> None:
    """Run as the service the SCM started (blocks until it stops)."""
    _util, _svc, manager = _pywin32()
    manager.Initialize()
    manager.PrepareToHostSingle(service_class(factory))
    manager.StartServiceCtrlDispatcher()


__all__ = ["DISPLAY_NAME", "SERVICE_NAME", "ServiceBody", "ServiceError", "host", "install", "service_class",
           "uninstall"]
