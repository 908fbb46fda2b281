"""The ``e3backup`` command line. Exit codes: 0 ok, 1 failure, 2 usage error, 130 interrupted."""

from __future__ import annotations

import logging
import sys
import traceback

import click

from .. import __version__
from ..errors import E3Error
from .context import AppContext


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-r", "--repo", envvar="E3BACKUP_REPOSITORY", help="Repository location (path or s3:URL).")
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
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="e3backup")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, password_file: str | None, pack_size: int, debug: bool) -> None:
    """e3backup: deduplicated, encrypted backups in the restic v2 format."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = AppContext(repo=repo, password_file=password_file, debug=debug, pack_size=pack_size * 1024 * 1024)


def _register() -> None:
    from . import files_cmds, image_cmds, repo_cmds

    for cmd in [*repo_cmds.COMMANDS, *files_cmds.COMMANDS, *image_cmds.COMMANDS]:
        cli.add_command(cmd)


_register()


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="e3backup", standalone_mode=False)
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
