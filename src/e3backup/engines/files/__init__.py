"""The ``files`` engine (the original system's ``kopia``): directory trees into snapshots."""

from .archiver import Archiver, run_backup
from .excludes import Excluder
from .options import BackupOptions
from .result import BackupResult

__all__ = ["Archiver", "BackupOptions", "BackupResult", "Excluder", "run_backup"]
