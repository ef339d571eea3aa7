"""UDP header parse (RFC 768): fields, zero-copy payload, checksum rules, malformed input."""
import struct

import pytest

from netstack.checksum import pseudo_header_checksum
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import PROTO_UDP, ip2int
from netstack.wire.udp import parse_udp

SRC, DST = ip2int("198.18.0.1"), ip2int("198.18.0.2")


def datagram(payload=b"hello", *, length=None, checksum=True, sport=5353, dport=9) -> bytearray:
    d = bytearray(struct.pack("!HHHH", sport, dport, length if length is not None else 8 + len(payload), 0) + payload)
    if checksum:
        struct.pack_into("!H", d, 6, pseudo_header_checksum(SRC, DST, PROTO_UDP, d) or 0xFFFF)
    return d


def test_fields_and_payload_is_a_view():
    d = datagram(b"hello!")
    u = parse_udp(d, src=SRC, dst=DST, verify=True)
    assert (u.src_port, u.dst_port, u.length) == (5353, 9, 14)
    assert bytes(u.payload) == b"hello!" and isinstance(u.payload, memoryview)
    d[8] = ord("J")
    assert bytes(u.payload) == b"Jello!"             # a view, not a copy


def test_zero_checksum_means_none_and_trailing_bytes_are_ignored():
    u = parse_udp(datagram(b"abc", checksum=False) + b"pad", src=SRC, dst=DST, verify=True)
    assert bytes(u.payload) == b"abc"


@pytest.mark.parametrize("data,reason", [
    (b"\x00" * 7, "truncated"),
    (bytes(datagram(b"abc", length=7)), "bad_length"),
    (bytes(datagram(b"abc", length=12, checksum=False)), "bad_length"),
])
def test_malformed(data, reason):
    with pytest.raises(MalformedPacket) as e:
        parse_udp(data)
    assert (e.value.layer, e.value.reason, e.value.counter_name) == ("udp", reason, f"udp.in.drop.{reason}")


def test_bad_checksum_only_when_verifying():
    d = datagram(b"abc")
    d[-1] ^= 1
    parse_udp(d)                                       # not verified: parses
    with pytest.raises(MalformedPacket) as e:
        parse_udp(d, src=SRC, dst=DST, verify=True)
    assert e.value.reason == "bad_checksum"
    with pytest.raises(ValueError):
        parse_udp(d, verify=True)                      # verifying needs the pseudo-header addresses
