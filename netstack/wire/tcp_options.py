"""TCP options parse and build (RFC 9293 §3.1 and §3.2, RFC 7323, RFC 2018).

Option kinds handled (RFC 9293 §3.2 table; RFC 7323 §2.2/§3.2; RFC 2018 §2/§3):

=====  ======  ===================================  =================================
kind   length  meaning                               in :attr:`TCPOptions.items`
=====  ======  ===================================  =================================
0      -       End of Option List                    ``("eol",)``
1      -       No-Operation                          ``("nop",)``
2      4       Maximum Segment Size (RFC 9293 §3.7.1) ``("mss", value)``
3      3       Window Scale (RFC 7323 §2)             ``("wscale", shift)``
4      2       SACK-Permitted (RFC 2018 §2)           ``("sackok",)``
5      2+8n    SACK, n = 1..4 (RFC 2018 §3)           ``("sack", ((left, right), ...))``
8      10      Timestamps (RFC 7323 §3)               ``("ts", ts_val, ts_ecr)``
other  >= 2    kept as raw bytes                      ``("unknown", kind, data_bytes)``
=====  ======  ===================================  =================================

Receive rules: every option but EOL and NOP has a length byte (RFC 9293
§3.1: "Case 2"); a length below 2 or running past the header makes the whole
segment malformed (RFC 9293 §3.1 MUST-7, formerly RFC 1122 §4.2.2.5: a TCP
MUST be prepared to handle an illegal option length without crashing; here the
segment is dropped and counted).  Unknown kinds are kept, not refused (MUST-6).
Known options of the wrong size are malformed as well.  Values are reported
as received, e.g. a Window Scale shift above 14 is kept as is; RFC 7323 §2.3
makes the *connection* clamp it to 14.

Parsing has a fast path for the 12-byte ``NOP, NOP, TS`` layout that every
Linux/BSD data segment carries (RFC 7323 Appendix A).
"""
from __future__ import annotations

import struct

from netstack.wire.errors import MalformedPacket

__all__ = [
    "OPT_EOL", "OPT_NOP", "OPT_MSS", "OPT_WSCALE", "OPT_SACK_PERMITTED", "OPT_SACK", "OPT_TIMESTAMPS",
    "MAX_OPTIONS_LEN", "MAX_WSCALE", "NO_OPTIONS", "TCPOptions", "parse_options", "build_options", "encode_options",
    "max_sack_blocks",
]

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

MAX_OPTIONS_LEN = 40          # data offset 15 words - 5 header words (RFC 9293 §3.1)
MAX_WSCALE = 14               # RFC 7323 §2.3

_LAYER = "tcp"

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS_BODY = struct.Struct("!II")
_NOP_NOP_TS = struct.Struct("!III")          # 0x0101080A, TSval, TSecr
_NOP_NOP_TS_WORD = 0x0101080A
_unpack_u16 = _U16.unpack_from
_unpack_ts = _TS_BODY.unpack_from
_unpack_nnts = _NOP_NOP_TS.unpack_from

_ITEM_EOL = ("eol",)
_ITEM_NOP = ("nop",)
_ITEM_SACKOK = ("sackok",)

class TCPOptions:
    """Decoded TCP options of one segment (RFC 9293 §3.1, RFC 7323, RFC 2018).

    Attributes: ``mss`` (int or None), ``wscale`` (shift count as received, or
    None), ``sack_permitted`` (bool), ``sack_blocks`` (tuple of ``(left,
    right)`` 32-bit edges; empty if no SACK option), ``ts_val`` and ``ts_ecr``
    (ints, both None without a Timestamps option), ``unknown`` (list of
    ``(kind, bytes)``).  ``items`` is the list of options in wire order (see
    the module docstring for the tuple shapes) and ``offsets`` the matching
    list of ``(offset, length)`` within the options area, for dissectors.
    When an option kind repeats, the attributes hold the last occurrence and
    ``items`` shows them all.

    Treat parsed options as read-only: the two common layouts (no options;
    NOP,NOP,TS) come back as lean read-only subclasses for speed.
    """

    __slots__ = ("mss", "wscale", "sack_permitted", "sack_blocks", "ts_val", "ts_ecr", "unknown",
                 "items", "offsets")

    def __init__(self) -> None:
        self.mss = None
        self.wscale = None
        self.sack_permitted = False
        self.sack_blocks = ()
        self.ts_val = None
        self.ts_ecr = None
        self.unknown = []
        self.items = []
        self.offsets = []

    @property
    def has_timestamps(self) -> bool:
        """True when a Timestamps option (RFC 7323 §3.2) was present."""
        return self.ts_val is not None

    def __eq__(self, other) -> bool:
        if not isinstance(other, TCPOptions):
            return NotImplemented
        return self.items == other.items

    __hash__ = None

    def __repr__(self) -> str:
        return f"TCPOptions({self.items!r})"


