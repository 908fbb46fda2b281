"""File commands: backup, restore, ls, dump."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import click

from ..engines.files import BackupOptions, Excluder, run_backup
from ..errors import E3Error, UsageError
from ..progress import Progress
from ..repo.blob import BlobType
from ..repo.node import Node, unix_perm
from ..repo.repository import Repository
from ..repo.timefmt import format_ns
from .context import AppContext
from .output import human_bytes, print_json

pass_app = click.make_pass_decorator(AppContext)


class PartialBackup(E3Error):
    """The snapshot was saved, but some files could not be read (restic's exit code 3)."""

    exit_code = 3


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", help="Hostname to record (default: this machine's).")
@click.option("-e", "--exclude", "excludes", multiple=True, help="Exclude a pattern (repeatable).")
@click.option("--exclude-file", "exclude_files", multiple=True, help="Read exclude patterns from a file.")
@click.option("-x", "--one-file-system", is_flag=True, help="Do not cross file system boundaries.")
@click.option("--parent", help="Snapshot to compare with (default: latest of this host and paths).")
@click.option("--force", is_flag=True, help="Read every file, ignoring the parent snapshot.")
@click.option("--read-concurrency", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON progress lines and a JSON summary.")
@pass_app
def backup(
    app: AppContext,
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    host: str | None,
    excludes: tuple[str, ...],
    exclude_files: tuple[str, ...],
    one_file_system: bool,
    parent: str | None,
    force: bool,
    read_concurrency: int,
    as_json: bool,
) -> None:
    """Back up files and directories into a new snapshot."""
    opts = BackupOptions(
        paths=list(paths),
        tags=[t for tag in tags for t in tag.split(",") if t],
        host=host,
        excluder=Excluder.from_options(excludes, exclude_files),
        one_file_system=one_file_system,
        parent=parent,
        force_full=force,
        read_workers=read_concurrency,
        upload_connections=app.upload_connections,
        memory=app.memory,
    )
    repo = app.open_repo()
    with Progress(mode="json" if as_json else "auto", out=sys.stdout if as_json else sys.stderr) as progress:
        result = run_backup(repo, opts, progress)
    for err in result.errors:
        click.echo(f"error: {err}", err=True)
    if as_json:
        print_json(result.summary_json())
    else:
        click.echo(
            f"Files: {result.files_new} new, {result.files_changed} changed, {result.files_unmodified} unmodified\n"
            f"Dirs:  {result.dirs_new} new, {result.dirs_changed} changed, {result.dirs_unmodified} unmodified\n"
            f"Added to the repository: {human_bytes(result.bytes_added)} "
            f"({human_bytes(result.bytes_stored)} stored)\n"
            f"processed {result.total_files_processed} files, {human_bytes(result.total_bytes_processed)} "
            f"in {result.duration:.1f}s\n"
            f"snapshot {result.snapshot_id[:8]} saved"
        )
    if result.errors:
        raise PartialBackup(
            f"snapshot {result.snapshot_id[:8]} saved, but {len(result.errors)} files could not be read"
        )


@click.command()
@click.argument("snapshot")
@click.option("-t", "--target", required=True, help="Directory to restore into.")
@click.option("-i", "--include", "includes", multiple=True, help="Restore only matching paths.")
@click.option("-e", "--exclude", "excludes", multiple=True, help="Do not restore matching paths.")
@click.option("--verify", is_flag=True, help="Re-read restored files and check them against the snapshot.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Packs restored at once (default: one per core, at least 2; on S3 four per core, at least 8).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON progress lines and a JSON summary.")
@pass_app
def restore(
    app: AppContext,
    snapshot: str,
    target: str,
    includes: tuple[str, ...],
    excludes: tuple[str, ...],
    verify: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Restore SNAPSHOT[:SUBPATH] (an ID, a unique prefix or "latest") into a directory."""
    from ..restore.files import RestoreOptions, run_restore  # not imported by every backup

    repo = app.open_repo()
    if workers is None:
        # decrypting and hashing are CPU-bound: more threads than cores only add memory; S3's
        # latency is hidden by a few more
        cores = os.cpu_count() or 2
        workers = max(8, 4 * cores) if (app.repo or "").startswith("s3:") else max(2, cores)
    opts = RestoreOptions(target, list(includes), list(excludes), verify, workers, snapshot=snapshot, memory=app.memory)
    with Progress(mode="json" if as_json else "auto", out=sys.stdout if as_json else sys.stderr) as progress:
        result = run_restore(repo, opts, progress)
    for err in result.errors:
        click.echo(f"error: {err}", err=True)
    if as_json:
        print_json(result.summary_json())
    else:
        click.echo(
            f"restored {result.files} files, {result.dirs} dirs, {result.others} others, "
            f"{human_bytes(result.total_bytes)} to {target}"
            + (f"; verified {result.verified_files} files" if verify else "")
        )
    if result.failed_files:
        raise E3Error(
            f"restore finished, but {len(result.failed_files)} "
            f"{'file' if len(result.failed_files) == 1 else 'files'} could not be restored "
            "(named above; they were left out)"
        )
    if result.errors:
        raise E3Error(f"restore finished with {len(result.errors)} errors")


def _ls_json(path: str, n: Node) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": n.display_name,
        "type": n.type,
        "path": path,
        "uid": n.uid,
        "gid": n.gid,
        "size": n.size,
        "mode": n.mode,
        "permissions": oct(unix_perm(n.mode)),
        "mtime": format_ns(n.mtime),
        "atime": format_ns(n.atime),
        "ctime": format_ns(n.ctime),
        "struct_type": "node",
    }
    if n.type == "symlink" and n.linktarget is not None:
        d["linktarget"] = os.fsdecode(n.linktarget)
    return d


@click.command()
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@click.option("-l", "--long", "long_", is_flag=True, help="Show mode, size and time.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def ls(app: AppContext, snapshot: str, path: str, long_: bool, as_json: bool) -> None:
    """List the files in a snapshot (under PATH)."""
    from ..restore.files import resolve

    repo = app.open_repo()
    repo.load_index()
    snap = repo.find_snapshot(snapshot)
    nodes, prefix = resolve(repo, snap, path)
    if as_json:
        print_json({**snap.public_json(), "struct_type": "snapshot"})
    for p, n in _walk_nodes(repo, nodes, prefix.encode()):
        sp = os.fsdecode(p)
        if as_json:
            print_json(_ls_json(sp, n))
        elif long_:
            click.echo(f"{stat_string(n)} {n.uid:>5} {n.gid:>5} {n.size:>12} {format_ns(n.mtime)[:19]} {sp}")
        else:
            click.echo(sp)


def stat_string(n: Node) -> str:
    import stat as st

    kinds = {"dir": st.S_IFDIR, "symlink": st.S_IFLNK, "fifo": st.S_IFIFO, "dev": st.S_IFBLK, "chardev": st.S_IFCHR}
    return st.filemode(kinds.get(n.type, st.S_IFREG) | unix_perm(n.mode))


def _walk_nodes(repo: Repository, nodes: list[Node], prefix: bytes):  # type: ignore[no-untyped-def]
    for n in nodes:
        p = prefix + b"/" + n.name
        yield p, n
        if n.type == "dir" and n.subtree is not None:
            yield from _walk_nodes(repo, repo.load_tree(n.subtree), p)


@click.command()
@click.argument("snapshot")
@click.argument("path")
@pass_app
def dump(app: AppContext, snapshot: str, path: str) -> None:
    """Write a file from a snapshot to stdout (a directory as a tar archive)."""
    from ..restore.files import resolve

    repo = app.open_repo()
    repo.load_index()
    snap = repo.find_snapshot(snapshot)
    parts = [p for p in path.split("/") if p]
    if not parts:
        nodes, prefix = repo.load_tree(snap.tree), ""
        _dump_tar(repo, nodes, sys.stdout.buffer)
        return
    parent_nodes, _ = resolve(repo, snap, "/".join(parts[:-1]))
    node = next((n for n in parent_nodes if n.name == os.fsencode(parts[-1])), None)
    if node is None:
        raise UsageError(f"{path} not found in snapshot {snap.short_id}")
    out = sys.stdout.buffer
    if node.type == "file":
        for c in node.content or []:
            out.write(repo.load_blob(BlobType.DATA, c))
        out.flush()
    elif node.type == "dir":
        _dump_tar(repo, [node], out)
    else:
        raise UsageError(f"{path} is a {node.type}, not a file or directory")
    _ = prefix if not parts else None


def _dump_tar(repo: Repository, nodes: list[Node], out: IO[bytes]) -> None:
    import tarfile

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for p, n in _walk_nodes(repo, nodes, b""):
            info = tarfile.TarInfo(os.fsdecode(p.lstrip(b"/")))
            info.mode = unix_perm(n.mode)
            info.uid, info.gid, info.uname, info.gname = n.uid, n.gid, n.user, n.group
            info.mtime = n.mtime / 1e9
            if n.type == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif n.type == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = os.fsdecode(n.linktarget or b"")
                tar.addfile(info)
            elif n.type == "file":
                info.size = n.size
                tar.addfile(info, _BlobReader(repo, n.content or []))
            elif n.type == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)


class _BlobReader:
    """A file-like object over a file's blobs, for tarfile."""

    def __init__(self, repo: Repository, content: list[bytes]) -> None:
        self.repo = repo
        self.content = list(content)
        self.buf = b""

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and self.content:
            self.buf += self.repo.load_blob(BlobType.DATA, self.content.pop(0))
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


COMMANDS = [backup, restore, ls, dump]
_ = json
