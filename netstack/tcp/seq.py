"""32-bit sequence-number arithmetic (RFC 9293 §3.4, RFC 1982 style).

Sequence numbers live in a ring of 2**32 values.  ``a < b`` means "b lies
less than 2**31 ahead of a".  Every comparison of sequence (and TSval)
numbers in netstack.tcp goes through these helpers (or an inlined copy of
the same formula on the hot path), never through plain ``<``.
"""
from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in the range [-2**31, 2**31)."""
    return ((a - b + HALF) & MASK) - HALF


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space."""
    return ((a - b) & MASK) >= HALF


def seq_le(a: int, b: int) -> bool:
    """a <= b in sequence space."""
    return ((b - a) & MASK) < HALF


def seq_gt(a: int, b: int) -> bool:
    """a > b in sequence space."""
    return ((b - a) & MASK) >= HALF


def seq_ge(a: int, b: int) -> bool:
    """a >= b in sequence space."""
    return ((a - b) & MASK) < HALF


def in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size (RFC 9293 §3.4), for 0 <= size < 2**31."""
    return ((x - start) & MASK) < size


def seq_max(a: int, b: int) -> int:
    """The later of two sequence numbers."""
    return b if ((a - b) & MASK) >= HALF else a


def seq_min(a: int, b: int) -> int:
    """The earlier of two sequence numbers."""
    return a if ((a - b) & MASK) >= HALF else b
