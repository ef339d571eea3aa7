"""Packets as a kernel with offloads hands them over a TUN: GSO super-segments and partial checksums.

:func:`partial_checksum` leaves in a TCP segment only the pseudo-header sum, as
Linux does for CHECKSUM_PARTIAL (the device, or our stack, adds the rest);
:func:`offloaded_tcp` builds a whole IPv4 datagram with its
:class:`~netstack.link.base.PacketMeta`.
"""
from __future__ import annotations

from netstack.link.base import GSO_NONE, GSO_TCPV4, PacketMeta
from netstack.wire.ipv4 import ipv4_packet
from netstack.wire.tcp import tcp_segment


def pseudo_sum(src: int, dst: int, length: int, proto: int = 6) -> int:
    """The folded (not complemented) ones' complement sum of the IPv4 pseudo-header."""
    s = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def partial_checksum(seg: bytes | bytearray, src: int, dst: int) -> bytearray:
    """``seg`` with its checksum field holding only the pseudo-header sum (CHECKSUM_PARTIAL)."""
    out = bytearray(seg)
    out[16:18] = pseudo_sum(src, dst, len(out)).to_bytes(2, "big")
    return out


def offloaded_tcp(src: int, dst: int, *, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                  payload: bytes = b"", options: bytes = b"", mss: int = 1448, partial: bool = True,
                  data_valid: bool = False) -> tuple[bytes, PacketMeta]:
    """An IPv4 datagram carrying one TCP segment as the kernel hands it over with offloads on:
    a super-segment (GSO TCPV4, ``gso_size=mss``) when the payload exceeds ``mss``; with
    ``partial`` a partial checksum (NEEDS_CSUM, csum_start 20, csum_offset 16)."""
    seg = tcp_segment(src=src, dst=dst, src_port=sport, dst_port=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                      flags=flags, window=window, options=options, payload=payload)
    if partial:
        seg = partial_checksum(seg, src, dst)
    hlen = 20 + 20 + len(options)
    gso = len(payload) > mss
    meta = PacketMeta(gso_type=GSO_TCPV4 if gso else GSO_NONE, gso_size=mss if gso else 0,
                      hdr_len=hlen if gso else 0, csum_start=20 if partial else 0, csum_offset=16 if partial else 0,
                      needs_csum=partial, data_valid=data_valid)
    return ipv4_packet(src=src, dst=dst, protocol=6, payload=bytes(seg), df=True), meta
