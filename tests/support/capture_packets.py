"""Packets for the capture/trace tests, built with the wire API (checksums filled by netstack.wire)."""
from __future__ import annotations

from netstack.wire.icmp import echo_reply, echo_request, parse_icmp
from netstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, ip2int, ipv4_packet
from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN, build_options, tcp_segment

from tests.support.wire_vectors import ref_checksum

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
CPORT, SPORT = 40565, 25
C_ISN, S_ISN = 1_000_000, 3_000_000_000


def tcp_packet(src, dst, sport, dport, seq, ack, flags, *, window=65535, options=b"", payload=b"", **ip_kw):
    seg = tcp_segment(src=src, dst=dst, src_port=sport, dst_port=dport, seq=seq, ack=ack, flags=flags,
                      window=window, options=options, payload=payload)
    return ipv4_packet(src=src, dst=dst, protocol=PROTO_TCP, payload=seg, df=True, **ip_kw)


def c2s(seq, ack, flags, **kw):
    return tcp_packet(CLIENT, SERVER, CPORT, SPORT, seq, ack, flags, **kw)


def s2c(seq, ack, flags, **kw):
    return tcp_packet(SERVER, CLIENT, SPORT, CPORT, seq, ack, flags, **kw)


def conversation() -> list[bytes]:
    """SYN, SYN-ACK, ACK, server greeting, client HELO, ACK, FIN, FIN-ACK, last ACK: a consistent connection."""
    greet = b"220 mx.example ESMTP\r\n"
    helo = b"HELO client.example\r\n"
    c, s = C_ISN, S_ISN
    return [
        c2s(c, 0, SYN, window=64240, options=build_options(mss=1460, sack_permitted=True, ts=(100, 0), wscale=7)),
        s2c(s, c + 1, SYN | ACK, window=65160, options=build_options(mss=1460, sack_permitted=True, ts=(500, 100), wscale=7)),
        c2s(c + 1, s + 1, ACK, window=502, options=build_options(ts=(101, 500))),
        s2c(s + 1, c + 1, PSH | ACK, window=510, options=build_options(ts=(501, 101)), payload=greet),
        c2s(c + 1, s + 1 + len(greet), PSH | ACK, window=502, options=build_options(ts=(102, 501)), payload=helo),
        s2c(s + 1 + len(greet), c + 1 + len(helo), ACK, window=510, options=build_options(ts=(502, 102))),
        c2s(c + 1 + len(helo), s + 1 + len(greet), FIN | ACK, window=502, options=build_options(ts=(103, 502))),
        s2c(s + 1 + len(greet), c + 2 + len(helo), FIN | ACK, window=510, options=build_options(ts=(503, 103))),
        c2s(c + 2 + len(helo), s + 2 + len(greet), ACK, window=502, options=build_options(ts=(104, 503))),
    ]


def rst_packet() -> bytes:
    return s2c(0, C_ISN + 1, RST | ACK, window=0)


def icmp_echo_pair() -> list[bytes]:
    req = echo_request(1, 1, bytes(range(56)))
    rep = echo_reply(parse_icmp(req))
    return [ipv4_packet(src=CLIENT, dst=SERVER, protocol=PROTO_ICMP, payload=req, ident=7),
            ipv4_packet(src=SERVER, dst=CLIENT, protocol=PROTO_ICMP, payload=rep, ident=8)]


def udp_packet(payload=b"hello, udp\n", sport=5353, dport=9, *, checksum=True) -> bytes:
    """A UDP datagram; its checksum computed with the naive reference implementation."""
    import struct

    length = 8 + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    cs = 0
    if checksum:
        pseudo = struct.pack("!IIBBH", ip2int(CLIENT), ip2int(SERVER), 0, PROTO_UDP, length)
        cs = ref_checksum(pseudo + hdr + payload) or 0xFFFF
    return ipv4_packet(src=CLIENT, dst=SERVER, protocol=PROTO_UDP,
                       payload=struct.pack("!HHHH", sport, dport, length, cs) + payload)


def arp_packet(op: int, sender_ip: str, target_ip: str, sender_mac: bytes = b"\x02\0\0\0\0\x01",
               target_mac: bytes = b"\0" * 6) -> bytes:
    """An Ethernet/IPv4 ARP packet (RFC 826): 1 request, 2 reply."""
    import struct

    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac, ip2int(sender_ip).to_bytes(4, "big"),
                       target_mac, ip2int(target_ip).to_bytes(4, "big"))
