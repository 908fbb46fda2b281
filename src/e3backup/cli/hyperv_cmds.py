"""Hyper-V commands: ``hyperv list``, ``hyperv backup VM...``, ``hyperv restore VM TARGET``, and
``hyperv sim-create`` / ``hyperv sim-write`` to build a simulated host to try them on.

``--host`` is ``local`` (this machine's Hyper-V, Windows only) or ``sim:DIR`` (the simulated host).
Between CLI backups the chain (each VM's last checkpoint and RCT IDs) is kept in a state file
(``--state``; default under ``$XDG_STATE_HOME/e3backup/hyperv/``, one per repository and host);
the agent keeps it on the server instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from typing import Any

import click

from ..events import Event, Level
from ..progress import Progress
from .context import AppContext
from .output import human_bytes, print_json

pass_app = click.make_pass_decorator(AppContext)
HOST_HELP = "local (this machine's Hyper-V) or sim:DIR (a simulated host)."


@click.group()
def hyperv() -> None:
    """Back up and restore Hyper-V virtual machines (RCT incrementals)."""


@hyperv.command("list")
@click.option("--host", "host_spec", default="local", show_default=True, help=HOST_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def list_cmd(host_spec: str, as_json: bool) -> None:
    """List the host's VMs, their disks and whether they support RCT."""
    from ..sources.hyperv.open import open_host

    vms = open_host(host_spec).list_vms()
    if as_json:
        print_json({"vms": [vm.to_json() for vm in vms]})
        return
    for vm in vms:
        rct = "RCT" if vm.rct_supported else "no RCT (version < 6.2)"
        click.echo(f"{vm.name}  {vm.id}  {vm.state}  gen {vm.generation}  v{vm.version}  {vm.guest_os}  {rct}")
        for d in vm.disks:
            click.echo(f"    {d.identifier}  {d.path}  {human_bytes(d.size)}")


@hyperv.command("backup")
@click.argument("vms", nargs=-1, required=True)
@click.option("--host", "host_spec", default="local", show_default=True, help=HOST_HELP)
@click.option("--consistency", type=click.Choice(["application", "crash"]), default="application",
              show_default=True, help="Checkpoint consistency; application falls back to crash with an event.")
