"""Helpers shared by the IPv4-layer unit tests."""
import struct

from netstack import checksum
from netstack.ip import IPLayer
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ip2int, ipv4_packet, parse_ipv4

US = ip2int("198.18.0.2")
PEER = ip2int("198.18.0.1")


class Recorder:
    """A transport that records what it is given."""

    def __init__(self):
        from collections import deque
        self.got = []
        self.errors = []
        self.outbox = deque()

    def on_datagram(self, src, dst, payload, now):
        self.got.append((src, dst, bytes(payload), now))

    def on_icmp_error(self, icmp_type, code, info, quoted, now):
        self.errors.append((icmp_type, code, info, bytes(quoted)))

    def poll(self, now):
        pass

    def next_deadline(self):
        return None


def layer(**kw):
    return IPLayer(US, **kw)


def out_packets(ip):
    pkts = [parse_ipv4(p) for p in ip.outbox]
    ip.outbox.clear()
    return pkts


def icmp_of(p):
    return W.parse_icmp(p.payload)


def udp_datagram(src, dst, sport, dport, data=b"", *, csum=True, length=None):
    length = 8 + len(data) if length is None else length
    seg = bytearray(struct.pack("!HHHH", sport, dport, length, 0) + data)
    if csum:
        c = checksum.pseudo_header_checksum(src, dst, 17, seg) or 0xFFFF
        struct.pack_into("!H", seg, 6, c)
    return bytes(seg)


def fragments(payload, *, src=PEER, dst=US, protocol=1, ident=77, size=1480):
    """Split payload into IPv4 fragments carrying `size` data bytes each (size % 8 == 0)."""
    out = []
    for off in range(0, len(payload), size):
        chunk = payload[off:off + size]
        out.append(ipv4_packet(src=src, dst=dst, protocol=protocol, payload=chunk, ident=ident,
                               mf=off + size < len(payload), frag_offset=off))
    return out


def frag(src=PEER, dst=US, *, offset, data, mf, ident=77, protocol=1):
    return ipv4_packet(src=src, dst=dst, protocol=protocol, payload=data, ident=ident, mf=mf, frag_offset=offset)
