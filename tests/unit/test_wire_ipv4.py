"""IPv4 header parse/build (RFC 791 §3.1) and the MalformedPacket contract."""
from __future__ import annotations

import pickle

import pytest

from netstack.wire import ipv4 as ipv4_mod
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import (
    PROTO_TCP, PROTO_UDP, IPv4Packet, build_ipv4_header, int2ip, ip2int, ipv4_packet, iter_ipv4_options,
    parse_ipv4, parse_ipv4_quoted,
)

from tests.support.wire_vectors import SEED_HELO, ref_checksum


def reason_of(fn, *args, **kw) -> MalformedPacket:
    with pytest.raises(MalformedPacket) as info:
        fn(*args, **kw)
    assert info.value.layer == "ipv4"
    return info.value


# ---------------------------------------------------------------- seed article

def test_seed_helo_ip_header_fields():
    p = parse_ipv4(SEED_HELO, verify=False)
    assert (p.version, p.ihl, p.tos, p.total_length) == (4, 5, 0, 86)
    assert p.ident == 34293 and p.df and not p.mf and p.flags == 0b010 and p.frag_offset == 0
    assert not p.is_fragment
    assert (p.ttl, p.protocol) == (52, PROTO_TCP)
    assert int2ip(p.src) == "192.168.1.100" and int2ip(p.dst) == "192.168.1.200"
    assert len(p.options) == 0 and len(p.header) == 20
    assert bytes(p.payload[:2]) == b"\x9e\x75" and len(p.payload) == 66


def test_seed_helo_ip_checksum_is_really_wrong():
    # The article's addresses were rewritten after capture: the header checksum found (0x5235)
    # is not the one the header needs (0x3c30).  We report it as it really is.
    p = parse_ipv4(SEED_HELO, verify=False)
    assert p.checksum == 0x5235 and p.checksum_ok is False
    expected = ref_checksum(SEED_HELO[:10] + b"\0\0" + SEED_HELO[12:20])
    assert expected == 0x3C30
    assert reason_of(parse_ipv4, SEED_HELO).reason == "bad_checksum"
    fixed = bytearray(SEED_HELO)
    fixed[10:12] = expected.to_bytes(2, "big")
    assert parse_ipv4(fixed).checksum_ok is True


# ---------------------------------------------------------------- build / parse

def test_build_then_parse_every_field():
    buf = bytearray(100)
    opts = b"\x94\x04\x00\x00"  # Router Alert (RFC 2113)
    hlen = build_ipv4_header(buf, 7, src=ip2int("10.0.0.1"), dst=ip2int("198.18.0.2"), protocol=PROTO_UDP,
                             payload_len=9, ttl=3, ident=0xBEEF, df=True, mf=True, frag_offset=1480,
                             tos=(46 << 2) | 1, options=opts)
    assert hlen == 24
    buf[7 + 24:7 + 33] = b"123456789"
    p = parse_ipv4(memoryview(buf)[7:])
    assert p.version == 4 and p.ihl == 6 and p.header_len == 24
    assert p.tos == (46 << 2) | 1 and p.dscp == 46 and p.ecn == 1
    assert p.total_length == 33 and p.ident == 0xBEEF
    assert p.df and p.mf and p.flags == 0b011 and p.frag_offset == 1480 and p.is_fragment
    assert p.ttl == 3 and p.protocol == PROTO_UDP
    assert p.src == ip2int("10.0.0.1") and p.dst == ip2int("198.18.0.2")
    assert bytes(p.options) == opts
    assert bytes(p.payload) == b"123456789"
    assert p.checksum_ok and ref_checksum(bytes(buf[7:7 + 24])) == 0
    # bytes outside the header were not touched
    assert buf[:7] == bytes(7)


def test_options_are_padded_to_32_bits_with_zeros():
    pkt = ipv4_packet(src="1.2.3.4", dst="5.6.7.8", protocol=PROTO_TCP, payload=b"x", options=b"\x01\x01\x01")
    p = parse_ipv4(pkt)
    assert p.ihl == 6 and bytes(p.options) == b"\x01\x01\x01\x00" and bytes(p.payload) == b"x"


def test_only_mf_and_fragment_offset():
    pkt = ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=b"", frag_offset=8 * 0x1FFF)
    p = parse_ipv4(pkt)
    assert p.frag_offset == 8 * 0x1FFF and not p.mf and not p.df and p.is_fragment
    p = parse_ipv4(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, mf=True))
    assert p.mf and p.frag_offset == 0 and p.is_fragment and p.flags == 0b001


