"""Minimal UDP input: validation, then ICMP port unreachable (RFC 768, RFC 1122 §4.1.3.1)."""
import pytest

from netstack.wire import icmp as W
from netstack.wire.ipv4 import ipv4_packet

from tests.support.ip_helpers import PEER, US, icmp_of, layer, out_packets, udp_datagram


def send_udp(ip, seg):
    pkt = ipv4_packet(src=PEER, dst=US, protocol=17, payload=seg)
    ip.input(pkt, 0)
    return pkt


@pytest.mark.parametrize("csum", [True, False])
def test_valid_datagram_gets_port_unreachable(csum):
    ip = layer()
    pkt = send_udp(ip, udp_datagram(PEER, US, 40000, 9999, b"hello", csum=csum))
    (r,) = out_packets(ip)
    m = icmp_of(r)
    assert (r.dst, m.type, m.code) == (PEER, W.DEST_UNREACH, W.PORT)
    assert bytes(m.payload) == pkt[:28]
    assert ip.counters.get("udp.in.no_port") == 1


@pytest.mark.parametrize("seg,reason", [
    (b"\x01\x02\x03", "truncated"),
    (udp_datagram(PEER, US, 1, 2, b"abc", length=7, csum=False), "bad_length"),
    (udp_datagram(PEER, US, 1, 2, b"abc", length=30, csum=False), "bad_length"),
])
def test_malformed_udp_dropped_silently(seg, reason):
    ip = layer()
    send_udp(ip, seg)
    assert ip.counters.matching("udp.in.drop.") == {f"udp.in.drop.{reason}": 1}
    assert not ip.outbox


def test_bad_udp_checksum():
    ip = layer()
    seg = bytearray(udp_datagram(PEER, US, 1, 2, b"abc"))
    seg[-1] ^= 1
    send_udp(ip, bytes(seg))
    assert ip.counters.get("udp.in.drop.bad_checksum") == 1
    assert not ip.outbox
