"""IPv4 input: validation and drops by named reason (RFC 791 §3.1, RFC 1122 §3.2.1)."""
import struct

import pytest

from netstack.wire import icmp as W
from netstack.wire.ipv4 import ip2int, ipv4_packet

from tests.support.ip_helpers import PEER, US, Recorder, icmp_of, layer, out_packets


def good(**kw):
    kw.setdefault("payload", b"x" * 20)
    return ipv4_packet(src=kw.pop("src", PEER), dst=kw.pop("dst", US), protocol=kw.pop("protocol", 6), **kw)


def drops(ip):
    return ip.counters.matching("ip.in.drop.")


def test_valid_datagram_is_delivered_to_transport():
    ip = layer()
    t = Recorder()
    ip.register(6, t)
    ip.input(good(payload=b"segment"), 1.5)
    assert t.got == [(PEER, US, b"segment", 1.5)]
    assert ip.counters.get("ip.in.delivered") == 1 and drops(ip) == {}


def test_padding_beyond_total_length_is_ignored():
    ip = layer()
    t = Recorder()
    ip.register(6, t)
    ip.input(good(payload=b"abc") + b"\0\0\0\0", 0)
    assert t.got[0][2] == b"abc"


def corrupt(pkt, at, value, fmt="!B"):
    b = bytearray(pkt)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


@pytest.mark.parametrize("mangle,reason", [
    (lambda p: p[:12], "truncated"),
    (lambda p: corrupt(p, 0, 0x55), "bad_version"),
    (lambda p: corrupt(p, 0, 0x44), "bad_ihl"),
    (lambda p: corrupt(p, 2, 10, "!H"), "bad_total_length"),
    (lambda p: corrupt(p, 2, 2000, "!H"), "bad_total_length"),
    (lambda p: corrupt(p, 10, 0x1234, "!H"), "bad_checksum"),
    (lambda p: b"\x60" + p[1:], "not_ipv4"),
])
def test_malformed_dropped_by_reason(mangle, reason):
    ip = layer()
    t = Recorder()
    ip.register(6, t)
    ip.input(mangle(good()), 0)
    assert t.got == []
    assert drops(ip) == {f"ip.in.drop.{reason}": 1}
    assert ip.outbox == type(ip.outbox)()          # nothing answered


def test_not_for_us_dropped():
    ip = layer()
    ip.register(6, Recorder())
    ip.input(good(dst=ip2int("198.18.0.3")), 0)
    ip.input(good(dst=ip2int("255.255.255.255")), 0)
    assert drops(ip) == {"ip.in.drop.not_for_us": 2}


@pytest.mark.parametrize("src", ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1"])
def test_martian_source_dropped(src):
    ip = layer()
    ip.input(good(src=ip2int(src), protocol=1, payload=W.echo_request(1, 1)), 0)
    assert drops(ip) == {"ip.in.drop.bad_src": 1}
    assert not ip.outbox


def test_unknown_protocol_gets_protocol_unreachable():
    ip = layer()
    pkt = good(protocol=253, payload=b"0123456789abcdef")
    ip.input(pkt, 0)
    assert drops(ip) == {"ip.in.drop.unknown_protocol": 1}
    (reply,) = out_packets(ip)
    assert (reply.src, reply.dst, reply.protocol) == (US, PEER, 1)
    m = icmp_of(reply)
    assert (m.type, m.code) == (W.DEST_UNREACH, W.PROTOCOL)
    assert bytes(m.payload) == pkt[:28]             # original header + 8 bytes (RFC 792)


def test_transport_exception_does_not_escape():
    ip = layer()

    class Broken(Recorder):
        def on_datagram(self, *a):
            raise RuntimeError("boom")

    ip.register(6, Broken())
    ip.input(good(), 0)
    assert drops(ip) == {"ip.in.drop.transport_error": 1}


def test_random_garbage_never_raises():
    import random
    rng = random.Random(3)
    ip = layer()
    base = good(protocol=1, payload=W.echo_request(1, 1, b"hello"))
    for _ in range(3000):
        b = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        ip.input(bytes(b[:rng.randrange(len(b) + 1)]), 0)
    assert ip.counters.get("ip.in.packets") == 3000


def test_options_are_walked_and_broken_ones_dropped():
    ip = layer()
    t = Recorder()
    ip.register(6, t)
    ip.input(good(options=b"\x01\x01\x01\x00"), 0)                 # NOP NOP NOP EOL: fine, ignored
    assert len(t.got) == 1
    ip.input(good(options=b"\x07\x09\x04\x00"), 0)                 # record route claiming 9 bytes in 4
    ip.input(good(options=b"\x01\x01\x01\x44"), 0)                 # timestamp with no length byte
    assert drops(ip) == {"ip.in.drop.bad_option_length": 2}
    assert len(t.got) == 1
