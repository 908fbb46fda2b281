"""The VM's machine choices: firmware by disk, accelerator by what works, the QEMU command."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.instant import MachineError, boot_snapshot, machine
from e3backup.instant.vm import qemu_command
from e3backup.repo import Repository
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.stored_image import NotAnImageError

MiB = 1 << 20


def test_a_gpt_disk_with_an_efi_system_partition_boots_uefi_every_other_bios() -> None:
    esp = Partition(1, MiB, 100 * MiB, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", type_name="efi-system")
    root = Partition(2, 101 * MiB, 100 * MiB, "0FC63DAF-8483-4772-8E79-3D69D8477DE4", type_name="linux")
    assert machine.firmware_for(DiskLayout(512, 256 * MiB, "gpt", (esp, root), "D")) == "uefi"
    assert machine.firmware_for(DiskLayout(512, 256 * MiB, "gpt", (root,), "D")) == "bios"
    mbr = Partition(1, MiB, 100 * MiB, "0x83", type_name="linux", bootable=True)
    assert machine.firmware_for(DiskLayout(512, 256 * MiB, "mbr", (mbr,), "D")) == "bios"


def test_the_qemu_command_follows_firmware_accelerator_and_screen() -> None:
    bios = qemu_command(disk_socket="/t/d,1.sock", qmp_socket="/t/q", accel="tcg", firmware="bios",
                        memory_mb=300, cpus=2, vnc=False)  # fmt: skip
    assert "pflash" not in " ".join(bios)
    assert bios[bios.index("-cpu") + 1] == "max" and bios[bios.index("-accel") + 1] == "tcg"
    assert bios[bios.index("-m") + 1] == "300" and bios[bios.index("-smp") + 1] == "2"
    assert bios[bios.index("-vnc") + 1] == "none"
    assert "file.server.path=/t/d,,1.sock" in bios[bios.index("-drive") + 1]  # a comma in a path is doubled
    uefi = qemu_command(disk_socket="/t/d", qmp_socket="/t/q", accel="kvm", firmware="uefi", memory_mb=512,
                        cpus=1, vnc=True, ovmf=("/fw/CODE.fd", "/t/VARS.fd"))  # fmt: skip
    assert "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd" in uefi
    assert "if=pflash,format=raw,unit=1,file=/t/VARS.fd" in uefi
    assert uefi[uefi.index("-cpu") + 1] == "host"
    assert uefi[uefi.index("-vnc") + 1].startswith("127.0.0.1:")


def test_kvm_is_used_only_when_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "kvm_works", lambda: (False, "KVM fails to run the firmware (probe)"))
    auto = machine.choose_accel("auto")
    assert auto == machine.Accel("tcg", "software emulation: KVM fails to run the firmware (probe)")
    with pytest.raises(MachineError, match="KVM was asked for but does not work here: KVM fails"):
        machine.choose_accel("kvm")
    assert machine.choose_accel("tcg").name == "tcg"
    monkeypatch.setattr(machine, "kvm_works", lambda: (True, "KVM runs the firmware (probed)"))
    assert machine.choose_accel("auto").name == "kvm"


def test_boot_errors_name_the_problem(repo: Repository, repo_path: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "a.txt").write_text("hello")
    files_snap = run_backup(repo, BackupOptions(paths=[str(tmp_path / "f")])).snapshot_id
    with pytest.raises(NotAnImageError, match="is not a disk image snapshot"):
        boot_snapshot(repo, files_snap, workdir=tmp_path / "vm")
    assert not (tmp_path / "vm" / "overlay.e3bovl").exists()  # nothing left behind
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MachineError, match="qemu-system-x86_64 is missing: install the Debian package qemu-system-x86"):
        boot_snapshot(repo, files_snap)