class _NoOptions(TCPOptions):
    """A header without options (data offset 5): one shared, read-only instance."""

    __slots__ = ()
    mss = wscale = ts_val = ts_ecr = None
    sack_permitted = False
    sack_blocks = ()
    unknown = items = offsets = property(lambda self: [])


class _NopNopTs(TCPOptions):
    """Fast path: exactly ``NOP, NOP, TS`` (RFC 7323 Appendix A layout); only the two stamps are stored."""

    __slots__ = ()
    mss = wscale = None
    sack_permitted = False
    sack_blocks = ()
    unknown = property(lambda self: [])

    @property
    def items(self) -> list:
        return [_ITEM_NOP, _ITEM_NOP, ("ts", self.ts_val, self.ts_ecr)]

    @property
    def offsets(self) -> list:
        return [(0, 1), (1, 1), (2, 10)]


NO_OPTIONS = _NoOptions.__new__(_NoOptions)
_new_nnts = _NopNopTs.__new__


def _parse_nnts(ts_val: int, ts_ecr: int) -> TCPOptions:
    o = _new_nnts(_NopNopTs)
    o.ts_val = ts_val
    o.ts_ecr = ts_ecr
    return o


def _bad(reason: str, detail: str) -> MalformedPacket:
    return MalformedPacket(_LAYER, reason, detail)


def _parse_general(mv, start: int, end: int) -> TCPOptions:
    """General option walk over ``mv[start:end]`` (RFC 9293 §3.1 "Options")."""
    o = TCPOptions()
    items = o.items
    offsets = o.offsets
    i = start
    while i < end:
        kind = mv[i]
        if kind == OPT_NOP:
            items.append(_ITEM_NOP)
            offsets.append((i - start, 1))
            i += 1
            continue
        if kind == OPT_EOL:
            # RFC 9293 §3.1: End of Option List; what follows is padding.
            items.append(_ITEM_EOL)
            offsets.append((i - start, 1))
            break
        if i + 1 >= end:
            raise _bad("bad_option_length", f"option kind {kind} at offset {i - start} has no length byte")
        olen = mv[i + 1]
        if olen < 2:
            raise _bad("bad_option_length", f"option kind {kind} at offset {i - start} has length {olen} (< 2)")
        if i + olen > end:
            raise _bad("bad_option_length",
                       f"option kind {kind} at offset {i - start} has length {olen}, runs past the header "
                       f"({end - i} bytes left)")
        if kind == OPT_TIMESTAMPS:
            if olen != 10:
                raise _bad("bad_option_length", f"Timestamps option length {olen}, must be 10 (RFC 7323 §3.2)")
            val, ecr = _unpack_ts(mv, i + 2)
            o.ts_val = val
            o.ts_ecr = ecr
            items.append(("ts", val, ecr))
        elif kind == OPT_MSS:
            if olen != 4:
                raise _bad("bad_option_length", f"MSS option length {olen}, must be 4 (RFC 9293 §3.2)")
            mss = _unpack_u16(mv, i + 2)[0]
            o.mss = mss
            items.append(("mss", mss))
        elif kind == OPT_WSCALE:
            if olen != 3:
                raise _bad("bad_option_length", f"Window Scale option length {olen}, must be 3 (RFC 7323 §2.2)")
            shift = mv[i + 2]
            o.wscale = shift
            items.append(("wscale", shift))
        elif kind == OPT_SACK_PERMITTED:
            if olen != 2:
                raise _bad("bad_option_length", f"SACK-Permitted option length {olen}, must be 2 (RFC 2018 §2)")
            o.sack_permitted = True
            items.append(_ITEM_SACKOK)
        elif kind == OPT_SACK:
            nblocks, rem = divmod(olen - 2, 8)
            if rem or not 1 <= nblocks <= 4:
                raise _bad("bad_sack_length", f"SACK option length {olen}, must be 2+8n with n in 1..4 (RFC 2018 §3)")
            blocks = tuple(_unpack_ts(mv, i + 2 + 8 * k) for k in range(nblocks))
            o.sack_blocks = blocks
            items.append(("sack", blocks))
        else:
            data = bytes(mv[i + 2:i + olen])
            o.unknown.append((kind, data))
            items.append(("unknown", kind, data))
        offsets.append((i - start, olen))
        i += olen
    return o


def parse_options(buf) -> TCPOptions:
    """Parse a TCP options area (the header bytes after the fixed 20; RFC 9293 §3.1).

    Raises :class:`MalformedPacket` (layer ``tcp``) with reason
    ``bad_option_length`` or ``bad_sack_length``.
    """
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = len(mv)
    if n == 0:
        return NO_OPTIONS
    if n == 12:
        word, val, ecr = _unpack_nnts(mv, 0)
        if word == _NOP_NOP_TS_WORD:
            return _parse_nnts(val, ecr)
    return _parse_general(mv, 0, n)


