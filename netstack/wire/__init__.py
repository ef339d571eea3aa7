"""Wire formats: parse and build IPv4 (RFC 791), ICMP (RFC 792) and TCP (RFC 9293 §3.1) headers.

Sans-I/O and stateless: bytes in, objects out (and back).  Parsing works on
``memoryview`` and never copies payloads; building writes into caller-owned
buffers with checksums filled.  Every malformed input raises the one exception
:class:`MalformedPacket`, whose ``reason`` is a stable token for drop counters.

Modules: :mod:`.errors`, :mod:`.ipv4`, :mod:`.icmp`, :mod:`.tcp` (fixed header)
and :mod:`.tcp_options` (RFC 7323, RFC 2018 options).
"""
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import (
    IPV4_HEADER_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4Packet, build_ipv4_header, int2ip, ip2int,
    ipv4_packet, parse_ipv4,
)
from netstack.wire.icmp import (
    ICMPMessage, build_icmp, dest_unreachable, echo_reply, echo_request, parse_icmp, quoted_datagram, time_exceeded,
)
from netstack.wire.tcp import (
    TCP_HEADER_LEN, TCPOptions, TCPSegment, build_options, build_tcp, flags_str, parse_options, parse_tcp,
    tcp_segment,
)

__all__ = [
    "MalformedPacket",
    "IPV4_HEADER_LEN", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "IPv4Packet", "build_ipv4_header", "int2ip",
    "ip2int", "ipv4_packet", "parse_ipv4",
    "ICMPMessage", "build_icmp", "dest_unreachable", "echo_reply", "echo_request", "parse_icmp", "quoted_datagram",
    "time_exceeded",
    "TCP_HEADER_LEN", "TCPOptions", "TCPSegment", "build_options", "build_tcp", "flags_str", "parse_options",
    "parse_tcp", "tcp_segment",
]
