from e3backup.formats.crc32c import crc32c


def test_known_vectors() -> None:
    # RFC 3720 B.4 and the common check value
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_continues_over_pieces() -> None:
    data = bytes(range(256)) * 17
    assert crc32c(data[100:], crc32c(data[:100])) == crc32c(data)


def test_trailing_zeros_match_the_byte_by_byte_crc() -> None:
    """Zero runs are skipped with a matrix; the result is the table walk's, any length and seed."""
    import random

    from e3backup.formats.crc32c import _TABLE

    def walk(data: bytes, crc: int = 0) -> int:
        v = crc ^ 0xFFFFFFFF
        for b in data:
            v = _TABLE[(v ^ b) & 0xFF] ^ (v >> 8)
        return v ^ 0xFFFFFFFF

    rng = random.Random(7)
    for zeros in (0, 1, 2, 3, 255, 4096, 65536 - 17, 65536):
        head = rng.randbytes(rng.randrange(0, 40))
        seed = rng.randrange(1 << 32)
        assert crc32c(head + bytes(zeros), seed) == walk(head + bytes(zeros), seed), zeros
