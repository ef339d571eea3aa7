"""UDP header parse (RFC 768), sans-I/O and zero-copy.

netstack has no UDP sockets; the IP layer parses UDP only to answer "port
unreachable" (netstack.ip.udp), and the dissector to print it.  Malformed
datagrams raise :class:`~netstack.wire.errors.MalformedPacket` with layer
``udp`` and reason ``truncated`` (under 8 bytes), ``bad_length`` (length
field below 8 or beyond the bytes present) or ``bad_checksum`` (a non-zero
checksum that does not verify over the pseudo-header; zero means "none",
RFC 768, RFC 1122 §4.1.3.4).
"""
from __future__ import annotations

import struct

from netstack import checksum as _cs
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import PROTO_UDP

__all__ = ["UDPDatagram", "parse_udp", "UDP_HEADER_LEN"]

UDP_HEADER_LEN = 8
_hdr = struct.Struct("!HHHH").unpack_from


class UDPDatagram:
    """A parsed UDP header (RFC 768); ``payload`` is a view of the input."""

    __slots__ = ("src_port", "dst_port", "length", "checksum", "payload")


def parse_udp(buf, *, src: int | None = None, dst: int | None = None, verify: bool = False) -> UDPDatagram:
    """Parse a UDP datagram; with ``verify`` (needs ``src``/``dst``) a non-zero checksum must verify."""
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if len(mv) < UDP_HEADER_LEN:
        raise MalformedPacket("udp", "truncated", f"{len(mv)} bytes, a UDP header needs 8")
    u = UDPDatagram()
    u.src_port, u.dst_port, u.length, u.checksum = _hdr(mv)
    if u.length < UDP_HEADER_LEN or u.length > len(mv):
        raise MalformedPacket("udp", "bad_length", f"length field {u.length}, {len(mv)} bytes present")
    if verify:
        if src is None or dst is None:
            raise ValueError("verifying a UDP checksum needs the src and dst addresses")
        if u.checksum and _cs.pseudo_header_checksum(src, dst, PROTO_UDP, mv[:u.length]) != 0:
            raise MalformedPacket("udp", "bad_checksum", f"checksum 0x{u.checksum:04x} does not verify")
    u.payload = mv[UDP_HEADER_LEN:u.length]
    return u
