"""ICMP responder: echo, errors, RFC 1122 §3.2.2 restrictions, rate limiting."""
import pytest

from netstack.ip.ratelimit import TokenBucket
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ip2int, ipv4_packet

from tests.support.ip_helpers import PEER, US, Recorder, icmp_of, layer, out_packets, udp_datagram


def echo(payload=b"ping", ident=7, seq=3, **kw):
    return ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.echo_request(ident, seq, payload), **kw)


def test_echo_reply_same_ident_seq_data():
    ip = layer()
    ip.input(echo(b"abc" * 10), 0)
    (r,) = out_packets(ip)
    assert (r.src, r.dst, r.protocol) == (US, PEER, 1)
    m = icmp_of(r)
    assert (m.type, m.code, m.ident, m.seq, bytes(m.payload)) == (0, 0, 7, 3, b"abc" * 10)
    assert m.checksum_ok
    assert ip.counters.get("icmp.out.echo_reply") == 1


def test_bad_icmp_checksum_counted_not_answered():
    ip = layer()
    body = bytearray(W.echo_request(1, 1, b"x"))
    body[2] ^= 0xFF
    ip.input(ipv4_packet(src=PEER, dst=US, protocol=1, payload=bytes(body)), 0)
    assert ip.counters.get("icmp.in.drop.bad_checksum") == 1
    assert not ip.outbox


def test_truncated_icmp():
    ip = layer()
    ip.input(ipv4_packet(src=PEER, dst=US, protocol=1, payload=b"\x08\x00"), 0)
    assert ip.counters.get("icmp.in.drop.truncated") == 1


def test_no_error_about_an_icmp_error():
    ip = layer()
    # a Destination Unreachable quoting a datagram to an unknown protocol, sent to an unknown protocol
    # is impossible; instead: an ICMP error arriving is never answered, and may_send_error_about refuses it
    inner = ipv4_packet(src=US, dst=PEER, protocol=17, payload=bytes(8))
    err = ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.dest_unreachable(W.PORT, inner))
    assert not ip.icmp.may_send_error_about(err)
    assert ip.icmp.may_send_error_about(echo())
    ip.input(err, 0)
    assert not ip.outbox
    assert ip.icmp.send_error(W.DEST_UNREACH, W.PROTOCOL, err, 0) is False
    assert ip.counters.get("icmp.out.suppressed") == 1


def test_no_error_about_non_initial_fragment_or_multicast_source():
    ip = layer()
    tail = ipv4_packet(src=PEER, dst=US, protocol=99, payload=bytes(8), frag_offset=8)
    assert not ip.icmp.may_send_error_about(tail)
    mcast = ipv4_packet(src=ip2int("224.0.0.5"), dst=US, protocol=99, payload=bytes(8))
    assert not ip.icmp.may_send_error_about(mcast)


def test_errors_rate_limited_by_token_bucket():
    ip = layer(icmp_error_rate=10.0, icmp_error_burst=5)
    for _ in range(20):
        ip.input(ipv4_packet(src=PEER, dst=US, protocol=200, payload=bytes(8)), 0.0)
    assert len(ip.outbox) == 5
    assert ip.counters.get("icmp.out.rate_limited") == 15
    ip.outbox.clear()
    for _ in range(5):                           # 0.5 s later: 5 new tokens
        ip.input(ipv4_packet(src=PEER, dst=US, protocol=200, payload=bytes(8)), 0.5)
    assert len(ip.outbox) == 5
    # echo replies are not rate limited
    ip.outbox.clear()
    for _ in range(50):
        ip.input(echo(), 0.5)
    assert len(ip.outbox) == 50


def test_token_bucket():
    b = TokenBucket(rate=2, burst=2, now=0)
    assert b.take(0) and b.take(0) and not b.take(0)
    assert not b.take(0.4)
    assert b.take(0.5)
    assert b.take(100) and b.take(100) and not b.take(100)    # never more than burst


def test_incoming_icmp_error_delivered_to_transport():
    ip = layer()
    t = Recorder()
    ip.register(6, t)
    orig = ipv4_packet(src=US, dst=PEER, protocol=6, payload=bytes(range(20)), df=True)
    ip.input(ipv4_packet(src=PEER, dst=US, protocol=1,
                         payload=W.dest_unreachable(W.FRAG_NEEDED, orig, next_hop_mtu=1280)), 0)
    assert t.errors == [(3, 4, 1280, orig[:28])]
