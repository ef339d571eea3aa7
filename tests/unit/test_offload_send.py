"""Sending with TUN offloads: TSO super-segments and partial checksums, in real MSS-sized accounting.

A TCPLayer told ``offload=True`` (as the stack does on a link with offloads)
builds segments up to ``max_segment`` bytes; one larger than the MSS goes out
as an :class:`~netstack.transport.Outgoing` with ``gso_size`` = SND.MSS and a
partial checksum (the pseudo-header sum only), timestamps in its header (the
link copies them onto every segment it cuts).  Two stacks over the in-memory
link with offloads stand for our stack and a kernel doing GRO/TSO.
"""
from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from netstack.capture.pcap import read_pcap
from netstack.link import CaptureLink, Link
from netstack.sockets import open_connection, start_server
from netstack.stack import TSO_MAX_SEGMENT
from netstack.tcp import TCPConfig
from netstack.wire.ipv4 import parse_ipv4
from netstack.wire.tcp import parse_tcp, pseudo_header_sum

from tests.support.offload import pseudo_sum
from tests.support.sockets_fixtures import B_ADDR, fast_config, stack_pair
from tests.support.tcp_script import PEER, US, Script

MSS = 1448


def _established(max_segment=64000):
    s = Script(TCPConfig(max_segment=max_segment, sndbuf=1 << 20))
    s.layer.offload = True
    conn, _ = s.passive_open(win=65535, wscale=7, mss=MSS + 12)
    return s, conn


def test_a_large_write_leaves_as_one_super_segment_with_gso_fields_and_a_partial_checksum():
    s, conn = _established()
    s.peer(".", seq=s.peer_isn + 1, ack=s.our_isn + 1, win=65535, ts=(s.peer_ts, 1))   # a 8 MB window
    conn.send(bytes(200_000))
    s.poll()
    items = list(s.layer.outbox)
    assert items, "nothing sent"
    dst, seg, df, partial, gso, _headroom = items[0]
    assert partial and gso == conn.snd.mss == MSS
    tcp = parse_tcp(bytes(seg), verify=False)
    assert len(tcp.payload) > MSS and len(tcp.payload) <= 64000
    assert tcp.options.ts_val is not None                      # timestamps ride on every cut segment
    assert int.from_bytes(seg[16:18], "big") == pseudo_header_sum(US, PEER, 6, len(seg)) == \
        pseudo_sum(US, PEER, len(seg))
    # cwnd still counts bytes of real segments: the initial window (10 MSS) limits the first flight
    assert sum(len(parse_tcp(bytes(i[1]), verify=False).payload) for i in items) <= conn.cc.cwnd


def test_small_segments_carry_a_partial_checksum_but_no_gso_and_pure_acks_a_full_one():
    s, conn = _established()
    conn.send(b"hello")
    s.poll()
    dst, seg, df, partial, gso, _headroom = s.layer.outbox.popleft()
    assert partial and gso == 0
    s.peer(".", seq=s.peer_isn + 1, ack=s.our_isn + 6, win=65535, data=b"x" * 3000, ts=(s.peer_ts, 1))
    for dst, seg, df, partial, gso, _headroom in s.layer.outbox:           # an ACK: its checksum is whole
        assert not partial and parse_tcp(bytes(seg), src=US, dst=PEER).checksum_ok


def test_without_offload_nothing_is_partial_and_nothing_exceeds_the_mss():
    s = Script(TCPConfig(sndbuf=1 << 20))
    conn, _ = s.passive_open(win=65535, wscale=7, mss=MSS + 12)
    conn.send(bytes(50_000))
    s.poll()
    for dst, seg, df, partial, gso, _headroom in s.layer.outbox:
        assert (partial, gso) == (False, 0)
        assert len(parse_tcp(bytes(seg), src=US, dst=PEER).payload) <= MSS


