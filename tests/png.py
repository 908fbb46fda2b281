"""A PNG reader small enough for the tests (no imaging library in the project), for the VM
screenshots of instant boot and proof of restore: checks every chunk's CRC, inflates and
unfilters 8-bit RGB/RGBA/grey images, returns the rows."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 6: 4}


def read_png(raw: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows); ValueError if it is not a valid 8-bit PNG."""
    if not raw.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, head = 8, b"", None
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        kind, body = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack_from(">I", raw, pos + 8 + n)
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    if head is None or head[2] != 8 or head[3] not in CHANNELS:
        raise ValueError("unsupported PNG")
    width, height, ch = head[0], head[1], CHANNELS[head[3]]
    data, stride = zlib.decompress(idat), width * ch
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = data[y * (stride + 1)], bytearray(data[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b, c = prev[x], prev[x - ch] if x >= ch else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, ch, rows


def text_bands(raw: bytes) -> list[tuple[int, int, int, int]]:
    """Bands of rows holding lit (non-black) pixels of an RGB(A) screenshot: (top, bottom, left,
    right) each."""
    width, _, ch, rows = read_png(raw)
    bands: list[tuple[int, int, int, int]] = []
    for y, row in enumerate(rows):
        lit = [x for x in range(width) if any(row[ch * x : ch * x + 3])]
        if not lit:
            continue
        if bands and bands[-1][1] == y - 1:
            top, _, left, right = bands[-1]
            bands[-1] = (top, y, min(left, lit[0]), max(right, lit[-1]))
        else:
            bands.append((y, y, lit[0], lit[-1]))
    return bands
