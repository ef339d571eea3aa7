"""Serialize one outgoing segment (RFC 9293 §3.1) through netstack.wire.tcp.build_tcp.

Each segment gets one freshly sized bytearray that goes straight into the
layer's outbox: the header is packed in place, the payload is copied into
it once (from the send buffer), and the checksum is one
``pseudo_header_checksum`` call inside build_tcp.  No intermediate bytes
objects.  (A single reusable buffer is not possible here because the
outbox holds segments until the stack drains it.)
"""
from __future__ import annotations

from netstack.wire.tcp import build_tcp


def build_segment(src: int, dst: int, src_port: int, dst_port: int, seq: int, ack: int,
                  flags: int, window: int, options=b"", payload=b"") -> bytearray:
    """Return the complete TCP segment (checksum filled) as a bytearray."""
    olen = len(options)
    buf = bytearray(20 + ((olen + 3) & ~3) + len(payload))
    build_tcp(buf, 0, src=src, dst=dst, src_port=src_port, dst_port=dst_port, seq=seq, ack=ack,
              flags=flags, window=window, options=options, payload=payload)
    return buf
