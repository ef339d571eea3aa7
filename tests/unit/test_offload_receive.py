"""Receiving with TUN offloads: GSO super-segments and partial checksums (the virtio-net header).

The IPv4 layer and TCP, driven with a fake clock; the peer plays a Linux kernel
with TSO and checksum offload on its TUN: it hands over TCP super-segments of
up to 64 KB (PacketMeta gso_type TCPV4) whose checksum holds only the
pseudo-header sum (needs_csum), through ``IPLayer.input_offloaded``.  Plain
packets (no PacketMeta) keep their checksum verified.
"""
from __future__ import annotations

import asyncio
import struct

import pytest

from netstack.counters import Counters
from netstack.ip import IPLayer
from netstack.link import FaultyLink, MemoryLink, PacketMeta
from netstack.stack import Stack
from netstack.tcp import TCPConfig
from netstack.wire.ipv4 import ipv4_packet, parse_ipv4
from netstack.wire.tcp import ACK, FIN, PSH, SYN, parse_tcp, tcp_segment
from netstack.wire.tcp_options import build_options

from tests.support.offload import (OFFLOAD_MSS, OFFLOAD_PEER, OFFLOAD_PEER_ISN, OFFLOAD_US, OffloadHost, data,
                                   offloaded_tcp, partial_checksum, ts_option)

US, PEER, MSS, PEER_ISN = OFFLOAD_US, OFFLOAD_PEER, OFFLOAD_MSS, OFFLOAD_PEER_ISN
Host, _ts = OffloadHost, ts_option


STREAM = data(8 * 44 * MSS)
SUPER = 44 * MSS            # 63712 bytes: a 64 KB super-segment (IP total length 63764)


def test_a_super_segment_enters_tcp_as_one_in_order_segment_and_one_ack_covers_it():
    h = Host()
    h.offloaded(0, STREAM[:SUPER])
    assert h.conn.recv() == STREAM[:SUPER]
    assert h.c.get("ip.in.csum_trusted") == 1
    assert h.conn.rcv.nxt == h.seq(SUPER)
    acks = h.sent()
    assert len(acks) == 1 and acks[0].ack == h.seq(SUPER) and not acks[0].payload   # delayed ACK counts bytes
    assert not [k for k in h.c.snapshot() if ".drop." in k]


def test_a_partial_checksum_is_treated_as_valid_never_dropped_as_bad():
    h = Host()
    h.offloaded(0, STREAM[:MSS])                             # one MSS, NEEDS_CSUM, no GSO
    h.offloaded(MSS, STREAM[MSS:2 * MSS], flags=ACK | FIN)   # the full path (a FIN), partial checksum too
    assert h.conn.recv() == STREAM[:2 * MSS] and h.conn.at_eof
    assert h.c.get("tcp.in.drop.bad_checksum") == 0 and h.c.get("ip.in.csum_trusted") == 2


def test_data_valid_is_honoured_and_plain_packets_are_still_verified():
    h = Host()
    # DATA_VALID: the kernel verified it; we do not again (a wrong field passes)
    h.offloaded(0, STREAM[:MSS], partial=False, data_valid=True, corrupt=True)
    assert h.c.get("ip.in.csum_trusted") == 1 and len(h.conn.recv()) == MSS
    # the same partial-checksum segment as a plain packet: its checksum does not verify, dropped
    pkt, _meta = offloaded_tcp(PEER, US, sport=40000, dport=80, seq=h.seq(MSS), ack=h.iss + 1, flags=ACK,
                               window=65535, payload=STREAM[MSS:2 * MSS], options=_ts(200, h.our_ts))
    h.ip.input(pkt, h.now)
    assert h.c.get("tcp.in.drop.bad_checksum") == 1
    # metadata that vouches for nothing (no NEEDS_CSUM, no DATA_VALID): verified, dropped
    h.offloaded(MSS, STREAM[MSS:2 * MSS], partial=False, corrupt=True)
    assert h.c.get("tcp.in.drop.bad_checksum") == 2
    assert h.conn.readable == 0 and h.conn.rcv.nxt == h.seq(MSS)


def test_a_64k_segment_with_holes_behind_it():
    h = Host()
    k = SUPER
    h.offloaded(0, STREAM[:k])                  # in order
    h.sent()
    h.offloaded(2 * k, STREAM[2 * k:3 * k])     # hole [k, 2k) behind it
    h.offloaded(4 * k, STREAM[4 * k:5 * k])     # hole [3k, 4k)
    dup = h.sent()
    assert dup and all(s.ack == h.seq(k) for s in dup)          # immediate duplicate ACKs
    blocks = dup[-1].options.sack_blocks
    assert (h.seq(4 * k), h.seq(5 * k)) in blocks and (h.seq(2 * k), h.seq(3 * k)) in blocks   # RFC 2018
    h.offloaded(k, STREAM[k:2 * k])             # fills the first hole: up to 3k
    assert h.conn.rcv.nxt == h.seq(3 * k) and h.sent()[-1].ack == h.seq(3 * k)
    h.offloaded(3 * k, STREAM[3 * k:4 * k])
    assert h.conn.rcv.nxt == h.seq(5 * k)
    assert h.conn.recv() == STREAM[:5 * k]
    assert h.sent()[-1].ack == h.seq(5 * k)