def test_reserved_flag_bit_is_reported_not_lost():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP))
    pkt[6] |= 0x80
    pkt[10:12] = b"\0\0"
    pkt[10:12] = ref_checksum(bytes(pkt[:20])).to_bytes(2, "big")
    assert parse_ipv4(pkt).flags == 0b100


def test_payload_is_a_view_not_a_copy():
    buf = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=b"abcd"))
    p = parse_ipv4(buf)
    assert isinstance(p.payload, memoryview) and isinstance(p.header, memoryview)
    assert isinstance(p.options, memoryview)
    buf[20] = ord("Z")
    assert bytes(p.payload) == b"Zbcd"


def test_padding_after_total_length_is_ignored():
    pkt = ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=b"ab") + b"\0" * 20  # Ethernet minimum padding
    p = parse_ipv4(pkt)
    assert bytes(p.payload) == b"ab" and p.total_length == 22


def test_verify_false_reports_checksum_state():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP))
    assert parse_ipv4(pkt, verify=False).checksum_ok is True
    pkt[8] ^= 1  # TTL changed without fixing the checksum
    p = parse_ipv4(pkt, verify=False)
    assert p.checksum_ok is False and p.ttl == 64 ^ 1


def test_accepts_bytes_bytearray_memoryview_and_casts():
    pkt = ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=b"abcd")
    for b in (pkt, bytearray(pkt), memoryview(pkt), memoryview(bytearray(pkt)).cast("c")):
        p = parse_ipv4(b)
        assert bytes(p.payload) == b"abcd"


# ---------------------------------------------------------------- malformed

def test_truncated():
    pkt = ipv4_packet(src=1, dst=2, protocol=PROTO_TCP)
    for n in range(0, 20):
        assert reason_of(parse_ipv4, pkt[:n]).reason == "truncated"


def test_bad_version():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP))
    for v in (0, 6, 15):
        pkt[0] = (v << 4) | 5
        e = reason_of(parse_ipv4, pkt)
        assert e.reason == "bad_version" and e.counter_name == "ip.in.drop.bad_version"


def test_bad_ihl_below_five():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=bytes(40)))
    for ihl in range(5):
        pkt[0] = 0x40 | ihl
        assert reason_of(parse_ipv4, pkt).reason == "bad_ihl"


def test_ihl_beyond_buffer_is_truncated():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP))
    pkt[0] = 0x4F  # 60-byte header claimed, 20 present
    assert reason_of(parse_ipv4, pkt).reason == "truncated"


def test_total_length_below_header_or_beyond_buffer():
    pkt = bytearray(ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=b"abcd"))
    for tl in (0, 19, 25, 1000, 0xFFFF):
        pkt[2:4] = tl.to_bytes(2, "big")
        assert reason_of(parse_ipv4, pkt, verify=False).reason == "bad_total_length"
    pkt[0] = 0x46
    pkt[2:4] = (22).to_bytes(2, "big")  # above 20 but below the 24-byte header
    assert reason_of(parse_ipv4, pkt, verify=False).reason == "bad_total_length"


def test_every_single_bit_flip_in_header_is_caught():
    pkt = ipv4_packet(src="198.18.0.1", dst="198.18.0.2", protocol=PROTO_TCP, payload=b"data")
    for bit in range(160):
        bad = bytearray(pkt)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(MalformedPacket):
            parse_ipv4(bad)  # a single flipped bit always breaks the checksum, if nothing else


def test_quoted_parse_allows_cut_datagram():
    pkt = ipv4_packet(src=1, dst=2, protocol=PROTO_TCP, payload=bytes(range(40)))
    q = parse_ipv4_quoted(pkt[:28])
    assert q.total_length == 60 and bytes(q.payload) == bytes(range(8))
    assert reason_of(parse_ipv4, pkt[:28]).reason == "bad_total_length"
    assert reason_of(parse_ipv4_quoted, b"\x45" + bytes(10)).reason == "truncated"


# ---------------------------------------------------------------- build errors, addresses, options walk

