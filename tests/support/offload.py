"""Packets as a kernel with offloads hands them over a TUN: GSO super-segments and partial checksums.

:func:`partial_checksum` leaves in a TCP segment only the pseudo-header sum, as
Linux does for CHECKSUM_PARTIAL (the device, or our stack, adds the rest);
:func:`offloaded_tcp` builds a whole IPv4 datagram with its
:class:`~netstack.link.base.PacketMeta`; :class:`OffloadHost` is our IPv4 + TCP on a fake
clock, fed such packets by a scripted peer.
"""
from __future__ import annotations

import struct

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


OFFLOAD_US = 0xC6120002          # 198.18.0.2: our stack
OFFLOAD_PEER = 0xC6120001        # 198.18.0.1: the offloading kernel
OFFLOAD_MSS = 1448
OFFLOAD_PEER_ISN = 1000


def ts_option(val: int, ecr: int) -> bytes:
    """NOP, NOP, Timestamps (RFC 7323): the option block of every segment of a Linux peer."""
    return struct.pack("!BBBBII", 1, 1, 8, 10, val, ecr)


def data(n: int, start: int = 0) -> bytes:
    """``n`` bytes of a recognisable stream, from offset ``start``."""
    return bytes((start + i) * 7 % 251 for i in range(n))


class OffloadHost:
    """Our IPv4 layer + TCP with a listener on port 80 (fake clock), and a scripted peer that
    hands over what a Linux kernel with TSO and checksum offload hands over a TUN."""

    def __init__(self, config=None):
        from netstack.counters import Counters
        from netstack.ip import IPLayer
        from netstack.tcp import TCPConfig, TCPLayer
        from netstack.wire.tcp import ACK, SYN
        from netstack.wire.tcp_options import build_options

        self.c = Counters()
        self.ip = IPLayer(OFFLOAD_US, counters=self.c)
        self.tcp = TCPLayer(OFFLOAD_US, counters=self.c, config=config or TCPConfig(rcvbuf=1 << 20),
                            isn_secret=b"\x01" * 16)
        self.ip.register(6, self.tcp)
        self.now = 1.0
        self.tsval = 100
        self.origin = 0             #: stream offset that ``seq(0)`` and ``packet(0, ...)`` stand for
        lst = self.tcp.listen(80)
        self.plain(SYN, OFFLOAD_PEER_ISN, 0, options=build_options(mss=OFFLOAD_MSS + 12, wscale=7,
                                                                   sack_permitted=True, ts=(self.tsval, 0)))
        synack = self.sent()[0]
        self.iss = synack.seq
        self.our_ts = synack.options.ts_val
        self.plain(ACK, OFFLOAD_PEER_ISN + 1, self.iss + 1, options=ts_option(self.tsval, self.our_ts))
        self.conn = lst.accept()
        assert self.conn is not None
        self.sent()

    def seq(self, offset: int) -> int:
        """The sequence number of the peer's stream at ``offset`` (counted from ``origin``)."""
        return (OFFLOAD_PEER_ISN + 1 + self.origin + offset) & 0xFFFFFFFF

    def plain(self, flags, seq, ack, payload=b"", options=None, corrupt=False):
        seg = bytearray(tcp_segment(src=OFFLOAD_PEER, dst=OFFLOAD_US, src_port=40000, dst_port=80, seq=seq, ack=ack,
                                    flags=flags, window=65535, options=options if options is not None else b"",
                                    payload=payload))
        if corrupt:
            seg[-1] ^= 0x55
        self.ip.input(ipv4_packet(src=OFFLOAD_PEER, dst=OFFLOAD_US, protocol=6, payload=bytes(seg), df=True),
                      self.now)

    def packet(self, offset: int, payload: bytes, *, flags=None, partial=True, data_valid=False, corrupt=False,
               window=65535):
        """The datagram and metadata of the peer's segment at stream ``offset`` (a super-segment
        beyond one MSS), with the next TSval."""
        from netstack.wire.tcp import ACK, PSH

        self.tsval += 1
        pkt, meta = offloaded_tcp(OFFLOAD_PEER, OFFLOAD_US, sport=40000, dport=80, seq=self.seq(offset),
                                  ack=self.iss + 1, flags=ACK | PSH if flags is None else flags, window=window,
                                  payload=payload, options=ts_option(self.tsval, self.our_ts), mss=OFFLOAD_MSS,
                                  partial=partial, data_valid=data_valid)
        if corrupt:
            pkt = bytearray(pkt)
            pkt[-1] ^= 0x55
        return bytes(pkt), meta

    def offloaded(self, offset: int, payload: bytes, *, meta_override=None, **kw):
        """Hand the IP layer one segment as a TUN read with offloads would (``packet``'s keywords)."""
        pkt, meta = self.packet(offset, payload, **kw)
        self.ip.input_offloaded(memoryview(pkt), meta_override or meta, self.now)

    def read_batch(self, segments) -> None:
        """Several ``(offset, payload)`` segments in one link read (``IPLayer.input_batch``)."""
        self.ip.input_batch([(memoryview(p), m) for p, m in (self.packet(o, d) for o, d in segments)], self.now)

    def poll(self) -> None:
        """The stack's round after a user call: flush what the connection asked to send, fire due timers."""
        self.tcp.poll(self.now)

    def sent(self):
        from netstack.wire.tcp import parse_tcp

        out = []
        while self.tcp.outbox:
            dst, seg, *_ = self.tcp.outbox.popleft()
            out.append(parse_tcp(bytes(seg), src=OFFLOAD_US, dst=OFFLOAD_PEER))
        return out


def stack_segments(link) -> list:
    """The TCP segments our stack sent, as the peer's end of a memory link reads them."""
    from netstack.wire.ipv4 import parse_ipv4
    from netstack.wire.tcp import parse_tcp

    return [parse_tcp(parse_ipv4(bytes(v)).payload, src=OFFLOAD_US, dst=OFFLOAD_PEER) for v, _m in link.recv_batch()]


async def stack_handshake(peer, port: int = 80) -> tuple[int, int, int]:
    """Open a connection from ``peer`` (the peer's end of a memory link) to a listener of our
    stack on ``port``: SYN (MSS, window scale 7, SACK, timestamps), SYN-ACK, ACK.  Returns the
    peer's next sequence number, its ACK and the TSecr it echoes."""
    import asyncio

    from netstack.wire.tcp import ACK, SYN
    from netstack.wire.tcp_options import build_options

    syn = tcp_segment(src=OFFLOAD_PEER, dst=OFFLOAD_US, src_port=40000, dst_port=port, seq=999, ack=0, flags=SYN,
                      window=65535, options=build_options(mss=OFFLOAD_MSS + 12, wscale=7, sack_permitted=True,
                                                          ts=(1, 0)))
    peer.send(ipv4_packet(src=OFFLOAD_PEER, dst=OFFLOAD_US, protocol=6, payload=syn, df=True))
    while not peer.pending():
        await asyncio.sleep(0)
    (synack,) = stack_segments(peer)
    seq, ack, ecr = 1000, synack.seq + 1, synack.options.ts_val
    peer.send(ipv4_packet(src=OFFLOAD_PEER, dst=OFFLOAD_US, protocol=6, df=True, payload=tcp_segment(
        src=OFFLOAD_PEER, dst=OFFLOAD_US, src_port=40000, dst_port=port, seq=seq, ack=ack, flags=ACK, window=65535,
        options=ts_option(2, ecr))))
    return seq, ack, ecr
