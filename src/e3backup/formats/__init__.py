"""Disk image formats: VHDX (reader and writer, [MS-VHDX]) and raw (sparse).

Writers share `ImageWriter` (created from the virtual size and the allocated extents; positional,
thread-safe `write_at`; `close`); readers share `ImageReader`.
"""

from e3backup.formats.factory import FORMATS, ImageFormat, create_image_writer, open_image_reader
from e3backup.formats.image import Extent, ImageReader, ImageWriter, is_zero, normalize_extents
from e3backup.formats.raw import RawReader, RawWriter
from e3backup.formats.vhdx import VhdxOptions, VhdxReader, VhdxWriter

__all__ = [
    "FORMATS",
    "Extent",
    "ImageFormat",
    "ImageReader",
    "ImageWriter",
    "RawReader",
    "RawWriter",
    "VhdxOptions",
    "VhdxReader",
    "VhdxWriter",
    "create_image_writer",
    "is_zero",
    "normalize_extents",
    "open_image_reader",
]
