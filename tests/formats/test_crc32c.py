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
