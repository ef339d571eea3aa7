"""ICMP messages (RFC 792, RFC 1191 §4, RFC 1122 §3.2.2)."""
from __future__ import annotations

import pytest

from netstack.wire import icmp
from netstack.wire.errors import MalformedPacket
from netstack.wire.icmp import (
    ADMIN_PROHIBITED, DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, FRAG_NEEDED, FRAG_REASSEMBLY_EXCEEDED, HOST, NET,
    PORT, PROTOCOL, TIME_EXCEEDED, TTL_EXCEEDED, build_icmp, dest_unreachable, echo_reply, echo_request,
    parse_icmp, quoted_datagram, time_exceeded,
)
from netstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, ip2int, ipv4_packet, parse_ipv4
from netstack.wire.tcp import SYN, tcp_segment

from tests.support.wire_vectors import ref_checksum

A = ip2int("198.18.0.1")
B = ip2int("198.18.0.2")


def original_tcp_datagram(payload=b"some data beyond the first eight bytes") -> bytes:
    seg = tcp_segment(src=A, dst=B, src_port=40000, dst_port=25, seq=0x01020304, ack=0, flags=SYN, window=100,
                      payload=payload)
    return ipv4_packet(src=A, dst=B, protocol=PROTO_TCP, payload=seg, ident=77, df=True)


def reason_of(fn, *args, **kw) -> str:
    with pytest.raises(MalformedPacket) as info:
        fn(*args, **kw)
    assert info.value.layer == "icmp"
    return info.value.reason


def test_codes_have_their_rfc_values():
    assert (ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED) == (0, 3, 8, 11)
    assert (NET, HOST, PROTOCOL, PORT, FRAG_NEEDED, ADMIN_PROHIBITED) == (0, 1, 2, 3, 4, 13)
    assert (TTL_EXCEEDED, FRAG_REASSEMBLY_EXCEEDED) == (0, 1)


def test_echo_request_and_reply():
    req_bytes = echo_request(0x1234, 0xABCD, b"ping payload\x00\xff")
    assert ref_checksum(req_bytes) == 0
    req = parse_icmp(req_bytes)
    assert (req.type, req.code, req.ident, req.seq) == (ECHO_REQUEST, 0, 0x1234, 0xABCD)
    assert req.rest == 0x1234ABCD and bytes(req.payload) == b"ping payload\x00\xff" and req.checksum_ok
    assert req.mtu is None and not req.is_error
    rep_bytes = echo_reply(req)
    rep = parse_icmp(rep_bytes)
    assert (rep.type, rep.code, rep.ident, rep.seq) == (ECHO_REPLY, 0, 0x1234, 0xABCD)
    assert bytes(rep.payload) == bytes(req.payload) and ref_checksum(rep_bytes) == 0
    with pytest.raises(ValueError):
        echo_reply(rep)  # only requests are answered


def test_payload_is_a_view():
    buf = bytearray(echo_request(1, 2, b"abcd"))
    m = parse_icmp(buf)
    assert isinstance(m.payload, memoryview) and m.payload.obj is buf


@pytest.mark.parametrize("code", [NET, HOST, PROTOCOL, PORT, ADMIN_PROHIBITED])
def test_dest_unreachable_quotes_header_and_first_8_bytes(code):
    orig = original_tcp_datagram()
    raw = dest_unreachable(code, orig)
    assert ref_checksum(raw) == 0
    m = parse_icmp(raw)
    assert (m.type, m.code, m.rest) == (DEST_UNREACH, code, 0) and m.is_error and m.mtu is None
    assert bytes(m.payload) == orig[:28]
    q = quoted_datagram(m)
    assert (q.src, q.dst, q.protocol, q.ident, q.total_length) == (A, B, PROTO_TCP, 77, len(orig))
    assert bytes(q.payload) == orig[20:28]
    assert int.from_bytes(q.payload[0:2], "big") == 40000 and int.from_bytes(q.payload[4:8], "big") == 0x01020304


