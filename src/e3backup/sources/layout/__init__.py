"""Disk layouts: partition tables (GPT, MBR) and the file systems' allocation maps."""

from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.layout.read import read_layout

__all__ = ["DiskLayout", "Partition", "read_layout"]
