"""Fragment reassembly with limits (RFC 791 §3.2, RFC 815, RFC 1122 §3.3.2)."""
import random

import pytest

from netstack.wire import icmp as W
from netstack.wire.ipv4 import parse_ipv4

from tests.support.ip_helpers import PEER, US, Recorder, frag, fragments, icmp_of, layer, out_packets


def setup(**kw):
    ip = layer(**kw)
    t = Recorder()
    ip.register(6, t)
    return ip, t


def drops(ip):
    return ip.counters.matching("ip.in.drop.")


@pytest.mark.parametrize("order", ["in", "reverse", "shuffled"])
def test_reassembles_in_any_order(order):
    ip, t = setup()
    payload = bytes(random.Random(1).randrange(256) for _ in range(5000))
    frs = fragments(payload, protocol=6, size=1000)
    if order == "reverse":
        frs.reverse()
    elif order == "shuffled":
        random.Random(2).shuffle(frs)
    for f in frs:
        ip.input(f, 0)
    assert t.got == [(PEER, US, payload, 0)]
    assert len(ip.reassembler) == 0 and ip.reassembler.bytes_held == 0
    assert ip.counters.get("ip.reasm.oks") == 1


def test_fragmented_echo_request_gets_reply():
    ip = layer()
    req = W.echo_request(9, 1, b"p" * 4000)
    for f in fragments(req, size=1480):
        ip.input(f, 0)
    replies = out_packets(ip)
    assert len(replies) == 3                     # 4008 bytes of ICMP over MTU 1500
    data = b"".join(bytes(r.payload) for r in replies)
    m = W.parse_icmp(data)
    assert (m.type, m.ident, m.seq, bytes(m.payload)) == (W.ECHO_REPLY, 9, 1, b"p" * 4000)


def test_exact_duplicate_is_ignored():
    ip, t = setup()
    a, b = fragments(bytes(range(200)) * 10, protocol=6, size=1000)
    ip.input(a, 0)
    ip.input(a, 0)
    ip.input(b, 0)
    assert len(t.got) == 1
    assert ip.counters.get("ip.reasm.duplicates") == 1 and drops(ip) == {}


def test_overlap_drops_whole_datagram():
    ip, t = setup()
    ip.input(frag(offset=0, data=b"A" * 16, mf=True, protocol=6), 0)
    ip.input(frag(offset=8, data=b"B" * 16, mf=True, protocol=6), 0)     # overlaps [8,16)
    assert drops(ip) == {"ip.in.drop.reasm_overlap": 1}
    assert len(ip.reassembler) == 0 and ip.reassembler.bytes_held == 0
    ip.input(frag(offset=16, data=b"C" * 8, mf=False, protocol=6), 0)    # the rest never completes it
    assert t.got == []


def test_same_offset_different_content_is_overlap():
    ip, _ = setup()
    ip.input(frag(offset=0, data=b"A" * 16, mf=True), 0)
    ip.input(frag(offset=0, data=b"B" * 16, mf=True), 0)
    assert drops(ip) == {"ip.in.drop.reasm_overlap": 1}


def test_total_beyond_65535_dropped():
    ip, _ = setup()
    ip.input(frag(offset=0, data=b"A" * 1480, mf=True), 0)
    ip.input(frag(offset=65512, data=b"Z" * 16, mf=False), 0)          # ends at 65528 + 20 > 65535
    assert drops(ip) == {"ip.in.drop.reasm_too_big": 1}
    assert len(ip.reassembler) == 0


def test_inconsistent_end_dropped():
    ip, _ = setup()
    ip.input(frag(offset=16, data=b"A" * 16, mf=False), 0)              # end 32
    ip.input(frag(offset=64, data=b"B" * 16, mf=True), 0)                # beyond the end
    assert drops(ip) == {"ip.in.drop.reasm_inconsistent": 1}


def test_bad_fragment_length():
    ip, _ = setup()
    ip.input(frag(offset=0, data=b"A" * 13, mf=True), 0)
    assert drops(ip) == {"ip.in.drop.bad_fragment_length": 1}


def test_timeout_drops_and_sends_time_exceeded():
    ip, t = setup(reassembly_timeout=30.0)
    first = frag(offset=0, data=b"A" * 1480, mf=True, protocol=6)
    ip.input(first, 100.0)
    assert ip.next_deadline() == 130.0
    ip.poll(129.9)
    assert len(ip.reassembler) == 1
    ip.poll(130.0)
    assert drops(ip) == {"ip.in.drop.reasm_timeout": 1}
    assert ip.next_deadline() is None and ip.reassembler.bytes_held == 0
    (err,) = out_packets(ip)
    m = icmp_of(err)
    assert (m.type, m.code) == (W.TIME_EXCEEDED, W.FRAG_REASSEMBLY_EXCEEDED)
    assert bytes(m.payload)[:20] == first[:20]
    ip.input(frag(offset=1480, data=b"B" * 8, mf=False, protocol=6), 131)
    assert t.got == []


def test_timeout_without_fragment_zero_sends_nothing():
    ip, _ = setup()
    ip.input(frag(offset=8, data=b"A" * 8, mf=True), 0)
    ip.poll(31)
    assert drops(ip) == {"ip.in.drop.reasm_timeout": 1}
    assert not ip.outbox


def test_datagram_cap_evicts_oldest():
    ip, t = setup(reassembly_max_datagrams=4)
    for ident in range(10):
        ip.input(frag(offset=0, data=b"A" * 8, mf=True, ident=ident, protocol=6), 0)
    assert len(ip.reassembler) == 4
    assert drops(ip) == {"ip.in.drop.reasm_overflow": 6}
    ip.input(frag(offset=8, data=b"B", mf=False, ident=9, protocol=6), 0)     # newest survives
    assert t.got and t.got[0][2] == b"A" * 8 + b"B"


def test_byte_cap_bounds_memory_under_flood():
    cap = 64 * 1024
    ip, t = setup(reassembly_max_bytes=cap, reassembly_max_datagrams=1000)
    for ident in range(500):
        ip.input(frag(offset=0, data=b"F" * 1480, mf=True, ident=ident), 0)
        assert ip.reassembler.bytes_held <= cap
    assert ip.reassembler.peak_bytes_held <= cap
    assert ip.counters.get("ip.in.drop.reasm_overflow") >= 500 - cap // 1480
    # a legitimate datagram still gets through afterwards
    payload = b"L" * 3000
    for f in fragments(payload, protocol=6, ident=9999, size=1480):
        ip.input(f, 1)
    assert t.got[-1][2] == payload


def test_reassembled_header_is_unfragmented():
    ip, _ = setup()
    whole = None
    for f in fragments(bytes(3000), protocol=6, size=1480):
        whole = ip.reassembler.add(parse_ipv4(f), 0) or whole
    p = parse_ipv4(whole)
    assert (p.mf, p.frag_offset, p.total_length, p.checksum_ok) == (False, 0, 3020, True)