def _check_u32(name: str, value) -> int:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be a 32-bit unsigned int, got {value!r}")
    return value


def max_sack_blocks(*, timestamps: bool) -> int:
    """How many SACK blocks fit beside the other data-segment options (RFC 2018 §3).

    4 without Timestamps, 3 with them (NOP,NOP,TS takes 12 of the 40 bytes).
    """
    return 3 if timestamps else 4


def build_options(*, mss=None, wscale=None, sack_permitted: bool = False, ts=None, sack_blocks=()) -> bytes:
    """Encode options in the order Linux sends them, 32-bit aligned (RFC 9293 §3.1).

    Layout: ``MSS`` (2,4,v); then ``SACK_PERM,TS`` as (4,2,8,10,val,ecr) when
    both, else ``NOP,NOP,TS`` or ``NOP,NOP,SACK_PERM``; then ``NOP,WS``
    (1,3,3,shift); then ``NOP,NOP,SACK`` (RFC 2018 §3).  ``ts`` is a
    ``(ts_val, ts_ecr)`` pair (RFC 7323 §3.2).  The result is a multiple of 4
    bytes and at most 40; :class:`ValueError` if the options do not fit (see
    :func:`max_sack_blocks`) or a value is out of range (MSS 0..65535, shift
    0..14).
    """
    out = bytearray()
    if mss is not None:
        if not isinstance(mss, int) or not 0 <= mss <= 0xFFFF:
            raise ValueError(f"MSS must be 0..65535, got {mss!r}")
        out += b"\x02\x04" + _U16.pack(mss)
    if ts is not None:
        val, ecr = ts
        body = _TS_BODY.pack(_check_u32("ts_val", val), _check_u32("ts_ecr", ecr))
        out += (b"\x04\x02\x08\x0a" if sack_permitted else b"\x01\x01\x08\x0a") + body
    elif sack_permitted:
        out += b"\x01\x01\x04\x02"
    if wscale is not None:
        if not isinstance(wscale, int) or not 0 <= wscale <= MAX_WSCALE:
            raise ValueError(f"window scale shift must be 0..{MAX_WSCALE}, got {wscale!r} (RFC 7323 §2.3)")
        out += b"\x01\x03\x03" + bytes((wscale,))
    if sack_blocks:
        if len(sack_blocks) > 4:
            raise ValueError(f"{len(sack_blocks)} SACK blocks, at most 4 fit (RFC 2018 §3)")
        out += b"\x01\x01\x05" + bytes((2 + 8 * len(sack_blocks),))
        for left, right in sack_blocks:
            out += _TS_BODY.pack(_check_u32("SACK left edge", left), _check_u32("SACK right edge", right))
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError(f"options need {len(out)} bytes, at most {MAX_OPTIONS_LEN} fit in a TCP header")
    return bytes(out)


def encode_options(items) -> bytes:
    """Encode arbitrary option ``items`` (the :attr:`TCPOptions.items` shapes) in order.

    The general encoder for tests and tools: it writes exactly what it is
    given (including odd layouts, repeated or unknown options) and pads with
    zero bytes (End of Option List, RFC 9293 §3.1) to a 32-bit boundary.
    :class:`ValueError` if the result exceeds 40 bytes or an item is invalid.
    """
    out = bytearray()
    for item in items:
        tag = item[0]
        if tag == "eol":
            out.append(OPT_EOL)
        elif tag == "nop":
            out.append(OPT_NOP)
        elif tag == "mss":
            out += b"\x02\x04" + _U16.pack(item[1])
        elif tag == "wscale":
            out += b"\x03\x03" + bytes((item[1],))
        elif tag == "sackok":
            out += b"\x04\x02"
        elif tag == "sack":
            blocks = item[1]
            if not 1 <= len(blocks) <= 4:
                raise ValueError("a SACK option carries 1..4 blocks (RFC 2018 §3)")
            out += bytes((OPT_SACK, 2 + 8 * len(blocks)))
            for left, right in blocks:
                out += _TS_BODY.pack(_check_u32("SACK left edge", left), _check_u32("SACK right edge", right))
        elif tag == "ts":
            out += b"\x08\x0a" + _TS_BODY.pack(_check_u32("ts_val", item[1]), _check_u32("ts_ecr", item[2]))
        elif tag == "unknown":
            kind, data = item[1], bytes(item[2])
            if kind in (OPT_EOL, OPT_NOP) or not 0 <= kind <= 255 or len(data) > 253:
                raise ValueError(f"bad unknown option kind {kind} / length {len(data)}")
            out += bytes((kind, 2 + len(data))) + data
        else:
            raise ValueError(f"unknown option item {item!r}")
    pad = -len(out) & 3
    out += bytes(pad)
    if len(out) > MAX_OPTIONS_LEN:
        raise ValueError(f"options need {len(out)} bytes, at most {MAX_OPTIONS_LEN} fit in a TCP header")
    return bytes(out)
