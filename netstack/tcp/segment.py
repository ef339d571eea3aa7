"""Serialising TCP: every outgoing segment's options and bytes are made here, and only here.

The state machine never encodes bytes.  A connection describes a segment by
its fields (the repr, as smoltcp's ``TcpRepr``): sequence and
acknowledgment numbers, control bits, window field, payload, and the
options as values: the timestamps pair, the SACK blocks, or the SYN options
(:class:`~netstack.tcp.negotiation.SynOptions`).  The layer hands those to
:func:`serialize`, which writes one complete segment, checksum included,
into a freshly sized ``bytearray`` that goes straight into the outbox (the
payload is copied once, from the send buffer; a reusable buffer is not
possible because the outbox holds segments until the stack drains it).  The
layer asks for ``headroom`` in front of the segment, where the IP layer then
writes its header: the datagram leaves from that same buffer, so the payload
is copied once between the send buffer and the link.

Option layouts are the ones Linux sends (RFC 9293 §3.1, RFC 7323 Appendix A,
RFC 2018 §3): ``NOP,NOP,TS`` on every segment once timestamps are on, then
``NOP,NOP,SACK`` blocks; SYNs carry ``MSS, SACK_PERM|NOP,NOP, TS, NOP,WS``
(:func:`netstack.wire.tcp_options.build_options`).

**The pure-ACK template.**  A pure ACK with timestamps (every second data
segment received) has one fixed shape: a 32-byte header with ``NOP,NOP,TS``.
:func:`pack_ts_header` writes it with one ``pack_into``, the checksum
computed from the field values: the ones' complement sum is the sum modulo
0xFFFF (RFC 1071 §2), a 32-bit field adding as its two halves, with the
pseudo-header (src, dst, 0, 6, length) included (RFC 9293 §3.1).  The
benchmarks build the kernel's segments with the same function.  The layer
keeps one :class:`AckTemplate` per connection: the part of that sum that
never changes on a connection is added once, not per ACK.  Its data segments with
timestamps (no SACK blocks) have the same 32-byte header: :meth:`AckTemplate.build_data`
writes it with one ``pack_into`` in front of the payload, the checksum partial (the
pseudo-header sum, for checksum offload) or computed over the segment in one native call.
"""
from __future__ import annotations

import struct

from netstack import checksum as _checksum
from netstack.wire.tcp import build_tcp
from netstack.wire.tcp_options import build_options

from .seq import MASK

#: The first word of the NOP,NOP,TS option block (kinds 1, 1, 8, length 10).
TS_WORD = 0x0101080A
#: A 20-byte header followed by NOP,NOP,TS: the layout of nearly every segment once
#: timestamps are on (also what the receive path's header prediction unpacks).
HEADER_TS = struct.Struct("!HHIIHHHHIII")
_pack_header_ts = HEADER_TS.pack_into
_pack_ts_segment = HEADER_TS.pack
_TS_BLOCK = struct.Struct("!III")
_pack_ts_block = _TS_BLOCK.pack
#: The constant part of the checksum sum of a 32-byte NOP,NOP,TS segment: protocol 6,
#: TCP length 32, and the option word's two halves.
_TS_ACK_CONST = 6 + 32 + 0x0101 + 0x080A
_phc = _checksum.pseudo_header_checksum
_pack_u16 = struct.Struct("!H").pack_into


def pack_ts_header(buf, offset: int, src: int, dst: int, src_port: int, dst_port: int, seq: int, ack: int,
                   flags: int, window: int, tsval: int, tsecr: int) -> None:
    """Write a 32-byte data-less segment with NOP,NOP,TS at ``offset``, checksum included.

    :class:`struct.error` for an out-of-range field (callers that must report
    which one take :func:`serialize`'s general path).
    """
    offflags = 0x8000 | flags                   # data offset 8 words
    s = (src + dst + _TS_ACK_CONST + src_port + dst_port + seq + ack + offflags + window
         + tsval + tsecr) % 0xFFFF
    _pack_header_ts(buf, offset, src_port, dst_port, seq, ack, offflags, window, 0xFFFF - s if s else 0, 0,
                    TS_WORD, tsval, tsecr)


