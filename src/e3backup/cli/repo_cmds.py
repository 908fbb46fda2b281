"""Repository commands: init, snapshots, cat, check, unlock."""

from __future__ import annotations

import json
import sys

import click

from ..errors import E3Error, UsageError
from ..repo import pack as packmod
from ..repo.check import Checker, parse_subset
from ..repo.lock import list_locks, remove_stale_locks
from ..repo.repository import Repository, warn_unreadable_snapshot
from ..repo.snapshot_filter import SnapshotFilter
from ..repo.timefmt import format_ns
from ..store.base import FileType
from .context import AppContext
from .output import print_json

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@pass_app
def init(app: AppContext) -> None:
    """Create a new repository."""
    repo = Repository.init(app.store(), app.password(confirm=True))
    click.echo(f"created e3backup repository {repo.config.id[:10]} at {repo.store.location}")
    click.echo("Keep the password safe: without it the data cannot be recovered.", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--host", "hosts", multiple=True, help="Only snapshots of this host (repeatable: any of them).")
@click.option("--tag", "tags", multiple=True, help="Only snapshots with these tags (a,b: both; repeatable: any).")
@click.option("--path", "paths", multiple=True, help="Only snapshots that include this path (repeatable: all).")
@pass_app
def snapshots(
    app: AppContext, as_json: bool, hosts: tuple[str, ...], tags: tuple[str, ...], paths: tuple[str, ...]
) -> None:
    """List snapshots. An unreadable snapshot file is named (a warning; with --json a JSON line on
    stderr) and the others are listed."""
    repo = app.open_repo()
    wanted = SnapshotFilter.from_options(hosts, tags, paths)

    def unreadable(name: str, e: E3Error) -> None:
        if as_json:
            sys.stderr.write(json.dumps({"message_type": "warning", "snapshot": name,
                                         "message": f"unreadable snapshot {name}: {e}"}) + "\n")
        else:
            warn_unreadable_snapshot(name, e)

    snaps = [s for s in repo.snapshots(on_error=unreadable) if wanted(s)]
    if as_json:
        print_json([s.public_json() for s in snaps])
        return
    click.echo(f"{'ID':<10}{'Time':<21}{'Host':<16}{'Tags':<24}Paths")
    click.echo("-" * 80)
    for s in snaps:
        t = format_ns(s.time)[:19].replace("T", " ")
        click.echo(f"{s.short_id:<10}{t:<21}{s.hostname:<16}{','.join(s.tags):<24}{', '.join(s.paths)}")
    click.echo("-" * 80)
    click.echo(f"{len(snaps)} snapshots")


@click.command()
@click.argument(
    "what",
    type=click.Choice(["config", "snapshot", "index", "pack-header", "key", "masterkey", "tree", "blob"]),
)
@click.argument("obj_id", required=False)
@pass_app
def cat(app: AppContext, what: str, obj_id: str | None) -> None:
    """Print a decrypted repository object as JSON (blob: raw bytes)."""
    repo = app.open_repo()
    if what == "config":
        print_json(
            {
                "version": repo.config.version,
                "id": repo.config.id,
                "chunker_polynomial": f"{repo.config.chunker_polynomial:x}",
            }
        )
        return
    if what == "masterkey":
        print_json(repo.key.to_json())
        return
    if not obj_id:
        raise UsageError(f"cat {what} needs an ID")
    if what == "snapshot":
        snap = repo.find_snapshot(obj_id)
        print_json(snap.to_json())
    elif what == "index":
        print_json(repo.load_unpacked(FileType.INDEX, _full_id(repo, FileType.INDEX, obj_id)))
    elif what == "key":
        from ..store.base import Handle

        sys.stdout.write(repo.store.load(Handle(FileType.KEY, _full_id(repo, FileType.KEY, obj_id))).decode() + "\n")
    elif what == "pack-header":
        pack_id = _full_id(repo, FileType.PACK, obj_id)
        blobs = packmod.read_header(repo.store, repo.key, pack_id)
        print_json(
            {
                "id": pack_id,
                "blobs": [
                    {
                        "id": b.id.hex(),
                        "type": b.type.json_name,
                        "offset": b.offset,
                        "length": b.length,
                        **({"uncompressed_length": b.uncompressed_length} if b.uncompressed_length else {}),
                    }
                    for b in blobs
                ],
            }
        )
    elif what in ("tree", "blob"):
        from ..repo.blob import BlobType

        repo.load_index()
        bt = BlobType.TREE if what == "tree" else BlobType.DATA
        data = repo.load_blob(bt, bytes.fromhex(obj_id))
        sys.stdout.buffer.write(data)


def _full_id(repo: Repository, t: FileType, prefix: str) -> str:
    prefix = prefix.lower()
    matches = [n for n in repo.list_ids(t) if n.startswith(prefix)]
    if len(matches) != 1:
        raise UsageError(f"{t.value}: {'no' if not matches else 'more than one'} file matches {prefix!r}")
    return matches[0]


@click.command()
@click.option("--read-data", is_flag=True, help="Read and verify every pack.")
@click.option("--read-data-subset", metavar="N%|n/t", help="Read and verify a subset of packs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def check(app: AppContext, read_data: bool, read_data_subset: str | None, as_json: bool) -> None:
    """Check the repository for errors (exit 1 if any)."""
    subset = "100%" if read_data else read_data_subset
    if subset is not None:
        try:
            parse_subset(subset)
        except ValueError as e:
            raise UsageError(str(e)) from e
    repo = app.open_repo()
    with repo.lock(exclusive=True):

        def progress(stage: str, done: int, total: int) -> None:
            if sys.stderr.isatty() and not as_json:
                click.echo(f"\r{stage}: {done}/{total} packs", err=True, nl=done == total)

        result = Checker(repo, progress=progress).run(subset)
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "snapshots": result.snapshots,
                "trees": result.trees,
                "packs": result.packs_checked,
                "packs_read": result.packs_read,
                "errors": [p.message for p in result.errors],
                "hints": [p.message for p in result.problems if p.severity == "hint"],
            }
        )
    else:
        for p in result.problems:
            click.echo(f"{p.severity}: {p.message}", err=p.severity == "error")
        click.echo(
            f"checked {result.snapshots} snapshots, {result.trees} trees, {result.packs_checked} packs"
            + (f", read {result.packs_read} packs" if subset else "")
        )
    if not result.ok:
        raise E3Error(f"repository contains {len(result.errors)} errors")
    if not as_json:
        click.echo("no errors were found")


@click.command()
@click.option("--remove-all", is_flag=True, help="Remove all locks, even live ones.")
@pass_app
def unlock(app: AppContext, remove_all: bool) -> None:
    """Remove stale locks."""
    repo = app.open_repo()
    removed = remove_stale_locks(repo.store, repo.key, repo.version, remove_all)
    for lk in removed:
        click.echo(f"removed {lk.describe()}")
    left = list_locks(repo.store, repo.key, repo.version)
    click.echo(f"{len(removed)} locks removed, {len(left)} remain")


COMMANDS = [init, snapshots, cat, check, unlock]
