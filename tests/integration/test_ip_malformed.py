"""Hostile input from the kernel side: malformed packets are counted by reason, the
stack keeps answering, and reassembly memory stays bounded."""
import json
import shutil
import struct
import sys

import pytest

from netstack.wire import icmp as W
from netstack.wire.ipv4 import ipv4_packet

from tests.support.labkit import NETNS_SEND, PEER_ADDR, STACK_ADDR

pytestmark = pytest.mark.integration

REASM_CAP = 64 * 1024
REASM_DATAGRAMS = 100           # the byte cap (44 fragments of 1480) binds first


def echo(seq=1, size=32, **kw):
    return ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=W.echo_request(0x4242, seq, bytes(size)),
                       **kw)


def patch(pkt, offset, fmt, value):
    b = bytearray(pkt)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def send(srv, items, timeout=60):
    for item in items:
        item.setdefault("ifname", srv.ifname)
    r = srv.run([sys.executable, str(NETNS_SEND)], input=json.dumps(items), timeout=timeout)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(items)


def raw(pkt):
    return {"via": "packet", "hex": pkt.hex()}


def hdrincl(pkt):
    return {"via": "hdrincl", "hex": pkt.hex()}


def ping_ok(srv):
    r = srv.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20)
    return r.returncode == 0 and "2 received" in r.stdout


@pytest.fixture
def srv(serve_factory):
    if shutil.which("ping") is None:
        pytest.fail("ping (iputils-ping) is not installed", pytrace=False)
    return serve_factory("--reasm-max-bytes", str(REASM_CAP), "--reasm-max-datagrams", str(REASM_DATAGRAMS),
                         "--reasm-timeout", "30")


def test_malformed_headers_counted_by_reason(srv):
    good = echo()
    bad_checksum = patch(good, 10, "!H", 0x0BAD if struct.unpack_from("!H", good, 10)[0] != 0x0BAD else 0x0BAE)
    total_too_big = patch(good, 2, "!H", len(good) + 100)           # beyond the bytes received
    total_too_small = patch(good, 2, "!H", 12)                      # below the header
    bad_ihl = patch(good, 0, "!B", 0x43)
    bad_version = patch(good, 0, "!B", 0x55)

    def fix_checksum(pkt):          # only the field under test is wrong
        from netstack import checksum
        b = bytearray(pkt)
        struct.pack_into("!H", b, 10, 0)
        hl = max(20, (b[0] & 15) * 4)
        struct.pack_into("!H", b, 10, checksum.checksum(b[:hl]))
        return bytes(b)

    items = ([raw(bad_checksum)] * 5 + [raw(fix_checksum(total_too_big))] * 4 + [raw(fix_checksum(total_too_small))] * 3
             + [raw(fix_checksum(bad_ihl))] * 2 + [raw(fix_checksum(bad_version))] * 2 + [raw(good[:15])] * 3)
    send(srv, items)
    assert ping_ok(srv)
    srv.stop()
    c = srv.counters()
    assert c.get("ip.in.drop.bad_checksum") == 5
    assert c.get("ip.in.drop.bad_total_length") == 7
    assert c.get("ip.in.drop.bad_ihl") == 2
    assert c.get("ip.in.drop.bad_version") == 2
    assert c.get("ip.in.drop.truncated") == 3
    assert c["icmp.out.echo_reply"] == 2                 # only the real pings were answered


def test_overlapping_fragments_drop_the_datagram(srv):
    payload = W.echo_request(0x77, 1, bytes(3000))
    first = ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=payload[:1480], ident=4321, mf=True)
    overlap = ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=b"\xee" * 1480, ident=4321, mf=True,
                          frag_offset=1000)
    rest = [ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=payload[1480:2960], ident=4321,
                        mf=True, frag_offset=1480),
            ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=payload[2960:], ident=4321,
                        frag_offset=2960)]
    too_big = [ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=bytes(1480), ident=999, mf=True),
               ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=bytes(1000), ident=999,
                           frag_offset=65000)]
    # the kernel refuses to send an IP_HDRINCL datagram reaching past 65535: use the packet socket for those
    send(srv, [hdrincl(first), hdrincl(overlap)] + [hdrincl(p) for p in rest] + [raw(p) for p in too_big])
    assert ping_ok(srv)
    srv.stop()
    c = srv.counters()
    assert c.get("ip.in.drop.reasm_overlap") == 1
    assert c.get("ip.in.drop.reasm_too_big") == 1
    assert c.get("ip.reasm.oks", 0) == 0
    assert c["icmp.out.echo_reply"] == 2                 # the overlapped echo was never answered


def test_fragment_flood_is_bounded(srv):
    rss_before = srv.rss_kib()
    flood = [hdrincl(ipv4_packet(src=PEER_ADDR, dst=STACK_ADDR, protocol=1, payload=bytes([i & 255]) * 1480,
                                 ident=i, mf=True)) for i in range(3000)]          # 4.4 MB offered, cap 64 KiB
    send(srv, flood, timeout=90)
    assert ping_ok(srv)
    r = srv.run(["ping", "-c", "1", "-W", "3", "-s", "4000", STACK_ADDR], timeout=20)   # reassembly still works
    assert r.returncode == 0, r.stdout
    rss_growth = srv.rss_kib() - rss_before
    srv.stop()
    c = srv.counters()
    assert c["ip.reasm.peak_bytes_held"] <= REASM_CAP
    assert c["ip.reasm.max_bytes"] == REASM_CAP
    arrived = c["ip.reasm.fragments"] - 3 - 3          # minus the two fragmented pings' pieces
    assert arrived >= 1000                             # the TUN queue may drop some of a burst; most arrive
    dropped = c.get("ip.in.drop.reasm_overflow", 0)
    assert dropped >= arrived - REASM_CAP // 1480 - 1
    assert c["ip.reasm.peak_bytes_held"] > REASM_CAP // 2      # the cap was actually reached
    assert rss_growth < 16 * 1024, f"RSS grew by {rss_growth} KiB"
