"""CRC-32C (Castagnoli, RFC 3720 / iSCSI), as VHDX uses for its headers, region tables and log.

Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF. A pure-Python table
implementation: VHDX checksums only cover small structures (a 4 KiB header, a 64 KiB region table,
log entries), never payload, so a few milliseconds per open is the whole cost and no native
dependency is needed.
"""

from __future__ import annotations

POLYNOMIAL = 0x82F63B78


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC-32C of `data`; pass a previous result as `crc` to continue over more data."""
    table = _TABLE
    value = crc ^ 0xFFFFFFFF
    for byte in bytes(data):
        value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ 0xFFFFFFFF


__all__ = ["crc32c"]
