"""A minimal UDP input (RFC 768): validate, then answer "port unreachable".

netstack has no UDP sockets, so every valid datagram is for a closed port and
gets ICMP Destination Unreachable code 3 (RFC 1122 §4.1.3.1).  Malformed ones
are dropped and counted: ``udp.in.drop.truncated`` (under 8 bytes),
``udp.in.drop.bad_length`` (length field below 8 or beyond the IP payload),
``udp.in.drop.bad_checksum`` (a non-zero checksum that does not verify over
the pseudo-header, RFC 768 / RFC 1122 §4.1.3.4).
"""
from __future__ import annotations

from netstack.wire.errors import MalformedPacket
from netstack.wire.icmp import DEST_UNREACH, PORT
from netstack.wire.udp import parse_udp

__all__ = ["UDPInput"]


class UDPInput:
    def __init__(self, ip) -> None:
        self.ip = ip
        self.counters = ip.counters

    def input(self, src: int, dst: int, payload, datagram, now: float) -> None:
        c = self.counters
        try:
            parse_udp(payload, src=src, dst=dst, verify=True)
        except MalformedPacket as exc:
            c.inc(exc.counter_name)
            return
        c.inc("udp.in.datagrams")
        c.inc("udp.in.no_port")
        self.ip.icmp.send_error(DEST_UNREACH, PORT, datagram, now)
