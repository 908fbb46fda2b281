"""The ``e3backup`` command line. Exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted."""

from __future__ import annotations

import faulthandler
import importlib
import io
import signal
import sys
import threading
import traceback
from typing import Any

import click

from ..budget import MemoryBudget, parse_memory
from ..buildinfo import platform_tag
from ..buildinfo import version as build_version
from ..errors import E3Error
from ..tuning import tune_malloc
from .context import AppContext
from .log_setup import configure_logging
from .storage_options import s3_options

# Commands are imported when used, so `e3backup snapshots` does not pay for the server's or
# S3's imports.
_COMMANDS = {
    "init": "repo_cmds:init",
    "snapshots": "repo_cmds:snapshots",
    "cat": "repo_cmds:cat",
    "check": "repo_cmds:check",
    "unlock": "repo_cmds:unlock",
    "backup": "files_cmds:backup",
    "restore": "files_cmds:restore",
    "ls": "files_cmds:ls",
    "dump": "files_cmds:dump",
    "storage": "storage_cmd:storage",
    "forget": "maintenance_cmds:forget_cmd",
    "prune": "maintenance_cmds:prune_cmd",
    "maintenance": "maintenance_cmds:maintenance_cmd",
    "server": "server_cmd:server",
    "image": "image_cmds:image",
    "hyperv": "hyperv_cmds:hyperv",
    "agent": "agent_cmds:agent",
    "mount": "mount_cmd:mount",
    "sync": "sync_cmd:sync",
    "recovery": "recovery_cmd:recovery",
    "version": "version_cmd:version",
    "release": "release_cmd:release",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-r", "--repo", envvar="E3BACKUP_REPOSITORY", help="Repository location (path, s3:URL or rest:URL).")
@click.option(
    "-p",
    "--password-file",
    envvar="E3BACKUP_PASSWORD_FILE",
    type=click.Path(dir_okay=False),
    help="File holding the repository password (or set E3BACKUP_PASSWORD).",
)
@click.option(
    "--pack-size",
    envvar="E3BACKUP_PACK_SIZE",
    type=click.IntRange(1, 128),
    default=16,
    show_default=True,
    help="Target pack size in MiB.",
)
@click.option("--no-cache", is_flag=True, help="Do not keep a local cache of index, snapshot and tree files.")
@click.option(
    "--retry-max-time",
    envvar="E3BACKUP_RETRY_MAX_TIME",
    type=click.FloatRange(min=0),
    default=None,
    help="S3: give up once the storage has not answered for this many seconds (the whole outage, "
    "counted from the first failed request, not per request; default 300).",
)
@click.option(
    "--max-memory",
    envvar="E3BACKUP_MAX_MEMORY",
    default=None,
    metavar="SIZE",
    help="Memory budget of a backup or restore, e.g. 256M or 1G: worker counts, queues, pack buffering "
    "and restore ranges are sized to stay under it (default 256M; docs/memory.md).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@s3_options
@click.version_option(build_version(), prog_name="e3backup", message=f"%(prog)s %(version)s ({platform_tag()})")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    password_file: str | None,
    pack_size: int,
    no_cache: bool,
    retry_max_time: float | None,
    max_memory: str | None,
    debug: bool,
    store_options: dict[str, Any],
) -> None:
    """e3backup: deduplicated, encrypted backups in the restic v2 format."""
    configure_logging(debug)
    ctx.obj = AppContext(
        repo=repo,
        password_file=password_file,
        debug=debug,
        pack_size=pack_size * 1024 * 1024,
        no_cache=no_cache,
        store_options=store_options,
        retry_max_time=retry_max_time,
        memory=MemoryBudget(parse_memory(max_memory)) if max_memory else MemoryBudget(),
    )


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    tune_malloc()
    _terminate_gracefully()
    _stacks_on_sigusr1()
    try:
        rc = cli.main(args=argv, prog_name="e3backup", standalone_mode=False)
        return rc if isinstance(rc, int) else 0
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        print("e3backup: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("e3backup: interrupted", file=sys.stderr)
        return 130
    except E3Error as e:
        if debug:
            traceback.print_exc()
        print(f"e3backup: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 1
    except Exception as e:  # an unexpected bug: one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        print(f"e3backup: error: unexpected {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 1


class Terminated(E3Error):
    exit_code = 143


def _terminate_gracefully() -> None:
    """SIGTERM unwinds like Ctrl-C, so locks are removed and open work is cleaned up."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated("terminated by SIGTERM")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's stack to stderr and carries on: what a hung
    command or agent is waiting for, without stopping it (POSIX only)."""
    if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
        try:
            faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
        except (AttributeError, ValueError, io.UnsupportedOperation):
            pass  # stderr is no file (the command runs inside a test's CliRunner)


if __name__ == "__main__":
    sys.exit(main())