def test_a_super_segment_overlapping_out_of_order_data():
    h = Host()
    # out-of-order plain segments first: [10 MSS, 14 MSS) and [20 MSS, 21 MSS)
    for i in (10, 11, 12, 13, 20):
        h.plain(ACK, h.seq(i * MSS), h.iss + 1, STREAM[i * MSS:(i + 1) * MSS], options=_ts(150, h.our_ts))
    assert h.conn.rcv.nxt == h.seq(0)
    # then one super-segment covering [0, 16 MSS): overlaps the first block, stops before the second
    h.offloaded(0, STREAM[:16 * MSS])
    assert h.conn.rcv.nxt == h.seq(16 * MSS)
    last = h.sent()[-1]
    assert last.ack == h.seq(16 * MSS) and tuple(last.options.sack_blocks) == ((h.seq(20 * MSS), h.seq(21 * MSS)),)
    # and one that covers everything, the second block included
    h.offloaded(16 * MSS, STREAM[16 * MSS:30 * MSS])
    assert h.conn.recv() == STREAM[:30 * MSS]
    assert h.tcp.ooo_budget.used == 0


def test_a_lost_super_segment_retransmitted_as_a_super_segment():
    h = Host()
    k = SUPER
    h.offloaded(0, STREAM[:k])
    # [k, 2k) is lost; [2k, 3k) and [3k, 4k) arrive
    h.offloaded(2 * k, STREAM[2 * k:3 * k])
    h.offloaded(3 * k, STREAM[3 * k:4 * k])
    dups = [s for s in h.sent() if s.ack == h.seq(k)]
    assert len(dups) >= 2                                          # the peer's fast retransmit signal
    h.now += 0.2
    h.offloaded(k, STREAM[k:2 * k])                                 # the retransmission, 64 KB whole
    assert h.conn.rcv.nxt == h.seq(4 * k)
    assert h.sent()[-1].ack == h.seq(4 * k)
    assert h.conn.recv() == STREAM[:4 * k]


def test_a_partial_checksum_on_another_protocol_is_completed_not_trusted():
    from netstack.ip.udp import UDPInput  # noqa: F401  (the IP layer's own UDP input verifies)
    c = Counters()
    ip = IPLayer(US, counters=c)
    # a UDP datagram to a closed port, its checksum partial: completed, then answered (port unreachable)
    udp = bytearray(struct.pack("!HHHH", 5000, 9, 8 + 4, 0) + b"ping")
    from tests.support.offload import pseudo_sum
    udp[6:8] = pseudo_sum(PEER, US, len(udp), 17).to_bytes(2, "big")
    pkt = ipv4_packet(src=PEER, dst=US, protocol=17, payload=bytes(udp))
    ip.input_offloaded(memoryview(pkt), PacketMeta(csum_start=20, csum_offset=6, needs_csum=True), 1.0)
    assert c.get("ip.in.csum_completed") == 1
    assert not [k for k in c.snapshot() if "bad_checksum" in k]
    assert ip.outbox and parse_ipv4(ip.outbox[0]).protocol == 1        # ICMP port unreachable


def test_the_stack_loop_hands_metadata_to_the_ip_layer_over_the_memory_link():
    async def main():
        a, peer = MemoryLink.pair(offload=True)
        assert a.offload
        got = bytearray()
        done = asyncio.Event()
        async with Stack(FaultyLink(a), "198.18.0.2", tcp=TCPConfig(rcvbuf=1 << 20)) as stack:
            stack.tcp.listen(80)
            seg = tcp_segment(src=PEER, dst=US, src_port=40000, dst_port=80, seq=PEER_ISN, ack=0, flags=SYN,
                              window=65535, options=build_options(mss=MSS + 12, wscale=7, sack_permitted=True))
            peer.send(ipv4_packet(src=PEER, dst=US, protocol=6, payload=seg, df=True))
            for _ in range(100):
                await asyncio.sleep(0.001)
                if peer.pending():
                    break
            synack = parse_tcp(parse_ipv4(bytes(peer.recv_batch()[0][0])).payload, src=US, dst=PEER)
            pkt, meta = offloaded_tcp(PEER, US, sport=40000, dport=80, seq=PEER_ISN + 1, ack=synack.seq + 1,
                                      flags=ACK | PSH, window=65535, payload=STREAM[:SUPER], mss=MSS)
            peer.send(pkt, meta)
            for _ in range(200):
                await asyncio.sleep(0.001)
                conn = next(iter(stack.tcp.connections.values()))
                got += conn.recv()
                if len(got) >= SUPER:
                    break
            return stack.counters.snapshot(), bytes(got)
    counters, got = asyncio.run(asyncio.wait_for(main(), 10))
    assert got == STREAM[:SUPER]
    assert counters["link.in.gso_packets"] == 1 and counters["ip.in.csum_trusted"] == 1


def test_the_fault_link_carries_metadata_and_corruption_voids_the_vouched_checksum():
    a, b = MemoryLink.pair(offload=True)
    meta = PacketMeta(gso_type=1, gso_size=MSS, hdr_len=52, csum_start=20, csum_offset=16, needs_csum=True)
    f = FaultyLink(b, reorder=0.0, seed=1)
    assert f.offload
    a.send(b"x" * 100, meta)
    [(view, got)] = f.recv_batch()
    assert got == meta
    bad = FaultyLink(b, corrupt=1.0, seed=1)
    a.send(b"x" * 100, meta)
    [(view, got)] = bad.recv_batch()
    assert got is None and bytes(view) != b"x" * 100
