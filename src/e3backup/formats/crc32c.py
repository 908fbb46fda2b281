"""CRC-32C (Castagnoli, RFC 3720 / iSCSI), as VHDX uses for its headers, region tables and log.

Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF. A pure-Python table
implementation: VHDX checksums only cover small structures (a 4 KiB header, a 64 KiB region table,
log entries), never payload, so a few milliseconds per open is the whole cost and no native
dependency is needed. A trailing run of zero bytes (most of a 64 KiB region table) is not
walked byte by byte: with a zero input byte the register update is linear, so n zeros are one
32x32 GF(2) matrix, built by squaring and cached per power of two.
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


def _apply(op: list[int], value: int) -> int:
    out, bit = 0, 0
    while value:
        if value & 1:
            out ^= op[bit]
        value >>= 1
        bit += 1
    return out


def _one_zero_byte() -> list[int]:
    return [_TABLE[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)]


_ZERO_OPS: list[list[int]] = [_one_zero_byte()]  # [k]: the register after 2**k zero bytes


def _after_zeros(value: int, count: int) -> int:
    k = 0
    while count:
        while len(_ZERO_OPS) <= k:
            op = _ZERO_OPS[-1]
            _ZERO_OPS.append([_apply(op, col) for col in op])
        if count & 1:
            value = _apply(_ZERO_OPS[k], value)
        count >>= 1
        k += 1
    return value


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC-32C of `data`; pass a previous result as `crc` to continue over more data."""
    table = _TABLE
    value = crc ^ 0xFFFFFFFF
    raw = bytes(data)
    body = raw.rstrip(b"\0")
    for byte in body:
        value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
    value = _after_zeros(value, len(raw) - len(body))
    return value ^ 0xFFFFFFFF


__all__ = ["crc32c"]