class DropFirstSuper(Link):
    """Wraps a link; drops the first super-segment it is asked to send, keeps a copy of its header."""

    def __init__(self, inner):
        self.inner, self.mtu, self.offload, self.name = inner, inner.mtu, inner.offload, "drop-first-super"
        self.dropped = None
        self.sent_seqs = []

    def send(self, data, meta=None):
        tcp = parse_tcp(parse_ipv4(bytes(data)).payload, verify=False)
        if self.dropped is not None:
            self.sent_seqs.append((tcp.seq, len(tcp.payload), bool(meta and meta.gso_type)))
        elif meta is not None and meta.gso_type:
            self.dropped = (tcp.seq, len(tcp.payload))
            return
        self.inner.send(data, meta)

    def recv_batch(self, max_packets=64):
        return self.inner.recv_batch(max_packets)

    def attach(self, loop, on_readable):
        self.inner.attach(loop, on_readable)

    def detach(self):
        self.inner.detach()

    def close(self):
        self.inner.close()


def _transfer(size, *, wrap_a=None, faults=None, pcap=None, seed=1):
    data = random.Random(seed).randbytes(size)
    cfg = fast_config(rto_initial=0.05, rto_min=0.02, rto_max=0.5, sndbuf=1 << 20, rcvbuf=1 << 20)

    def wrap(link):
        if pcap is not None:
            link = CaptureLink(link, pcap=pcap)
        return wrap_a(link) if wrap_a else link

    async def main():
        async with stack_pair(config_a=cfg, config_b=cfg, offload=True, wrap_a=wrap, faults=faults) as (a, b):
            got = {}
            done = asyncio.Event()

            async def handler(reader, writer):
                h, n = hashlib.sha256(), 0
                while chunk := await reader.read(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                got["b"] = (n, h.digest())
                writer.close()
                done.set()

            server = await start_server(b, handler, port=5001)
            reader, writer = await open_connection(a, B_ADDR, 5001)
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            await asyncio.wait_for(done.wait(), 30)
            server.close()
            return got["b"], a.counters.snapshot(), b.counters.snapshot()
    (n, digest), ca, cb = asyncio.run(asyncio.wait_for(main(), 60))
    assert (n, digest) == (size, hashlib.sha256(data).digest())
    return ca, cb


def test_two_stacks_with_offloads_move_super_segments_both_checksums_trusted(tmp_path):
    pcap = tmp_path / "tso.pcap"
    ca, cb = _transfer(3_000_000, pcap=str(pcap))
    assert ca["tcp.out_tso_segs"] > 0
    assert cb["link.in.gso_packets"] == ca["tcp.out_tso_segs"]
    assert cb["ip.in.csum_trusted"] > 0 and not cb.get("tcp.in.drop.bad_checksum")
    # the capture records the super-segments as they cross the link, whole
    sizes = [len(r.data) for r in read_pcap(str(pcap))]
    assert max(sizes) > 1500 and max(sizes) <= 65535
    assert TSO_MAX_SEGMENT + 20 + 60 == 65535


def test_a_lost_super_segment_is_retransmitted_and_the_transfer_completes():
    holder = {}

    def wrap(link):
        holder["link"] = DropFirstSuper(link)
        return holder["link"]
    ca, cb = _transfer(2_000_000, wrap_a=wrap)
    link = holder["link"]
    assert link.dropped is not None
    seq, n = link.dropped
    assert n > MSS
    assert ca["tcp.retrans_segs"] >= 1
    # the lost range went out again from its first byte (SACK recovery sends MSS-sized pieces,
    # a go-back-N after an RTO may resend it as a super-segment)
    again = [(q, m) for q, m, _gso in link.sent_seqs if q == seq and m > 0]
    assert again, link.sent_seqs[:10]


@pytest.mark.timeout(120)
def test_impaired_transfer_with_offloads_stays_intact():
    ca, cb = _transfer(3_000_000, faults=dict(loss=0.05, reorder=0.05, duplicate=0.02, corrupt=0.01, seed=3))
    assert ca["tcp.out_tso_segs"] > 0 and ca["tcp.retrans_segs"] > 0
