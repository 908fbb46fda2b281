"""Turn a repository location (``/path`` or ``s3:...``) into a store."""

from __future__ import annotations

from ..errors import UsageError
from .base import Store
from .local import LocalStore


def open_store(location: str, **options: object) -> Store:
    """Open the store for ``location``; S3 options are keyword arguments."""
    if not location:
        raise UsageError("no repository given: use --repo or E3BACKUP_REPOSITORY")
    if location.startswith("s3:"):
        raise UsageError("s3: repositories are not supported yet")
    if location.startswith("local:"):
        location = location[len("local:") :]
    return LocalStore(location)


__all__ = ["open_store"]
