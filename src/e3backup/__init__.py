"""e3backup: deduplicated, compressed, encrypted backups in the restic v2 repository format."""

__version__ = "0.1.0"
