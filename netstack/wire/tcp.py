"""TCP header parse and build (RFC 9293 §3.1), sans-I/O and zero-copy.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |     |N|C|E|U|A|P|R|S|F|                               |
    | Offset| Rsv |S|W|C|R|C|S|S|Y|I|            Window             |
    |       |     | |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           [Options]                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

All nine flag bits are kept: the eight control bits of RFC 9293 §3.1 (CWR and
ECE from RFC 3168 §6.1) and NS (RFC 3540, historic since RFC 8311) in the
lowest reserved bit.  The three other reserved bits are ignored on receipt and
sent as zero (RFC 9293 §3.1 "Rsrvd").

The checksum covers the IPv4 pseudo-header (source, destination, zero,
protocol 6, TCP length) and the whole segment (RFC 9293 §3.1 "Checksum";
RFC 1122 §4.2.2.7: a segment with a bad checksum is discarded).  Both
directions make exactly one :func:`netstack.checksum.pseudo_header_checksum`
call per segment.

This is the receive hot path: :func:`parse_tcp` does one precompiled
``unpack_from`` for the fixed header, one more for the usual ``NOP,NOP,TS``
options, and two memoryview slices; the payload is never copied.
"""
from __future__ import annotations

import struct

from netstack import checksum as _cs
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import _addr
from netstack.wire.tcp_options import (
    MAX_OPTIONS_LEN, NO_OPTIONS, TCPOptions, _parse_general, _parse_nnts, _NOP_NOP_TS_WORD, build_options,
    encode_options, max_sack_blocks, parse_options,
)

__all__ = [
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS", "FLAG_MASK", "TCP_HEADER_LEN",
    "PROTO_TCP", "flags_str", "TCPOptions", "TCPSegment", "parse_tcp", "parse_options", "build_options",
    "encode_options", "max_sack_blocks", "build_tcp", "tcp_segment", "pseudo_header_sum", "predict_ts_segment",
]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
NS = 0x100
FLAG_MASK = 0x1FF
TCP_HEADER_LEN = 20
PROTO_TCP = 6

_LAYER = "tcp"

_HDR = struct.Struct("!HHIIHHHH")
_unpack_hdr = _HDR.unpack_from
_pack_hdr = _HDR.pack_into
_unpack_u32x3 = struct.Struct("!III").unpack_from
_pack_u16 = struct.Struct("!H").pack_into
_phc = _cs.pseudo_header_checksum

# tcpdump's order (print-tcp.c tcp_flag_values), plus "N" for NS.
_FLAG_CHARS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"),
               (ECE, "E"), (CWR, "W"), (NS, "N"))


def flags_str(flags: int) -> str:
    """The control bits (RFC 9293 §3.1) the way tcpdump prints them: ``"S"``, ``"S."``, ``"P."``, ``"F."``, ``"R."``.

    Letters in tcpdump's order F S R P . U E W, then N for NS; ``"none"`` when
    no flag is set (as tcpdump prints it).
    """
    s = "".join(ch for bit, ch in _FLAG_CHARS if flags & bit)
    return s or "none"


