"""VHDX ([MS-VHDX]): a dynamic writer and a reader of dynamic, fixed and differencing files.

constants.py   names and values from the specification
geometry.py    blocks, chunks and BAT indexes
structures.py  pure encode/decode of each on-disk structure
layout.py      the whole layout of a file we write, planned up front
writer.py      VhdxWriter: positional, thread-safe writes into that layout
parent.py      finding a differencing file's parent
reader.py      VhdxReader
"""

from e3backup.formats.vhdx.layout import VhdxLayout, VhdxOptions, plan_layout
from e3backup.formats.vhdx.reader import VhdxReader
from e3backup.formats.vhdx.writer import VhdxWriter

__all__ = ["VhdxLayout", "VhdxOptions", "VhdxReader", "VhdxWriter", "plan_layout"]