def test_frag_needed_carries_next_hop_mtu():
    orig = original_tcp_datagram()
    m = parse_icmp(dest_unreachable(FRAG_NEEDED, orig, next_hop_mtu=1280))
    assert m.code == FRAG_NEEDED and m.mtu == 1280 and m.rest == 1280
    # the MTU is only put in for code 4
    assert parse_icmp(dest_unreachable(PORT, orig, next_hop_mtu=1280)).rest == 0


def test_dest_unreachable_from_parsed_packet_and_with_ip_options():
    seg = tcp_segment(src=A, dst=B, src_port=1, dst_port=2, seq=3, ack=4, flags=SYN, window=5)
    orig = ipv4_packet(src=A, dst=B, protocol=PROTO_TCP, payload=seg, options=b"\x94\x04\x00\x00")
    m = parse_icmp(dest_unreachable(PORT, parse_ipv4(orig)))
    assert bytes(m.payload) == orig[:32]
    assert quoted_datagram(m).ihl == 6


def test_short_original_is_quoted_whole_without_link_padding():
    orig = ipv4_packet(src=A, dst=B, protocol=17, payload=b"abc")
    m = parse_icmp(dest_unreachable(PORT, orig + b"\0" * 10))
    assert bytes(m.payload) == orig
    assert bytes(quoted_datagram(m).payload) == b"abc"


def test_time_exceeded():
    orig = original_tcp_datagram()
    for code in (TTL_EXCEEDED, FRAG_REASSEMBLY_EXCEEDED):
        raw = time_exceeded(code, orig)
        m = parse_icmp(raw)
        assert (m.type, m.code, m.rest) == (TIME_EXCEEDED, code, 0) and m.is_error
        assert bytes(m.payload) == orig[:28] and ref_checksum(raw) == 0


def test_whole_icmp_in_ip_round_trip():
    raw = ipv4_packet(src=B, dst=A, protocol=PROTO_ICMP, payload=time_exceeded(TTL_EXCEEDED, original_tcp_datagram()))
    ip = parse_ipv4(raw)
    assert ip.protocol == PROTO_ICMP and parse_icmp(ip.payload).type == TIME_EXCEEDED


def test_truncated_and_bad_checksum():
    raw = bytearray(echo_request(1, 2, b"xyz"))
    for n in range(8):
        assert reason_of(parse_icmp, raw[:n]) == "truncated"
    raw[-1] ^= 1
    assert reason_of(parse_icmp, raw) == "bad_checksum"
    m = parse_icmp(raw, verify=False)
    assert m.checksum_ok is False and m.ident == 1


def test_quoted_datagram_rejects_bad_quotes():
    assert reason_of(quoted_datagram, parse_icmp(echo_request(1, 1, original_tcp_datagram()))) == "bad_quoted_datagram"
    broken = build_icmp(DEST_UNREACH, PORT, 0, b"\x65" + bytes(27))  # version 6
    assert reason_of(quoted_datagram, parse_icmp(broken)) == "bad_quoted_datagram"
    short = build_icmp(DEST_UNREACH, PORT, 0, original_tcp_datagram()[:24])  # 4 data bytes of a longer datagram
    assert reason_of(quoted_datagram, parse_icmp(short)) == "bad_quoted_datagram"
    assert reason_of(quoted_datagram, parse_icmp(build_icmp(DEST_UNREACH, PORT, 0, b""))) == "bad_quoted_datagram"


def test_builders_reject_non_ipv4_originals():
    with pytest.raises(ValueError):
        dest_unreachable(PORT, b"\x60" + bytes(39))
    with pytest.raises(ValueError):
        time_exceeded(TTL_EXCEEDED, b"\x45" + bytes(5))
    with pytest.raises(ValueError):
        build_icmp(256, 0, 0, b"")


def test_icmp_checksum_is_computed_by_the_checksum_module(monkeypatch):
    calls = []
    real = icmp._checksum
    monkeypatch.setattr(icmp, "_checksum", lambda d: calls.append(len(d)) or real(d))
    build_icmp(ECHO_REQUEST, 0, 0, b"abcdef")
    assert calls == [14]
