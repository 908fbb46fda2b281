"""Boot an image snapshot in a QEMU VM: ``boot_snapshot`` and its handle, `BootedVM`.

The VM's disk is the snapshot's NBD export (``export.py``) served by this process on a unix
socket in the VM's work directory, with a copy-on-write overlay: the guest writes, the
repository never changes. QEMU gets a q35 machine with the disk on its AHCI controller (every
guest has a driver for it), SeaBIOS or OVMF as the disk needs (``machine.py``), KVM when it
works (else TCG), a standard VGA screen (QMP ``screendump`` reads it; VNC on 127.0.0.1 if
asked) and the first serial port on a pipe this process reads (``wait_for_serial``, the
``serial.log`` file, an optional callback).

Use it as a context manager::

    with boot_snapshot(repo, "latest", memory_mb=512) as vm:
        if vm.wait_for_serial("login:", timeout=120):
            vm.screendump("screen.png")

Leaving the block (or ``stop()``) quits QEMU, stops the export and discards the overlay unless
``keep_overlay``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import E3Error
from ..repo.repository import Repository
from ..repo.snapshot_filter import SnapshotFilter
from .export import Export, NbdAddress, open_export
from .machine import Accel, MachineError, choose_accel, firmware_for, ovmf_files, qemu_binary
from .qmp import Qmp, QmpError

SERIAL_KEEP = 16 << 20
"""Serial output kept in memory for ``wait_for_serial`` (the log file keeps everything)."""


class BootError(E3Error):
    """The VM could not be started, or stopped before it was asked to."""


def _opt(value: str | os.PathLike[str]) -> str:
    """A value inside a QEMU ``-drive``/``-chardev`` option list (a comma is doubled)."""
    return os.fspath(value).replace(",", ",,")


def qemu_command(
    *,
    disk_socket: str,
    qmp_socket: str,
    accel: str,
    firmware: str,
    memory_mb: int,
    cpus: int,
    vnc: bool,
    ovmf: tuple[str, str] | None = None,
) -> list[str]:
    """The QEMU command line (pure; ``ovmf`` = (code, this VM's variable store) for UEFI)."""
    cmd = [
        qemu_binary(),
        "-name", "e3backup-instant",
        "-machine", "q35",
        "-accel", accel,
        "-cpu", "host" if accel == "kvm" else "max",
        "-m", str(memory_mb),
        "-smp", str(cpus),
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-vga", "std",
        "-vnc", "127.0.0.1:0,to=99" if vnc else "none",
        "-drive", f"if=none,id=disk0,format=raw,cache=writeback,file.driver=nbd,file.server.type=unix,"
                  f"file.server.path={_opt(disk_socket)}",
        "-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=1",
        "-chardev", "stdio,id=serial0,signal=off",
        "-device", "isa-serial,chardev=serial0",
        "-qmp", f"unix:{_opt(qmp_socket)},server=on,wait=off",
        "-nic", "none",
    ]  # fmt: skip
    if firmware == "uefi":
        if ovmf is None:
            raise ValueError("UEFI needs the OVMF files")
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_opt(ovmf[0])}",
                "-drive", f"if=pflash,format=raw,unit=1,file={_opt(ovmf[1])}"]  # fmt: skip
    return cmd


