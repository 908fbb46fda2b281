"""The exception tree, drawn once.

    E3Error
    ├── UsageError                  bad arguments or configuration (exit code 2)
    ├── Cancelled                   a run stopped on request (its cancel event); nothing half-saved
    ├── StoreError                  the storage layer (local directory, S3)
    │   ├── NotFoundError           the object does not exist
    │   ├── StoreUnavailableError   network, permissions, server errors after retries
    │   ├── AlreadyExistsError      refusing to overwrite
    │   └── AccessDeniedError       refused for these credentials (append-only gateway, read-only token)
    ├── RepoError                   the repository format and its rules
    │   ├── RepositoryNotFoundError no config / not a repository
    │   ├── WrongPasswordError      no key file opens with this password
    │   ├── UnsupportedVersionError config version we cannot read
    │   ├── IntegrityError          MAC, hash, length or structure mismatch
    │   │   └── InvalidPackError    a pack file that cannot be parsed
    │   ├── BlobNotFoundError       a blob that is in no index
    │   └── LockError               the repository is locked by someone else
    └── FormatError                 disk image formats (VHDX, raw)
        ├── InvalidVhdxError        a VHDX structure that cannot be parsed or used
        ├── ParentNotFoundError     a differencing VHDX whose parent cannot be found
        └── UnallocatedWriteError   non-zero data for a block the layout did not allocate

Every error carries a one-line message that names the object at fault; the CLI prints it as is.
"""

from __future__ import annotations


class E3Error(Exception):
    """Base of every error e3backup raises on purpose."""

    exit_code = 1


class UsageError(E3Error):
    exit_code = 2


class Cancelled(E3Error):
    """A run stopped because its cancel event was set: every engine and restore raises this one.

    The message says what was left behind ("no snapshot was saved", "the partial target was
    removed"); the agent ends the run ``CANCELLED`` with ``RUN_CANCELLED``, the CLI exits 130.
    """

    exit_code = 130


class StoreError(E3Error):
    pass


class NotFoundError(StoreError):
    pass


class StoreUnavailableError(StoreError):
    pass


class AlreadyExistsError(StoreError):
    pass


class AccessDeniedError(StoreError):
    """The storage refused the operation for these credentials (an append-only gateway refusing
    a delete or an overwrite, a read-only token writing)."""


class RepoError(E3Error):
    pass


class RepositoryNotFoundError(RepoError):
    pass


class WrongPasswordError(RepoError):
    pass


class UnsupportedVersionError(RepoError):
    pass


class IntegrityError(RepoError):
    pass


class InvalidPackError(IntegrityError):
    def __init__(self, pack_id: str, reason: str) -> None:
        super().__init__(f"pack {pack_id}: {reason}")
        self.pack_id = pack_id
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.pack_id, self.reason))


class BlobNotFoundError(RepoError):
    pass


class LockError(RepoError):
    pass


class FormatError(E3Error):
    """A disk image file (VHDX, raw) that cannot be read or written as asked."""


class InvalidVhdxError(FormatError):
    """A VHDX structure at fault: names the structure, its file offset and the reason."""

    def __init__(self, path: str, structure: str, offset: int, reason: str) -> None:
        super().__init__(f"VHDX {path}: {structure} at offset {offset}: {reason}")
        self.path = path
        self.structure = structure
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, int, str]]:
        return (type(self), (self.path, self.structure, self.offset, self.reason))


class ParentNotFoundError(FormatError):
    pass


class UnallocatedWriteError(FormatError):
    pass


__all__ = [
    "AccessDeniedError",
    "AlreadyExistsError",
    "BlobNotFoundError",
    "Cancelled",
    "E3Error",
    "FormatError",
    "IntegrityError",
    "InvalidPackError",
    "InvalidVhdxError",
    "LockError",
    "NotFoundError",
    "ParentNotFoundError",
    "RepoError",
    "RepositoryNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "UnallocatedWriteError",
    "UnsupportedVersionError",
    "UsageError",
    "WrongPasswordError",
]
