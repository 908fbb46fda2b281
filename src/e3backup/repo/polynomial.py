"""Chunker polynomials: restic refuses to open a repository whose config holds a reducible one.

A polynomial over GF(2) is an int whose bit k is the coefficient of x^k (spec section 10.2).
We chunk with FastCDC, so the polynomial is never used for chunking; it must only be valid.
"""

from __future__ import annotations

import os


def _deg(p: int) -> int:
    return p.bit_length() - 1


def _mod(a: int, m: int) -> int:
    dm = _deg(m)
    while a and _deg(a) >= dm:
        a ^= m << (_deg(a) - dm)
    return a


def _mulmod(a: int, b: int, m: int) -> int:
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a.bit_length() > _deg(m):
            a ^= m
    return _mod(result, m)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _mod(a, b)
    return a


def irreducible(f: int) -> bool:
    """Ben-Or's test, as restic/chunker's ``Pol.Irreducible``."""
    if f < 2:
        return False
    h = 2
    for _ in range(_deg(f) // 2):
        h = _mulmod(h, h, f)
        if _gcd(f, h ^ 2) != 1:
            return False
    return True


def random_polynomial() -> int:
    """A random irreducible polynomial of degree 53 (about one candidate in 26 passes)."""
    for _ in range(1_000_000):
        v = int.from_bytes(os.urandom(8), "little")
        f = (v & ((1 << 54) - 1)) | (1 << 53) | 1
        f &= (1 << 54) - 1
        if _deg(f) == 53 and irreducible(f):
            return f
    raise RuntimeError("no irreducible polynomial found")


__all__ = ["irreducible", "random_polynomial"]
