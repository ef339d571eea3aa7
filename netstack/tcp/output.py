"""Serialize one outgoing segment (RFC 9293 §3.1) through netstack.wire.tcp.build_tcp.

Each segment gets one freshly sized bytearray that goes straight into the
layer's outbox: the header is packed in place, the payload is copied into
it once (from the send buffer), and the checksum is one
``pseudo_header_checksum`` call inside build_tcp.  No intermediate bytes
objects.  (A single reusable buffer is not possible here because the
outbox holds segments until the stack drains it.)
"""
from __future__ import annotations

import struct

from netstack.wire.tcp import build_tcp

#: a data-less segment with NOP,NOP,TS: 20-byte header + 12 option bytes (RFC 7323 §3.2, Appendix A)
_HDR_TS = struct.Struct("!HHIIHHHHIII")
_pack_hdr_ts = _HDR_TS.pack_into
_unpack_nnts = struct.Struct("!III").unpack_from
_NNTS_WORD = 0x0101080A


def build_segment(src: int, dst: int, src_port: int, dst_port: int, seq: int, ack: int,
                  flags: int, window: int, options=b"", payload=b"") -> bytearray:
    """Return the complete TCP segment (checksum filled) as a bytearray."""
    olen = len(options)
    if olen == 12 and not payload:
        word, tsval, tsecr = _unpack_nnts(options)
        if word == _NNTS_WORD and not flags & ~0x1FF:
            # The pure ACK with timestamps (every second data segment received): one pack_into,
            # the checksum from the field values.  RFC 1071 §2: the ones' complement sum is the
            # sum modulo 0xFFFF, a 32-bit field adding as its two halves; pseudo-header
            # (src, dst, 0, 6, length 32) included, as RFC 9293 §3.1 says.
            seq &= 0xFFFFFFFF
            ack &= 0xFFFFFFFF
            offflags = 0x8000 | flags                   # data offset 8 words
            s = (src + dst + 6 + 32 + src_port + dst_port + seq + ack + offflags + window + 0x0101 + 0x080A
                 + tsval + tsecr) % 0xFFFF
            buf = bytearray(32)
            try:
                _pack_hdr_ts(buf, 0, src_port, dst_port, seq, ack, offflags, window, 0xFFFF - s if s else 0, 0,
                             _NNTS_WORD, tsval, tsecr)
                return buf
            except struct.error:
                pass                                    # out-of-range field: build_tcp says which
    buf = bytearray(20 + ((olen + 3) & ~3) + len(payload))
    build_tcp(buf, 0, src=src, dst=dst, src_port=src_port, dst_port=dst_port, seq=seq, ack=ack,
              flags=flags, window=window, options=options, payload=payload)
    return buf
