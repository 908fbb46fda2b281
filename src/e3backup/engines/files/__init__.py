"""The ``files`` engine (the original system's ``kopia``): directory trees into snapshots."""

from .archiver import Archiver, BackupCancelled, run_backup
from .excludes import Excluder
from .options import BackupOptions
from .result import BackupResult

__all__ = ["Archiver", "BackupCancelled", "BackupOptions", "BackupResult", "Excluder", "run_backup"]
