"""What every repository command needs: where the repository is and its password."""

from __future__ import annotations

import contextlib
import getpass
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..budget import MemoryBudget
from ..errors import UsageError
from ..store.base import Store
from ..store.local import LocalStore
from ..store.url import open_store

if TYPE_CHECKING:
    from ..repo.repository import Repository


@dataclass
class AppContext:
    repo: str | None = None
    password_file: str | None = None
    debug: bool = False
    pack_size: int = 16 * 1024 * 1024
    no_cache: bool = False
    retry_max_time: float | None = None
    store_options: dict[str, Any] = field(default_factory=dict)
    memory: MemoryBudget = field(default_factory=MemoryBudget)  # --max-memory

    @property
    def upload_connections(self) -> int:
        """Parallel pack uploads: the S3 option when given, else 5 for S3 and 2 for a local disk
        (which a third writer would not make faster)."""
        default = 5 if (self.repo or "").startswith(("s3:", "rest:")) else 2
        return int(self.store_options.get("upload_connections", default))

    def store(self) -> Store:
        if not self.repo:
            raise UsageError("no repository given: use --repo or E3BACKUP_REPOSITORY")
        options = dict(self.store_options)
        if self.retry_max_time is not None and self.repo.startswith(("s3:", "rest:")):
            from ..store.retry import RetryPolicy

            options["retry"] = RetryPolicy(max_attempts=10_000, max_time=self.retry_max_time)
        return open_store(self.repo, **options)

    def password(self, confirm: bool = False) -> bytes:
        """The password from the file, the environment or the terminal; an empty one is refused
        (restic cannot open a repository made with it, and it protects nothing)."""
        if self.password_file:
            return _not_empty(read_password_file(self.password_file), f"password file {self.password_file}")
        env = os.environ.get("E3BACKUP_PASSWORD")
        if env is not None:
            return _not_empty(env.encode("utf-8"), "E3BACKUP_PASSWORD")
        if sys.stdin.isatty():
            pw = getpass.getpass("enter password for repository: ")
            _not_empty(pw.encode("utf-8"), "the password typed")
            if confirm and getpass.getpass("enter password again: ") != pw:
                raise UsageError("passwords do not match")
            return pw.encode("utf-8")
        raise UsageError("no password given: use --password-file, E3BACKUP_PASSWORD_FILE or E3BACKUP_PASSWORD")

    def open_repo(self, preload: tuple[str, ...] = ()) -> Repository:
        """Open the repository; ``preload`` modules import while the key is derived (see `_importer`)."""
        from ..repo.cache import Cache, default_cache_dir
        from ..repo.repository import Repository

        store = self.store()
        password = self.password()
        repo = Repository.open(store, password, meanwhile=_importer(preload) if preload else None)
        repo.pack_size = self.pack_size
        if not self.no_cache and not isinstance(store, LocalStore):
            repo.cache = Cache(default_cache_dir(), repo.config.id)
        return repo


def _importer(modules: tuple[str, ...]) -> Callable[[], None]:
    """Imports ``modules`` on this thread while scrypt (about 0.15 s) runs in another and releases
    the GIL, so a command's heavy imports (numpy, the restore's modules) cost no time. All imports
    stay on one thread: two threads importing a package with circular imports can each get the
    other's half-made module. Any error is left for the command's own import to raise."""

    def load() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    return load


def _not_empty(password: bytes, source: str) -> bytes:
    if not password:
        raise UsageError(f"the repository password is empty ({source}): an empty password is refused")
    return password


def read_password_file(path: str) -> bytes:
    """Read a password file as restic does: BOM stripped, surrounding whitespace trimmed."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read password file {path}: {e.strerror}") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raw = raw.decode("utf-16").encode("utf-8")
    return raw.strip()


__all__ = ["AppContext", "read_password_file"]
