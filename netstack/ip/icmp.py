"""The ICMP responder (RFC 792; host requirements of RFC 1122 §3.2.2).

* Echo Request to our address → Echo Reply with the same identifier, sequence
  number and data (RFC 1122 §3.2.2.6); reassembled requests are answered too
  (``ping -s 4000``), the reply is fragmented on output.
* Error messages we *emit* (Destination Unreachable protocol/port, Time
  Exceeded for reassembly) go through :meth:`ICMPResponder.send_error`, which
  enforces RFC 1122 §3.2.2: never about an ICMP error message, a non-initial
  fragment, or a datagram whose source or destination is not a unique host
  (broadcast, multicast, 0.0.0.0, loopback, class E); and a token bucket limits
  their rate (counted as ``icmp.out.rate_limited``).
* Error messages we *receive* (Destination Unreachable, Time Exceeded, Source
  Quench, Parameter Problem) are handed to the transport named by the quoted
  datagram's protocol, if one is registered: ``on_icmp_error(icmp_type, code,
  info, quoted, now)`` (:class:`netstack.transport.Transport`); ``info`` is the
  next-hop MTU for "fragmentation needed" (RFC 1191).
"""
from __future__ import annotations

import logging

from netstack.ip.ratelimit import TokenBucket
from netstack.wire import icmp as W
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import PROTO_ICMP, parse_ipv4_quoted

__all__ = ["ICMPResponder", "is_unique_unicast"]

log = logging.getLogger("netstack.ip.icmp")

_TYPE_NAMES = {0: "echo_reply", 3: "dest_unreach", 4: "source_quench", 5: "redirect", 8: "echo_request",
               11: "time_exceeded", 12: "parameter_problem", 13: "timestamp", 14: "timestamp_reply"}
_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))


def is_unique_unicast(addr: int) -> bool:
    """True for an address that names one host (RFC 1122 §3.2.1.3; not 0/8, 127/8, 224/4, 240/4, broadcast)."""
    top = addr >> 24
    return not (top == 0 or top == 127 or top >= 224)


class ICMPResponder:
    def __init__(self, ip, *, error_rate: float = 100.0, error_burst: int = 50) -> None:
        self.ip = ip
        self.counters = ip.counters
        self.bucket = TokenBucket(error_rate, error_burst, None)

    # -- input ---------------------------------------------------------------------------------
    def input(self, src: int, dst: int, payload, datagram, now: float) -> None:
        c = self.counters
        try:
            m = W.parse_icmp(payload)
        except MalformedPacket as exc:
            c.inc(exc.counter_name)
            return
        c.inc("icmp.in.packets")
        c.inc("icmp.in." + _TYPE_NAMES.get(m.type, f"type_{m.type}"))
        t = m.type
        if t == W.ECHO_REQUEST:
            self.ip.send(src, PROTO_ICMP, W.echo_reply(m), now)
            c.inc("icmp.out.packets")
            c.inc("icmp.out.echo_reply")
        elif t in _ERROR_TYPES:
            self._deliver_error(m, now)

    def _deliver_error(self, m, now: float) -> None:
        try:
            quoted = parse_ipv4_quoted(m.payload)
        except MalformedPacket:
            self.counters.inc("icmp.in.drop.bad_quoted_datagram")
            return
        transport = self.ip.transports.get(quoted.protocol)
        if transport is None:
            return
        info = m.rest & 0xFFFF if (m.type == W.DEST_UNREACH and m.code == W.FRAG_NEEDED) else m.rest
        transport.on_icmp_error(m.type, m.code, info, m.payload, now)

    # -- errors we send --------------------------------------------------------------------------
    def may_send_error_about(self, datagram) -> bool:
        """RFC 1122 §3.2.2: the situations in which an ICMP error MUST NOT be sent."""
        mv = memoryview(datagram)
        if len(mv) < 20:
            return False
        if (int.from_bytes(mv[6:8], "big") & 0x1FFF) != 0:          # not the first fragment
            return False
        src = int.from_bytes(mv[12:16], "big")
        dst = int.from_bytes(mv[16:20], "big")
        if not is_unique_unicast(src) or not is_unique_unicast(dst) or dst == self.ip.broadcast:
            return False
        if mv[9] == PROTO_ICMP:                                       # about an ICMP error: never
            hlen = (mv[0] & 15) << 2
            if len(mv) <= hlen or mv[hlen] in _ERROR_TYPES or mv[hlen] not in _TYPE_NAMES:
                return False
        return True

    def send_error(self, icmp_type: int, code: int, datagram, now: float, *, next_hop_mtu: int = 0) -> bool:
        """Send an ICMP error about ``datagram`` (the offending IP datagram) if allowed and not rate-limited."""
        c = self.counters
        if not self.may_send_error_about(datagram):
            c.inc("icmp.out.suppressed")
            return False
        if not self.bucket.take(now):
            c.inc("icmp.out.rate_limited")
            return False
        if icmp_type == W.DEST_UNREACH:
            msg = W.dest_unreachable(code, datagram, next_hop_mtu=next_hop_mtu)
            name = {W.PROTOCOL: "proto_unreach", W.PORT: "port_unreach",
                    W.FRAG_NEEDED: "frag_needed"}.get(code, f"dest_unreach_{code}")
        elif icmp_type == W.TIME_EXCEEDED:
            msg = W.time_exceeded(code, datagram)
            name = "time_exceeded"
        else:
            raise ValueError(f"unsupported ICMP error type {icmp_type}")
        src = int.from_bytes(memoryview(datagram)[12:16], "big")
        self.ip.send(src, PROTO_ICMP, msg, now)
        c.inc("icmp.out.packets")
        c.inc("icmp.out." + name)
        return True
