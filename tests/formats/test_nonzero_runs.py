"""`nonzero_runs` finds exactly the aligned all-zero pieces a plain scan finds (probe or not)."""

from __future__ import annotations

import random

import pytest

from e3backup.formats.image import nonzero_runs


def plain_scan(data: bytes, g: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = -1
    for pos in range(0, len(data), g):
        if any(data[pos : pos + g]):
            if start < 0:
                start = pos
        elif start >= 0:
            out.append((start, pos))
            start = -1
    if start >= 0:
        out.append((start, len(data)))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_matches_a_plain_scan(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(15):
        n = rng.choice([0, 1, 7, 16384, 16385, 1 << 20, (1 << 20) - 5, 65536 * 3 + 8])
        data = bytearray(n)
        for _ in range(rng.randrange(6)):
            if n:
                at = rng.randrange(n)
                piece = data[at : at + rng.randrange(1, 40000)]
                data[at : at + len(piece)] = rng.randbytes(len(piece))
        g = rng.choice([16384, 4096, 1000])
        assert list(nonzero_runs(memoryview(data), g)) == plain_scan(bytes(data), g)


def test_a_piece_with_zero_first_word_but_data_later_is_written() -> None:
    data = bytearray(3 * 16384)
    data[16384 + 9000] = 1  # second piece: probe word is zero, the piece is not
    assert list(nonzero_runs(memoryview(data))) == [(16384, 32768)]


def test_dense_data_is_one_run() -> None:
    data = random.Random(1).randbytes(1 << 20)
    assert list(nonzero_runs(memoryview(data))) == [(0, 1 << 20)]