class TCPSegment:
    """A parsed TCP segment (RFC 9293 §3.1).

    Integer fields: ``src_port``, ``dst_port``, ``seq``, ``ack``,
    ``data_offset`` (32-bit words), ``flags`` (9 bits, see the constants),
    ``window`` (unscaled, as on the wire), ``checksum`` (as found),
    ``urgent``.  ``options`` is a :class:`TCPOptions` (parsed eagerly),
    ``options_raw`` and ``payload`` are memoryview slices of the input (no
    copy).  ``checksum_ok`` is True/False when the checksum was checked, None
    when it was not (``verify=False`` without addresses).
    """

    __slots__ = ("src_port", "dst_port", "seq", "ack", "data_offset", "flags", "window", "checksum",
                 "urgent", "options", "payload", "checksum_ok", "_view")

    @property
    def options_raw(self) -> memoryview:
        """The option bytes, header bytes 20..``data_offset*4`` (a view of the parsed buffer)."""
        return self._view[20:self.data_offset << 2]

    @property
    def syn(self) -> bool:
        """SYN: synchronize sequence numbers (RFC 9293 §3.1)."""
        return bool(self.flags & SYN)

    @property
    def ack_flag(self) -> bool:
        """ACK: the acknowledgment field is significant (RFC 9293 §3.1)."""
        return bool(self.flags & ACK)

    @property
    def fin(self) -> bool:
        """FIN: no more data from sender (RFC 9293 §3.1)."""
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        """RST: reset the connection (RFC 9293 §3.1)."""
        return bool(self.flags & RST)

    @property
    def psh(self) -> bool:
        """PSH: push function (RFC 9293 §3.1)."""
        return bool(self.flags & PSH)

    @property
    def urg(self) -> bool:
        """URG: the urgent pointer is significant (RFC 9293 §3.1)."""
        return bool(self.flags & URG)

    @property
    def ece(self) -> bool:
        """ECE: ECN-Echo (RFC 3168 §6.1)."""
        return bool(self.flags & ECE)

    @property
    def cwr(self) -> bool:
        """CWR: congestion window reduced (RFC 3168 §6.1)."""
        return bool(self.flags & CWR)

    @property
    def ns(self) -> bool:
        """NS: ECN nonce sum (RFC 3540, historic per RFC 8311)."""
        return bool(self.flags & NS)

    @property
    def header_len(self) -> int:
        """Header length in bytes (``data_offset * 4``)."""
        return self.data_offset << 2

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one each for SYN and FIN (RFC 9293 §3.4)."""
        f = self.flags
        return len(self.payload) + (f & SYN and 1) + (f & FIN and 1)

    def __repr__(self) -> str:
        return (
            f"TCPSegment({self.src_port} > {self.dst_port} [{flags_str(self.flags)}] seq {self.seq} "
            f"ack {self.ack} win {self.window} doff {self.data_offset} urg {self.urgent} "
            f"options {self.options.items!r} len {len(self.payload)} cksum {self.checksum:#06x}"
            f"{'' if self.checksum_ok is not False else ' (bad)'})"
        )


def parse_tcp(buf, *, src=None, dst=None, verify: bool = True) -> TCPSegment:
    """Parse a TCP segment (RFC 9293 §3.1); ``buf`` is exactly the segment (the IP payload).

    With ``verify=True`` (the default) ``src`` and ``dst`` (IPv4 addresses as
    ints) are required and a segment whose checksum over the pseudo-header
    does not verify raises ``bad_checksum`` (RFC 9293 §3.1, RFC 1122
    §4.2.2.7).  With ``verify=False`` the checksum is still computed into
    ``checksum_ok`` when addresses are given, and skipped (``checksum_ok``
    None) when they are not, e.g. when the link already validated it.

    Raises :class:`MalformedPacket` (layer ``tcp``): ``truncated`` (under 20
    bytes), ``bad_data_offset`` (under 5 words or beyond the segment),
    ``bad_checksum``, ``bad_option_length``, ``bad_sack_length``.  Checks run in
    that order, so a corrupted segment is counted as a checksum failure
    rather than as a malformed option.
    """
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = len(mv)
    if n < 20:
        raise MalformedPacket(_LAYER, "truncated", f"{n} bytes, a TCP header needs at least 20")
    sport, dport, seq, ack, offflags, window, csum, urgent = _unpack_hdr(mv)
    doff = offflags >> 12
    hlen = doff << 2
    if doff < 5:
        raise MalformedPacket(_LAYER, "bad_data_offset", f"data offset {doff} words, minimum is 5")
    if hlen > n:
        raise MalformedPacket(_LAYER, "bad_data_offset", f"data offset {doff} words ({hlen} bytes) beyond the {n}-byte segment")
    if src is not None and dst is not None:
        ok = _phc(src, dst, 6, mv) == 0
        if verify and not ok:
            raise MalformedPacket(_LAYER, "bad_checksum", f"checksum {csum:#06x} does not verify")
    elif verify:
        raise ValueError("parse_tcp(verify=True) needs the src and dst addresses for the pseudo-header")
    else:
        ok = None
    if hlen == 32:
        word, val, ecr = _unpack_u32x3(mv, 20)
        opts = _parse_nnts(val, ecr) if word == _NOP_NOP_TS_WORD else _parse_general(mv, 20, 32)
    elif hlen == 20:
        opts = NO_OPTIONS
    else:
        opts = _parse_general(mv, 20, hlen)
    s = TCPSegment()
    s.src_port = sport
    s.dst_port = dport
    s.seq = seq
    s.ack = ack
    s.data_offset = doff
    s.flags = offflags & 0x1FF
    s.window = window
    s.checksum = csum
    s.urgent = urgent
    s.options = opts
    s.payload = mv[hlen:]
    s.checksum_ok = ok
    s._view = mv
    return s


#: The fields header prediction reads: the fixed header and NOP,NOP,TS (a 32-byte header), without
#: the checksum (verified over the whole segment) and the urgent pointer (URG is not predicted).
_PREDICT_FIELDS = struct.Struct("!HHIIHH4xIII").unpack_from
#: data offset 8 words with flags ACK, or ACK|PSH, nothing else (no SYN/FIN/RST/URG/ECE/CWR/NS)
_PREDICT_OFFFLAGS = (0x8010, 0x8018)
_NOP_NOP_TS = 0x0101080A


def _predict_ts_segment(src: int, dst: int, segment, verify: bool = True):
    """The header read of header prediction (Van Jacobson; RFC 9293 §3.1 layout), in Python.

    None unless ``segment`` has the layout of (nearly) every segment of an established
    connection with timestamps: at least 32 bytes, data offset 8 words, flags ACK or
    ACK|PSH and nothing else, the options starting NOP,NOP,TS (RFC 7323 Appendix A).
    Then, with ``verify``, False if the checksum over the pseudo-header does not verify
    (RFC 9293 §3.1); else ``(src_port, dst_port, seq, ack, window, tsval, tsecr)``.
    :func:`predict_ts_segment` is this, or its native twin (identical results).
    """
    try:
        sport, dport, seq, ack, offflags, window, word, tsval, tsecr = _PREDICT_FIELDS(segment)
    except struct.error:                       # under 32 bytes
        return None
    if offflags not in _PREDICT_OFFFLAGS or word != _NOP_NOP_TS:
        return None
    if verify and _phc(src, dst, 6, segment):
        return False
    return sport, dport, seq, ack, window, tsval, tsecr


_entry = _cs.native_entry()
#: ``predict_ts_segment(src, dst, segment, verify)``: see :func:`_predict_ts_segment`; natively
#: (netstack._native_entry, one call for the read and the checksum) when that was built.
predict_ts_segment = _entry.predict_ts_segment if _entry is not None else _predict_ts_segment


def build_tcp(buf, offset: int, *, src: int, dst: int, src_port: int, dst_port: int, seq: int, ack: int,
              flags: int, window: int, urgent: int = 0, options=b"", payload=b"", partial: bool = False) -> int:
    """Write a TCP segment into ``buf`` at ``offset``; returns its length (RFC 9293 §3.1).

    ``options`` are encoded option bytes (see :func:`build_options`); they are
    zero-padded (End of Option List) to a 32-bit boundary and must fit in 40
    bytes.  ``payload`` may already sit in place (a view of ``buf`` right after
    the header); overlapping copies are safe.  ``seq`` and ``ack`` are taken modulo 2**32 (sequence space wraps,
    RFC 9293 §3.4).  The checksum over the IPv4 pseudo-header, header, options
    and payload is filled with a single ``pseudo_header_checksum`` call; with
    ``partial`` the field holds only the pseudo-header's folded sum, for a
    device with checksum offload to complete (Linux's CHECKSUM_PARTIAL).
    :class:`ValueError` for a too-small buffer or out-of-range fields.
    """
    olen = len(options)
    hlen = 20 + ((olen + 3) & ~3)
    if hlen - 20 > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options are {olen} bytes, at most {MAX_OPTIONS_LEN} fit")
    total = hlen + len(payload)
    if offset < 0 or len(buf) - offset < total:
        raise ValueError(f"buffer too small for a {total}-byte TCP segment at offset {offset}")
    if flags & ~FLAG_MASK:
        raise ValueError(f"TCP flags {flags:#x} do not fit in 9 bits")
    try:
        _pack_hdr(buf, offset, src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                  (hlen << 10) | flags, window, 0, urgent)
    except struct.error as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from None
    mv = memoryview(buf)
    if olen:
        mv[offset + 20:offset + 20 + olen] = options
        if hlen - 20 != olen:
            mv[offset + 20 + olen:offset + hlen] = bytes(hlen - 20 - olen)
    if total != hlen:
        mv[offset + hlen:offset + total] = payload
    if partial:
        _pack_u16(buf, offset + 16, pseudo_header_sum(src, dst, 6, total))
    else:
        _pack_u16(buf, offset + 16, _phc(src, dst, 6, mv[offset:offset + total]))
    return total


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """The folded ones' complement sum of the IPv4 pseudo-header (RFC 9293 §3.1), not
    complemented: what a partial checksum holds (RFC 1071 §2: the sum modulo 0xFFFF)."""
    s = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length) % 0xFFFF
    return s or 0xFFFF


def tcp_segment(**kw) -> bytes:
    """A whole TCP segment as ``bytes`` (convenience for tests and tools).

    Same keywords as :func:`build_tcp`; ``src``/``dst`` may also be dotted text.
    """
    kw["src"] = _addr(kw["src"])
    kw["dst"] = _addr(kw["dst"])
    options = kw.get("options", b"")
    out = bytearray(20 + ((len(options) + 3) & ~3) + len(kw.get("payload", b"")))
    build_tcp(out, 0, **kw)
    return bytes(out)
