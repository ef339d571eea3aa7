"""scapy as a second opinion on our wire formats and pcap files.

A system test: importing scapy's protocol layers makes it list the host's
interfaces and routes over a netlink socket.  The formats themselves are
tested in-process in tests/unit/test_wire_*.py and tests/unit/test_capture_pcap.py.
"""
from __future__ import annotations

import pytest

from netstack.capture.pcap import PcapWriter, read_pcap
from netstack.wire.icmp import echo_request
from netstack.wire.ipv4 import PROTO_UDP, ip2int, ipv4_packet
from netstack.wire.tcp import ACK, SYN, build_options, tcp_segment

from tests.support.wire_vectors import ref_tcp_checksum

A = ip2int("198.18.0.1")
B = ip2int("198.18.0.2")
PKTS = [b"\x45" + bytes(range(i, i + 40)) for i in range(5)]      # as in tests/unit/test_capture_pcap.py


def seg(**kw) -> bytes:
    base = dict(src=A, dst=B, src_port=1234, dst_port=25, seq=1, ack=2, flags=ACK, window=1000)
    base.update(kw)
    return tcp_segment(**base)


# ---------------------------------------------------------------- wire formats


def test_echo_matches_scapy():
    inet = pytest.importorskip("scapy.layers.inet")
    raw = echo_request(7, 9, b"abc")  # odd length payload
    s = inet.ICMP(raw)
    assert (s.type, s.code, s.id, s.seq) == (8, 0, 7, 9)
    ours = s.chksum
    del s.chksum
    assert inet.ICMP(bytes(s)).chksum == ours


def test_scapy_agrees_with_our_build():
    scapy = pytest.importorskip("scapy.layers.inet")
    pkt = ipv4_packet(src="198.18.0.2", dst="198.18.0.1", protocol=PROTO_UDP, payload=b"hello",
                      ttl=17, ident=4242, df=True, tos=0xB8)
    s = scapy.IP(pkt)
    assert (s.src, s.dst, s.ttl, s.id, s.tos, s.len, s.proto) == ("198.18.0.2", "198.18.0.1", 17, 4242, 0xB8, 25, 17)
    assert str(s.flags) == "DF"
    rebuilt = scapy.IP(bytes(s))
    del rebuilt.chksum
    assert scapy.IP(bytes(rebuilt)).chksum == s.chksum


def test_checksum_matches_independent_reference_and_scapy():
    payload = bytes(range(251))  # odd length
    raw = seg(options=build_options(mss=536), payload=payload, flags=SYN)
    zeroed = raw[:16] + b"\0\0" + raw[18:]
    assert int.from_bytes(raw[16:18], "big") == ref_tcp_checksum(A, B, zeroed)
    inet = pytest.importorskip("scapy.layers.inet")
    from netstack.wire.ipv4 import ipv4_packet
    pkt = inet.IP(ipv4_packet(src=A, dst=B, protocol=6, payload=raw))
    ours = pkt[inet.TCP].chksum
    del pkt[inet.TCP].chksum
    assert inet.IP(bytes(pkt))[inet.TCP].chksum == ours


# ---------------------------------------------------------------- pcap files

def test_scapy_reads_our_file_and_we_read_scapys(tmp_path):
    scapy_utils = pytest.importorskip("scapy.utils")
    ours = tmp_path / "ours.pcap"
    with PcapWriter(ours) as w:
        for i, p in enumerate(PKTS):
            w.write(p, ts=100 + i)
    theirs = scapy_utils.rdpcap(str(ours))
    assert [bytes(p) for p in theirs] == PKTS
    assert [int(p.time) for p in theirs] == [100, 101, 102, 103, 104]

    from scapy.layers.inet import IP, TCP

    pkts = [IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S", seq=7)]
    pkts[0].time = 42.5
    scapy_path = tmp_path / "scapy.pcap"
    scapy_utils.wrpcap(str(scapy_path), pkts)
    (rec,) = read_pcap(scapy_path)
    assert rec.data == bytes(pkts[0]) and (rec.ts_sec, rec.ts_nsec) == (42, 500_000_000)
