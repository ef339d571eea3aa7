"""The pure-Python twin of the native Internet checksum (RFC 1071, RFC 1624).

Used where the C extension could not be built (no compiler at install) or
when ``NETSTACK_PURE_CHECKSUM=1`` forces it.  Same functions, same results,
same errors for out-of-range integers as ``netstack._checksum``; see
``netstack.checksum`` for the API.

How it is fast without a loop (RFC 1071 §2): the data read as one big-endian
integer is ``sum(w_i * 65536**(k-i))`` over its 16-bit words ``w_i``, and
``65536 == 1 (mod 0xFFFF)``, so ``int.from_bytes(data, "big") % 0xFFFF`` is
the ones'-complement sum modulo 0xFFFF, computed in C by CPython's bignum
code.  Two details make it exact:

- an odd length is padded with a zero byte at the end (RFC 1071 §4.1), i.e.
  the integer is shifted left by 8 bits;
- ones'-complement arithmetic has two zeros.  The folded sum is 0x0000 only
  when every word is zero; any other multiple of 0xFFFF folds to 0xFFFF
  ("negative zero").  So a residue of 0 becomes 0xFFFF unless the integer
  itself is 0.

CPython divides a big integer by a small one digit by digit with a hardware
division each; for long buffers it is faster to first fold the integer in
halves, ``(v & (2**k - 1)) + (v >> k)`` with ``k`` a multiple of 16 (again
``2**k == 1 (mod 0xFFFF)``), until it is about 4096 bits long.
"""
from __future__ import annotations

__all__ = ["checksum", "sum16", "pseudo_header_checksum", "incremental_update"]

_from_bytes = int.from_bytes

_FOLD_ABOVE = 512          # bytes; shorter integers go straight to % 0xFFFF
_FOLD_BITS = 8 * _FOLD_ABOVE


def _shrink(value: int, nbits: int) -> int:
    """Fold ``value`` (< 2**nbits) in halves at multiples of 16 bits: same residue mod 0xFFFF,
    zero only if ``value`` is zero, about ``_FOLD_BITS`` bits long at the end."""
    while nbits > _FOLD_BITS:
        half = (nbits >> 5) << 4
        value = (value & ((1 << half) - 1)) + (value >> half)
        nbits = half + 1
    return value


def _fold(value: int) -> int:
    """Ones'-complement fold of a non-negative integer to 16 bits (RFC 1071 §4.1)."""
    if not value:
        return 0
    return value % 0xFFFF or 0xFFFF


def _range(name: str, value: int, top: int) -> None:
    # Mirror cffi, which raises OverflowError for an integer outside the C type.
    if not 0 <= value <= top:
        raise OverflowError(f"{name}={value!r} does not fit in 0..{top:#x}")


def _bytes_of(data):
    """``data`` as its bytes, as the native code takes a buffer: any item format (an
    array('I'), a memoryview cast to 'H') is read as its bytes; BufferError if not
    C-contiguous, TypeError if not a buffer."""
    if data.__class__ is bytes or data.__class__ is bytearray:
        return data
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _wide_sum(data) -> int:
    """``data`` as one big-endian integer (padded to even length), shrunk for long inputs:
    congruent, modulo 0xFFFF, to the ones'-complement sum of its 16-bit words (2**16 = 1 mod 0xFFFF).
    ``data`` is taken as its bytes (:func:`_bytes_of`)."""
    data = _bytes_of(data)
    length = len(data)
    value = _from_bytes(data, "big")
    if length & 1:
        value <<= 8
    if length > _FOLD_ABOVE:
        value = _shrink(value, 8 * length + 8)
    return value


def sum16(data, initial: int = 0) -> int:
    """Folded 16-bit ones'-complement sum of ``data`` plus ``initial``, not complemented.

    RFC 1071 §4.1.  ``sum16(b, sum16(a)) == sum16(a + b)`` when ``len(a)`` is even.
    """
    if not 0 <= initial <= 0xFFFF:
        _range("initial", initial, 0xFFFF)
    value = _wide_sum(data) + initial
    if not value:
        return 0
    return value % 0xFFFF or 0xFFFF


def checksum(data) -> int:
    """RFC 1071 Internet checksum: ones'-complement of the ones'-complement sum."""
    value = _wide_sum(data)
    if not value:
        return 0xFFFF
    return 0xFFFF - (value % 0xFFFF or 0xFFFF)


def pseudo_header_checksum(src: int, dst: int, proto: int, data) -> int:
    """Checksum over the IPv4 pseudo-header and ``data`` (RFC 9293 §3.1, RFC 768).

    The pseudo-header is src, dst, a zero byte, ``proto`` and the length of ``data`` in bytes.
    """
    if not (0 <= src <= 0xFFFFFFFF and 0 <= dst <= 0xFFFFFFFF and 0 <= proto <= 0xFF):
        _range("src", src, 0xFFFFFFFF)
        _range("dst", dst, 0xFFFFFFFF)
        _range("proto", proto, 0xFF)
    data = _bytes_of(data)
    length = len(data)
    value = _wide_sum(data)
    value += (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    return 0xFFFF - _fold(value)


def incremental_update(old_checksum: int, old_word: int, new_word: int) -> int:
    """RFC 1624 eqn. 3: ``HC' = ~(~HC + ~m + m')`` for one changed 16-bit word."""
    _range("old_checksum", old_checksum, 0xFFFF)
    _range("old_word", old_word, 0xFFFF)
    _range("new_word", new_word, 0xFFFF)
    return 0xFFFF - _fold((0xFFFF - old_checksum) + (0xFFFF - old_word) + new_word)