@click.option("--no-rct", is_flag=True, help="Read every disk whole (no RCT incrementals).")
@click.option("--parallel-vms", type=click.IntRange(1, 16), default=2, show_default=True, help="VMs at a time.")
@click.option("--parallel", type=click.IntRange(1, 64), default=2, show_default=True, help="Reader threads per disk.")
@click.option("--read-plan", type=click.Choice(["auto", "full"]), default="auto", show_default=True,
              help="auto: the guest file systems' used blocks; full: every byte.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False), help="Chain state file (see the group help).")
@click.option("--tag", "tags", multiple=True, help="Tag the snapshots (repeatable).")
@click.option("--hostname", help="Hostname to record (default: this machine's).")
@click.option("--json", "as_json", is_flag=True, help="JSON progress, event and summary lines.")
@pass_app
def backup(app: AppContext, vms: tuple[str, ...], host_spec: str, consistency: str, no_rct: bool,
           parallel_vms: int, parallel: int, read_plan: str, state_file: str | None, tags: tuple[str, ...],
           hostname: str | None, as_json: bool) -> None:
    """Back up VMS (names or IDs): one image snapshot per disk plus the configuration files."""
    from ..engines.hyperv import HyperVOptions, VmChain, run_hyperv
    from ..sources.hyperv.open import open_host

    host = open_host(host_spec)
    state_path = state_file or _default_state(app, host.name)
    state = _load_state(state_path)
    opts = HyperVOptions(
        host=host, vms=vms, enable_rct=not no_rct, consistency=consistency, parallel_vms=parallel_vms,
        read_parallel=parallel, read_plan=read_plan, hostname=hostname,
        chain={name: VmChain(c.get("vm_guid", ""), c.get("last_checkpoint_id", ""), dict(c.get("rct_ids", {})))
               for name, c in state.items()},
        tags=tuple(t for tag in tags for t in tag.split(",") if t),
    )
    repo = app.open_repo()
    out = sys.stdout if as_json else sys.stderr
    with Progress(mode="json" if as_json else "auto", out=out) as progress:
        result = run_hyperv(repo, opts, progress, _event_printer(app, as_json))
    for vm in result.vms:
        if not vm.error:
            state[vm.name] = {"vm_guid": vm.id, "last_checkpoint_id": vm.checkpoint_id, "rct_ids": vm.rct_ids}
    _save_state(state_path, state)
    if as_json:
        print_json(result.summary_json())
    else:
        for vm in result.vms:
            if vm.error:
                click.echo(f"{vm.name}: FAILED: {vm.error}", err=True)
                continue
            click.echo(f"{vm.name}: {vm.backup_type}, {vm.consistency}-consistent, "
                       f"{human_bytes(vm.changed_bytes)} changed, {human_bytes(vm.bytes_read)} read")
            for d in vm.disks:
                note = f" (chain broken: {d.chain_broken})" if d.chain_broken else ""
                click.echo(f"    {os.path.basename(d.vm_path)}: {d.backup_type}, snapshot {d.snapshot_id[:8]}, "
                           f"{human_bytes(d.bytes_read)} read{note}")
    if result.failed:
        from ..errors import E3Error

        failed = result.failed
        raise E3Error(f"{len(failed)} of {len(result.vms)} VM(s) failed: {failed[0].name}: {failed[0].error}")


@hyperv.command("restore")
@click.argument("vm")
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--checkpoint", default="latest", show_default=True, help="Which backup (its checkpoint ID).")
@click.option("--disk", help="Restore only this disk (identifier or file name).")
@click.option("--format", "image_format", type=click.Choice(["vhdx", "raw"]), default="vhdx", show_default=True)
@click.option("--register", type=click.Choice(["none", "new", "replace"]), default="none", show_default=True,
              help="Import into the host: as a new VM (new ID) or in place of the original.")
@click.option("--yes-replace", is_flag=True, help="Confirm --register replace (the original VM is removed).")
@click.option("--name", "vm_name", help="Name of the registered VM.")
@click.option("--host", "host_spec", default="local", show_default=True, help=HOST_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON summary line.")
@pass_app
def restore(app: AppContext, vm: str, target: str, checkpoint: str, disk: str | None, image_format: str,
            register: str, yes_replace: bool, vm_name: str | None, host_spec: str, as_json: bool) -> None:
    """Restore VM's disks (VHDX or raw) and configuration into TARGET, optionally registering it."""
    from ..engines.hyperv import HyperVRestoreOptions, run_hyperv_restore
    from ..sources.hyperv.open import open_host

    host = open_host(host_spec) if register != "none" else None
    opts = HyperVRestoreOptions(target=target, vm=vm, checkpoint=checkpoint, disk=disk, image_format=image_format,
                                register=register, confirm_replace=yes_replace, host=host, vm_name=vm_name)
    repo = app.open_repo()
    result = run_hyperv_restore(repo, opts, None, _event_printer(app, as_json))
    if as_json:
        print_json(result.summary_json())
        return
    for d in result.disks:
        click.echo(f"{d['file']}: {human_bytes(d['device_size'])}")
    for f in result.config_files:
        click.echo(f)
    if result.registered_vm:
        click.echo(f"registered as VM {result.registered_vm['name']} ({result.registered_vm['id']})")


@hyperv.command("sim-create")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("vm")
@click.option("--disk", "disks", multiple=True, required=True, help="Disk size, e.g. 1G (repeatable).")
@click.option("--differencing", type=int, multiple=True, help="Make disk N an AVHDX child of its base.")
@click.option("--linux", is_flag=True, help="A Linux guest.")
@click.option("--no-freeze", is_flag=True, help="The guest cannot freeze (no VSS / hv_vss_daemon).")
def sim_create(directory: str, vm: str, disks: tuple[str, ...], differencing: tuple[int, ...], linux: bool,
               no_freeze: bool) -> None:
    """Add a VM with dynamic VHDX disks to the simulated host in DIRECTORY."""
    from ..engines.disk_image import parse_size
    from ..sources.hyperv.sim import SimHost

    sizes = [parse_size(d) for d in disks]
    info = SimHost.create(directory).create_vm(
        vm, sizes, differencing=[i in differencing for i in range(len(sizes))],
        guest_os="linux" if linux else "windows", can_freeze=not no_freeze)
    click.echo(f"{info.name} {info.id}")


@hyperv.command("sim-write")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("vm")
@click.argument("disk", type=int)
@click.argument("offset")
@click.argument("length")
def sim_write(directory: str, vm: str, disk: int, offset: str, length: str) -> None:
    """A guest write on the simulated host: LENGTH random bytes at OFFSET of disk number DISK."""
    from ..engines.disk_image import parse_size
    from ..sources.hyperv.sim import SimHost

    SimHost(directory).guest_write(vm, disk, parse_size(offset), os.urandom(parse_size(length)))


def _event_printer(app: AppContext, as_json: bool) -> Any:
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            if as_json:
                sys.stdout.write(json.dumps({"message_type": "event", **e.to_json()}) + "\n")
                sys.stdout.flush()
            elif app.debug or e.effective_level() is not Level.INFO:
                click.echo(f"{e.effective_level().value}: {e.message}", err=True)

    return on_event


def _default_state(app: AppContext, host: str) -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    key = hashlib.sha256(f"{app.repo}\0{host}".encode()).hexdigest()[:16]
    return os.path.join(base, "e3backup", "hyperv", f"{key}.json")


def _load_state(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        from ..errors import UsageError

        raise UsageError(f"--state {path}: cannot read: {e}") from e
    return doc if isinstance(doc, dict) else {}


def _save_state(path: str, state: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


__all__ = ["hyperv"]
