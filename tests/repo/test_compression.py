"""zstd blob decoding: one-shot for the common frame, streaming across frames for the rest."""

from __future__ import annotations

import os

import pytest
import zstandard

from e3backup.errors import IntegrityError
from e3backup.repo.compression import compress, decompress

TEXT = b"the quick brown fox jumps over the lazy dog\n" * 5000


@pytest.mark.parametrize("data", [TEXT, os.urandom(300_000), b"x"])
def test_round_trip(data: bytes) -> None:
    assert decompress(compress(data), len(data)) == data
    assert decompress(compress(data)) == data


def test_frame_without_content_size() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    assert decompress(frame, len(TEXT)) == TEXT


def test_several_frames_are_read_across() -> None:
    frames = compress(TEXT[:1000]) + compress(TEXT[1000:])
    assert decompress(frames, len(TEXT)) == TEXT
    assert decompress(frames) == TEXT


def test_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(IntegrityError, match=f"got {len(TEXT)}, expected {len(TEXT) + 1}"):
        decompress(compress(TEXT), len(TEXT) + 1)


def test_corrupt_frame_is_an_integrity_error() -> None:
    bad = bytearray(compress(TEXT))
    bad[len(bad) // 2] ^= 0xFF
    bad[5] ^= 0xFF
    with pytest.raises(IntegrityError):
        decompress(bytes(bad), len(TEXT))