class BootedVM:
    """A running VM booted from an image snapshot (made by `boot_snapshot`)."""

    def __init__(
        self,
        export: Export,
        stack: contextlib.ExitStack,
        workdir: Path,
        own_workdir: bool,
        overlay: Path,
        keep_overlay: bool,
        accel: Accel,
        firmware: str,
        on_serial: Callable[[bytes], None] | None,
    ) -> None:
        self.export = export
        self.workdir = workdir
        self.overlay = overlay
        """The copy-on-write file holding the guest's writes."""
        self.keep_overlay = keep_overlay
        self.accel = accel.name
        """``kvm`` or ``tcg``."""
        self.accel_reason = accel.reason
        self.firmware = firmware
        """``bios`` or ``uefi``."""
        self.serial_log = workdir / "serial.log"
        self.vnc: str | None = None
        """``HOST:PORT`` of the VNC server (when asked for), else None."""
        self._stack = stack
        self._own_workdir = own_workdir
        self._on_serial = on_serial
        self._serial = bytearray()
        self._cond = threading.Condition()
        self._eof = False
        self._stopped = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._qmp: Qmp | None = None
        self._reader: threading.Thread | None = None

    # -- what callers use ----------------------------------------------------------------------

    @property
    def snapshot_id(self) -> str:
        return self.export.snapshot_id

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def serial_text(self) -> str:
        """The serial output so far (the last 16 MiB)."""
        with self._cond:
            return self._serial.decode(errors="replace")

    @property
    def disk_errors(self) -> list[str]:
        """Reads of the disk that failed on the repository side (each names the blob or pack)."""
        return list(self.export.errors)

    def wait_for_serial(self, marker: str, timeout: float) -> bool:
        """True once ``marker`` has appeared on the serial console (since boot); False after
        ``timeout`` seconds or when the VM stops without it."""
        want = marker.encode()
        with self._cond:
            self._cond.wait_for(lambda: want in self._serial or self._eof, timeout)
            return want in self._serial

    def screendump(self, png_path: str | os.PathLike[str]) -> Path:
        """Write the guest's screen as a PNG (QMP ``screendump``); returns the path."""
        path = Path(png_path).absolute()
        self._monitor().execute("screendump", filename=str(path), format="png")
        return path

    def wait_for_screen_stable(self, timeout: float = 120.0, stable_for: float = 5.0, interval: float = 1.0) -> bool:
        """True once the screen has not changed for ``stable_for`` seconds (screens compared
        every ``interval``); False after ``timeout`` or when the VM stops."""
        probe = self.workdir / "screen-probe.ppm"
        last: bytes | None = None
        same_since = 0.0
        waited = 0.0
        while waited <= timeout and self.running:
            self._monitor().execute("screendump", filename=str(probe))
            digest = hashlib.sha256(probe.read_bytes()).digest()
            if digest == last:
                if waited - same_since >= stable_for:
                    return True
            else:
                last, same_since = digest, waited
            with self._cond:  # between two screens; returns at once if the VM is gone
                self._cond.wait_for(lambda: self._eof, interval)
            waited += interval
        return False

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for QEMU to exit (the guest powered off); its exit code, or None on timeout."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, keep_overlay: bool | None = None) -> None:
        """Quit QEMU, stop the export; the overlay is kept if ``keep_overlay`` (default: as given
        to `boot_snapshot`), else deleted. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        keep = self.keep_overlay if keep_overlay is None else keep_overlay
        try:
            if self._proc is not None and self._proc.poll() is None:
                with contextlib.suppress(QmpError, OSError):
                    self._monitor().execute("quit")
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._qmp is not None:
                self._qmp.close()
            if self._reader is not None:
                self._reader.join(5)
        finally:
            self._stack.close()
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    self.overlay.unlink()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BootedVM:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- inside --------------------------------------------------------------------------------

    def _monitor(self) -> Qmp:
        if self._qmp is None:
            raise BootError("the VM is not running")
        return self._qmp

    def _start(self, cmd: list[str]) -> None:
        log = open(self.workdir / "qemu.log", "wb")  # noqa: SIM115 - QEMU writes it while it runs
        with log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        self._reader = threading.Thread(target=self._read_serial, name="vm-serial", daemon=True)
        self._reader.start()
        qmp_path = str(self.workdir / "qmp.sock")
        done = threading.Event()
        for _ in range(600):  # QEMU makes its monitor socket within a second or two
            if self._proc.poll() is not None:
                raise BootError(f"QEMU exited at start ({self._proc.returncode}): {self._qemu_log()}")
            if os.path.exists(qmp_path):
                try:
                    self._qmp = Qmp(qmp_path)
                    break
                except (OSError, QmpError):
                    pass
            done.wait(0.05)
        else:
            raise BootError(f"QEMU's monitor did not come up: {self._qemu_log()}")
        info = self._qmp.execute("query-vnc")
        if info.get("enabled"):
            self.vnc = f"{info.get('host')}:{info.get('service')}"

    def _qemu_log(self) -> str:
        try:
            text = (self.workdir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-5:]) or "(no log)"

    def _read_serial(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with open(self.serial_log, "ab") as log:
            while True:
                data = os.read(fd, 65536)
                if data:
                    log.write(data)
                    log.flush()
                    if self._on_serial is not None:
                        self._on_serial(data)
                with self._cond:
                    if not data:
                        self._eof = True
                    else:
                        self._serial += data
                        if len(self._serial) > SERIAL_KEEP:
                            del self._serial[: len(self._serial) - SERIAL_KEEP]
                    self._cond.notify_all()
                if not data:
                    return


def boot_snapshot(
    repo: Repository,
    snapshot: str = "latest",
    *,
    select: SnapshotFilter | None = None,
    accel: str = "auto",
    firmware: str = "auto",
    memory_mb: int = 1024,
    cpus: int = 1,
    overlay: str | os.PathLike[str] | None = None,
    keep_overlay: bool = False,
    vnc: bool = False,
    workdir: str | os.PathLike[str] | None = None,
    on_serial: Callable[[bytes], None] | None = None,
) -> BootedVM:
    """Boot image snapshot ``snapshot`` (an ID, a prefix or ``latest``, narrowed by ``select``) in
    a QEMU VM and return its running handle (a context manager: leaving it stops the VM).

    - ``accel``: ``auto`` (KVM when it works here, else TCG), ``kvm`` (refuse to fall back) or
      ``tcg``. ``firmware``: ``auto`` (UEFI for a GPT disk with an EFI system partition, else
      BIOS), ``bios`` or ``uefi``.
    - ``overlay``: the copy-on-write file for the guest's writes (default: ``overlay.e3bovl`` in
      the work directory); an existing one of the same snapshot is continued. ``keep_overlay``:
      keep it at `BootedVM.stop` (default: delete it).
    - ``vnc``: also serve the screen on 127.0.0.1 (``BootedVM.vnc``). ``workdir``: where the
      sockets, ``serial.log`` and ``qemu.log`` go (default: a new temporary directory, removed
      at stop). ``on_serial``: called with each piece of serial output (from a thread).

    Errors: the repository's (``WrongPasswordError``, ``SnapshotNotFoundError``...), a snapshot
    that is not an image (``NotAnImageError``), ``MachineError`` (QEMU, OVMF or KVM missing),
    ``BootError`` (QEMU failed to start)."""
    if accel not in ("auto", "kvm", "tcg"):
        raise ValueError(f"accel must be auto, kvm or tcg, not {accel!r}")
    if firmware not in ("auto", "bios", "uefi"):
        raise ValueError(f"firmware must be auto, bios or uefi, not {firmware!r}")
    qemu_binary()  # fail before serving anything
    chosen = choose_accel(accel)
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="e3b-vm-")) if workdir is None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    overlay_path = Path(overlay) if overlay is not None else work / "overlay.e3bovl"
    stack = contextlib.ExitStack()
    vm: BootedVM | None = None
    try:
        sock = str(work / "disk.sock")
        export = stack.enter_context(
            open_export(repo, snapshot, NbdAddress("unix", path=sock), overlay=str(overlay_path), select=select)
        )
        fw = firmware_for(export.image.layout) if firmware == "auto" else firmware
        ovmf: tuple[str, str] | None = None
        if fw == "uefi":
            code, template = ovmf_files()
            varstore = work / "OVMF_VARS.fd"
            shutil.copyfile(template, varstore)
            ovmf = (code, str(varstore))
        vm = BootedVM(export, stack, work, own, overlay_path, keep_overlay, chosen, fw, on_serial)
        cmd = qemu_command(
            disk_socket=sock,
            qmp_socket=str(work / "qmp.sock"),
            accel=chosen.name,
            firmware=fw,
            memory_mb=memory_mb,
            cpus=cpus,
            vnc=vnc,
            ovmf=ovmf,
        )
        vm._start(cmd)
        return vm
    except BaseException:
        if vm is not None:
            vm.stop()
        else:
            stack.close()
            if not keep_overlay:
                with contextlib.suppress(FileNotFoundError):
                    overlay_path.unlink()
            if own:
                shutil.rmtree(work, ignore_errors=True)
        raise


__all__ = ["BootError", "BootedVM", "MachineError", "boot_snapshot", "qemu_command"]