def test_build_rejects_bad_arguments():
    buf = bytearray(80)
    kw = dict(src=1, dst=2, protocol=6, payload_len=0)
    with pytest.raises(ValueError):
        build_ipv4_header(buf, 0, frag_offset=12, **kw)
    with pytest.raises(ValueError):
        build_ipv4_header(buf, 0, options=bytes(41), **kw)
    with pytest.raises(ValueError):
        build_ipv4_header(bytearray(19), 0, **kw)
    with pytest.raises(ValueError):
        build_ipv4_header(buf, 70, **kw)
    with pytest.raises(ValueError):
        build_ipv4_header(buf, 0, src=1, dst=2, protocol=6, payload_len=65516)
    with pytest.raises(ValueError):
        build_ipv4_header(buf, 0, ttl=256, **kw)
    assert build_ipv4_header(buf, 0, src=1, dst=2, protocol=6, payload_len=65515) == 20


def test_ip2int_int2ip():
    assert ip2int("192.168.1.100") == 0xC0A80164
    assert int2ip(0xC0A801C8) == "192.168.1.200"
    assert ip2int("0.0.0.0") == 0 and int2ip(0xFFFFFFFF) == "255.255.255.255"
    for bad in ("1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", " 1.2.3.4", "01.2.3.4", "1.2.3.a", "", "1..2.3",
                "١.2.3.4"):
        with pytest.raises(ValueError):
            ip2int(bad)
    for bad in (-1, 1 << 32):
        with pytest.raises(ValueError):
            int2ip(bad)


def test_iter_ipv4_options():
    opts = b"\x01\x94\x04\x00\x00\x00\x07\x07"
    got = [(off, kind, bytes(data)) for off, kind, data in iter_ipv4_options(opts)]
    assert got == [(0, 1, b""), (1, 0x94, b"\x00\x00"), (5, 0, b"")]
    for bad in (b"\x94", b"\x94\x01\x00\x00", b"\x94\x00", b"\x94\x09\x00\x00"):
        with pytest.raises(MalformedPacket) as info:
            list(iter_ipv4_options(bad))
        assert info.value.reason == "bad_option_length"


def test_malformed_packet_contract():
    e = MalformedPacket("tcp", "bad_checksum", "checksum 0x1234 does not verify")
    assert isinstance(e, ValueError)
    assert str(e) == "tcp: bad_checksum: checksum 0x1234 does not verify"
    assert e.counter_name == "tcp.in.drop.bad_checksum"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.layer, e2.reason, e2.detail, str(e2)) == (e.layer, e.reason, e.detail, str(e))


def test_packet_object_has_slots():
    p = parse_ipv4(ipv4_packet(src=1, dst=2, protocol=6))
    assert isinstance(p, IPv4Packet)
    with pytest.raises(AttributeError):
        p.no_such_field = 1
    assert "IPv4Packet(0.0.0.1 > 0.0.0.2" in repr(p)


def test_build_uses_module_checksum(monkeypatch):
    calls = []
    real = ipv4_mod._checksum

    def counting(data):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(ipv4_mod, "_checksum", counting)
    build_ipv4_header(bytearray(24), 0, src=1, dst=2, protocol=6, payload_len=0, options=b"\x01")
    assert calls == [24]


def test_checksum_edge_where_the_sum_is_minus_zero():
    # 0x4500 + 20 + ident + 0x4006 == 0xFFFF: the header checksum must come out 0x0000 (RFC 1071 §2),
    # and a header carrying 0xFFFF there (the other zero) verifies too.
    ident = 0xFFFF - 0x4500 - 20 - 0x4006
    pkt = bytearray(ipv4_packet(src=0, dst=0, protocol=6, ident=ident))
    assert pkt[10:12] == b"\0\0" and ref_checksum(bytes(pkt)) == 0
    assert parse_ipv4(pkt).checksum_ok
    pkt[10:12] = b"\xff\xff"
    assert parse_ipv4(pkt).checksum_ok and ref_checksum(bytes(pkt)) == 0
    pkt[10:12] = b"\x00\x01"
    assert not parse_ipv4(pkt, verify=False).checksum_ok


def test_arithmetic_verify_agrees_with_reference_on_many_headers():
    import random
    rng = random.Random(7)
    for _ in range(2000):
        hdr = bytearray(rng.randbytes(20))
        hdr[0] = 0x45
        hdr[2:4] = (20).to_bytes(2, "big")
        if rng.random() < 0.5:  # half of them valid
            hdr[10:12] = b"\0\0"
            hdr[10:12] = ref_checksum(bytes(hdr)).to_bytes(2, "big")
        assert parse_ipv4(hdr, verify=False).checksum_ok == (ref_checksum(bytes(hdr)) == 0)
