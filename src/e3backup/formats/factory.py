"""Making an image writer or reader by format name, the way the restore and export commands do."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

from e3backup.formats.image import Extent, ImageReader, ImageWriter
from e3backup.formats.raw import RawReader, RawWriter
from e3backup.formats.vhdx.constants import FILE_TYPE_IDENTIFIER_SIGNATURE
from e3backup.formats.vhdx.layout import VhdxOptions
from e3backup.formats.vhdx.reader import VhdxReader
from e3backup.formats.vhdx.writer import VhdxWriter

ImageFormat = Literal["raw", "vhdx"]
FORMATS: tuple[ImageFormat, ...] = ("raw", "vhdx")


def create_image_writer(
    image_format: ImageFormat,
    path: str | os.PathLike[str],
    virtual_size: int,
    allocated: Iterable[Extent] | None = None,
    vhdx_options: VhdxOptions | None = None,
    direct: bool = True,
) -> ImageWriter:
    """A writer for `image_format`; `allocated` lists the ranges that will hold non-zero data;
    ``direct=False`` writes through the page cache (see `formats.direct`)."""
    if image_format == "vhdx":
        return VhdxWriter(path, virtual_size, allocated, vhdx_options, direct=direct)
    if image_format == "raw":
        return RawWriter(path, virtual_size, allocated, direct=direct)
    raise ValueError(f"unknown image format {image_format!r}, expected one of {', '.join(FORMATS)}")


def open_image_reader(path: str | os.PathLike[str]) -> ImageReader:
    """A VHDX reader when the file starts with 'vhdxfile', else a raw reader."""
    with open(path, "rb") as f:
        magic = f.read(len(FILE_TYPE_IDENTIFIER_SIGNATURE))
    if magic == FILE_TYPE_IDENTIFIER_SIGNATURE:
        return VhdxReader(path)
    return RawReader(path)


__all__ = ["FORMATS", "ImageFormat", "create_image_writer", "open_image_reader"]
