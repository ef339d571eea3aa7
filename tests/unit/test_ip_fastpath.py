"""IPLayer's fast paths (plain 20-byte headers in and out) behave exactly like the full paths.

input(): a datagram with a 20-byte header, for us, not a fragment, to a registered
transport is delivered without building an IPv4Packet; everything else must still
take the full path and be counted under the same drop reasons.  send(): the one
pack_into header must be byte-for-byte what build_ipv4_header writes.
"""
from __future__ import annotations

import random

import pytest

from netstack.counters import Counters
from netstack.ip.layer import IPLayer
from netstack.wire.ipv4 import build_ipv4_header, ip2int, ipv4_packet, parse_ipv4

ME = ip2int("198.18.0.2")
PEER = ip2int("198.18.0.1")


class Recorder:
    def __init__(self):
        self.got = []

    def on_datagram(self, src, dst, payload, now):
        self.got.append((src, dst, type(payload), bytes(payload), now))


def layer(**kw):
    ip = IPLayer(ME, counters=Counters(), **kw)
    t = Recorder()
    ip.register(6, t)
    return ip, t


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_plain_datagram_is_delivered_as_a_memoryview(kind):
    ip, t = layer()
    pkt = ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"segment bytes", df=True, ident=7, tos=0x10)
    buf = {"bytes": pkt, "bytearray": bytearray(pkt), "memoryview": memoryview(pkt)}[kind]
    ip.input(buf, 1.5)
    assert t.got == [(PEER, ME, memoryview, b"segment bytes", 1.5)]
    assert ip.counters.snapshot() == {"ip.in.packets": 1, "ip.in.delivered": 1}


def test_link_padding_beyond_total_length_is_not_delivered():
    ip, t = layer()
    pkt = ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"abc")
    ip.input(pkt + b"\0" * 20, 0)
    assert t.got[0][3] == b"abc"


@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b.__setitem__(10, b[10] ^ 1), "ip.in.drop.bad_checksum"),
    (lambda b: b.__setitem__(slice(16, 20), bytes([198, 18, 0, 9])), "ip.in.drop.bad_checksum"),
    (lambda b: b.__setitem__(slice(2, 4), (len(b) + 1).to_bytes(2, "big")), "ip.in.drop.bad_total_length"),
])
def test_broken_datagrams_still_take_the_full_path(mutate, reason):
    ip, t = layer()
    b = bytearray(ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"x" * 40))
    mutate(b)
    ip.input(b, 0)
    assert t.got == []
    assert ip.counters.get(reason) == 1


def test_not_for_us_bad_source_fragments_options_unknown_protocol_take_the_full_path():
    ip, t = layer()
    ip.input(ipv4_packet(src=PEER, dst=ip2int("198.18.0.3"), protocol=6, payload=b"x"), 0)
    ip.input(ipv4_packet(src=ip2int("224.0.0.1"), dst=ME, protocol=6, payload=b"x"), 0)
    ip.input(ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"x" * 16, mf=True, ident=9), 0)
    ip.input(ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"opt", options=b"\x01\x01\x01\x00"), 0)
    ip.input(ipv4_packet(src=PEER, dst=ME, protocol=99, payload=b"x"), 0)
    c = ip.counters
    assert c.get("ip.in.drop.not_for_us") == 1
    assert c.get("ip.in.drop.bad_src") == 1
    assert c.get("ip.in.drop.unknown_protocol") == 1
    assert [g[3] for g in t.got] == [b"opt"]           # the fragment waits for reassembly
    assert c.get("ip.in.packets") == 5


def test_a_failing_transport_is_counted_and_contained():
    ip = IPLayer(ME, counters=Counters())

    class Broken:
        def on_datagram(self, *a):
            raise RuntimeError("bug")

    ip.register(6, Broken())
    ip.input(ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"x"), 0)
    assert ip.counters.get("ip.in.drop.transport_error") == 1


def test_send_writes_exactly_what_build_ipv4_header_writes():
    rng = random.Random(4)
    out = []
    ip = IPLayer(ME, emit=lambda v: out.append(bytes(v)), mtu=1500)
    for _ in range(2000):
        dst = rng.randrange(1 << 32)
        proto = rng.randrange(256)
        payload = rng.randbytes(rng.randrange(0, 1481))
        df = rng.random() < 0.5
        ttl = rng.choice([None, rng.randrange(1, 256)])
        ident = (ip._ident + 1) & 0xFFFF
        ip.send(dst, proto, payload, 0.0, df=df, ttl=ttl)
        ref = bytearray(20)
        build_ipv4_header(ref, 0, src=ME, dst=dst, protocol=proto, payload_len=len(payload),
                          ttl=64 if ttl is None else ttl, ident=ident, df=df)
        assert out[-1] == bytes(ref) + payload
        assert parse_ipv4(out[-1]).checksum_ok


def test_send_rejects_out_of_range_fields_with_value_error():
    ip = IPLayer(ME, emit=lambda v: None)
    with pytest.raises(ValueError):
        ip.send(1 << 32, 6, b"x", 0.0)
    with pytest.raises(ValueError):
        ip.send(PEER, 6, b"x", 0.0, ttl=256)


def test_plain_datagrams_do_not_build_an_ipv4packet(monkeypatch):
    import netstack.ip.layer as L

    def no_parse(*a, **k):
        raise AssertionError("the fast path should not parse")

    monkeypatch.setattr(L, "parse_ipv4", no_parse)
    ip, t = layer()
    ip.input(ipv4_packet(src=PEER, dst=ME, protocol=6, payload=b"fast"), 0)
    assert [g[3] for g in t.got] == [b"fast"]
