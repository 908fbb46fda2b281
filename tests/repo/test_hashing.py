"""Multi-buffer SHA-256 gives hashlib's digests for every length and grouping, and is really built
and used where the CPU can run it (an install that silently skipped the C extension fails here)."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from e3backup.repo import hashing

# lengths around the padding boundaries: 55 fits the length in the last block, 56..63 need another
EDGES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_the_kernel_is_built_and_used_where_the_cpu_has_avx512() -> None:
    if {"avx512f", "avx512bw"} <= _cpu_flags():
        assert hashing.MULTI_BUFFER and hashing.LANES == 16
    else:
        assert hashing.LANES == 1 or hashing.MULTI_BUFFER


@pytest.mark.parametrize("count", [1, 8, 9, 15, 16, 17, 25, 32, 40])
def test_digests_match_hashlib_for_edge_lengths(count: int) -> None:
    rnd = random.Random(count)
    buffers = [rnd.randbytes(rnd.choice(EDGES)) for _ in range(count)]
    assert hashing.sha256_many(buffers) == [hashlib.sha256(b).digest() for b in buffers]


def test_every_length_up_to_three_blocks_in_one_group() -> None:
    # 16 lanes of different lengths finish in different passes: the masked lanes must keep their state
    for first in range(0, 200, 16):
        buffers = [os.urandom(n) for n in range(first, first + 16)]
        assert hashing.sha256_many(buffers) == [hashlib.sha256(b).digest() for b in buffers]


def test_large_equal_and_mixed_buffers_keep_their_order() -> None:
    buffers = [os.urandom(1 << 20) for _ in range(16)] + [os.urandom(n) for n in (5, 70_000, 1 << 19)]
    random.Random(1).shuffle(buffers)
    assert hashing.sha256_many(buffers) == [hashlib.sha256(b).digest() for b in buffers]


def test_views_into_shared_memory_and_readonly_bytes() -> None:
    whole = bytearray(os.urandom(100_000))
    view = memoryview(whole)
    buffers = [view[i * 5000 + i : (i + 1) * 5000] for i in range(16)] + [bytes(whole[:77])] * 2
    assert hashing.sha256_many(buffers) == [hashlib.sha256(b).digest() for b in buffers]


@pytest.mark.skipif(not hashing.MULTI_BUFFER, reason="the C kernel does not run on this CPU")
def test_the_kernel_refuses_what_is_not_a_contiguous_buffer() -> None:
    from e3backup import _sha256mb

    with pytest.raises(TypeError):
        _sha256mb.sha256_many([b"x"] * 8 + ["not bytes"])  # type: ignore[list-item]
    strided = memoryview(bytearray(64))[::2]
    with pytest.raises(BufferError):
        _sha256mb.sha256_many([strided] * 16)
    assert _sha256mb.sha256_many([]) == []
