"""32-bit sequence arithmetic (RFC 9293 §3.4) and ISNs (RFC 6528)."""
from hypothesis import given, strategies as st

from netstack.tcp.isn import ISNGenerator
from netstack.tcp.seq import (in_window, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt,
                              seq_max, seq_min)

u32 = st.integers(0, 2**32 - 1)
dist = st.integers(1, 2**31 - 1)


@given(u32, dist)
def test_ahead_is_greater_even_across_wrap(a, d):
    b = seq_add(a, d)
    assert seq_lt(a, b) and seq_le(a, b) and seq_gt(b, a) and seq_ge(b, a)
    assert not seq_lt(b, a) and not seq_gt(a, b)
    assert seq_diff(b, a) == d and seq_diff(a, b) == -d


@given(u32)
def test_equal(a):
    assert seq_le(a, a) and seq_ge(a, a) and not seq_lt(a, a) and not seq_gt(a, a)
    assert seq_diff(a, a) == 0


@given(u32, st.integers(-2**31, 2**31 - 1))
def test_add_diff_roundtrip(a, d):
    assert seq_diff(seq_add(a, d), a) == d
    assert 0 <= seq_add(a, d) < 2**32


@given(u32, st.integers(0, 2**20), st.integers(1, 2**20))
def test_in_window(start, off, size):
    x = seq_add(start, off)
    assert in_window(x, start, size) == (off < size)


def test_wrap_examples():
    assert seq_lt(0xFFFFFFF0, 0x10)
    assert seq_gt(0x10, 0xFFFFFFF0)
    assert seq_diff(0x10, 0xFFFFFFF0) == 0x20
    assert in_window(0x5, 0xFFFFFFFE, 10)
    assert not in_window(0xFFFFFFFD, 0xFFFFFFFE, 10)
    assert seq_max(0xFFFFFFF0, 0x10) == 0x10
    assert seq_min(0xFFFFFFF0, 0x10) == 0xFFFFFFF0
    assert seq_add(0xFFFFFFFF, 1) == 0


def test_isn_clock_advances_4us():
    g = ISNGenerator(b"k" * 16)
    a = g.isn(1, 2, 3, 4, 0.0)
    assert g.isn(1, 2, 3, 4, 1.0) == (a + 250_000) & 0xFFFFFFFF
    assert g.isn(1, 2, 3, 4, 0.000004) == (a + 1) & 0xFFFFFFFF


def test_isn_keyed_hash_of_4tuple():
    g = ISNGenerator(b"k" * 16)
    assert g.isn(1, 2, 3, 4, 5.0) != g.isn(1, 2, 3, 5, 5.0)
    assert g.isn(1, 2, 3, 4, 5.0) != ISNGenerator(b"j" * 16).isn(1, 2, 3, 4, 5.0)
    assert g.isn(1, 2, 3, 4, 5.0) == ISNGenerator(b"k" * 16).isn(1, 2, 3, 4, 5.0)
    # a random secret by default
    assert ISNGenerator().offset(1, 2, 3, 4) != ISNGenerator().offset(1, 2, 3, 4)