class AckTemplate:
    """One connection's pure ACK with timestamps, its constant part computed once.

    A connection's pure ACKs (the receive path sends one per two data segments)
    share the ports, the data offset and ``NOP,NOP,TS``, and in their checksum
    sum the pseudo-header (addresses, protocol, length 32) and those fields
    (RFC 9293 §3.1, RFC 1071 §2): ``const`` holds that sum, and :meth:`build`
    adds only what changes from one ACK to the next.
    """

    __slots__ = ("src", "dst", "src_port", "dst_port", "const")

    def __init__(self, src: int, dst: int, src_port: int, dst_port: int) -> None:
        self.src = src
        self.dst = dst
        self.src_port = src_port
        self.dst_port = dst_port
        self.const = src + dst + _TS_ACK_CONST + src_port + dst_port + 0x8000

    def build(self, seq: int, ack: int, flags: int, window: int, tsval: int, tsecr: int) -> bytes | None:
        """The 32-byte segment, checksum included, as ``bytes`` (one ``Struct.pack``: no buffer
        to allocate and fill); None for a field out of range (flags beyond 9 bits, a window
        over 16 bits, a sequence number or timestamp outside 32 bits: :func:`serialize`, which
        takes sequence numbers modulo 2**32, builds those)."""
        if flags & ~0x1FF:
            return None
        s = (self.const + seq + ack + flags + window + tsval + tsecr) % 0xFFFF
        try:
            return _pack_ts_segment(self.src_port, self.dst_port, seq, ack, 0x8000 | flags, window,
                                    0xFFFF - s if s else 0, 0, TS_WORD, tsval, tsecr)
        except struct.error:
            return None

    def build_data(self, seq: int, ack: int, flags: int, window: int, tsval: int, tsecr: int, payload,
                   partial: bool, headroom: int):
        """A segment with ``payload`` and NOP,NOP,TS, as :func:`serialize` builds it (same
        ``partial`` and ``headroom``): the header in one ``pack_into``, the payload copied
        once; the checksum the pseudo-header sum (``partial``, RFC 1071 §2: src and dst add
        as their halves modulo 0xFFFF) or the full one, in one native call (RFC 9293 §3.1).
        None for a field out of range (:func:`serialize` names it)."""
        if flags & ~0x1FF:
            return None
        total = 32 + len(payload)
        buf = bytearray(headroom + total)
        try:
            _pack_header_ts(buf, headroom, self.src_port, self.dst_port, seq & MASK, ack & MASK, 0x8000 | flags,
                            window, 0, 0, TS_WORD, tsval, tsecr)
        except struct.error:
            return None
        buf[headroom + 32:] = payload
        if partial:
            s = (self.src + self.dst + 6 + total) % 0xFFFF
            _pack_u16(buf, headroom + 16, s or 0xFFFF)
            return memoryview(buf)[headroom:] if headroom else buf
        mv = memoryview(buf)[headroom:] if headroom else memoryview(buf)
        _pack_u16(buf, headroom + 16, _phc(self.src, self.dst, 6, mv))
        return mv if headroom else buf


def option_bytes(ts, sack_blocks, syn) -> bytes:
    """The option bytes for a segment: SYN options, or timestamps and SACK blocks."""
    if syn is not None:
        return build_options(mss=syn.mss, wscale=syn.wscale, sack_permitted=syn.sack_permitted, ts=syn.ts)
    if sack_blocks:
        return build_options(ts=ts, sack_blocks=sack_blocks)
    if ts is not None:
        return _pack_ts_block(TS_WORD, ts[0], ts[1])
    return b""


def serialize(src: int, dst: int, src_port: int, dst_port: int, seq: int, ack: int, flags: int, window: int,
              payload=b"", ts: tuple[int, int] | None = None, sack_blocks=None, syn=None,
              partial: bool = False, headroom: int = 0):
    """One complete TCP segment (RFC 9293 §3.1), checksum filled, as a new bytearray.

    ``ts`` is ``(TSval, TSecr)`` or None; ``sack_blocks`` a list of
    ``(left, right)`` or None; ``syn`` a SynOptions for a SYN or SYN-ACK.
    ``partial``: leave only the pseudo-header sum in the checksum field, for a
    link with checksum offload (a segment with data; TSO super-segments too).
    ``headroom`` > 0: the bytearray has that many free bytes in front of the
    segment (for the IP header: :class:`netstack.transport.Outgoing`), and the
    segment is returned as a memoryview of the rest, so that the payload is
    copied once, from the send buffer, all the way to the link.
    :class:`ValueError` names an out-of-range field.
    """
    if ts is not None and not payload and not sack_blocks and syn is None and not flags & ~0x1FF:
        buf = bytearray(headroom + 32)
        try:
            pack_ts_header(buf, headroom, src, dst, src_port, dst_port, seq & MASK, ack & MASK,
                           flags, window, ts[0], ts[1])
            return memoryview(buf)[headroom:] if headroom else buf
        except struct.error:
            pass                                # out-of-range field: build_tcp says which
    options = option_bytes(ts, sack_blocks, syn)
    olen = len(options)
    buf = bytearray(headroom + 20 + ((olen + 3) & ~3) + len(payload))
    build_tcp(buf, headroom, src=src, dst=dst, src_port=src_port, dst_port=dst_port, seq=seq, ack=ack,
              flags=flags, window=window, options=options, payload=payload, partial=partial)
    return memoryview(buf)[headroom:] if headroom else buf
