"""The capture wrapper (netstack.link.capture) on the in-memory link, without a stack."""
import io

import pytest

from netstack.capture.pcap import LINKTYPE_RAW, read_pcap
from netstack.link import CaptureLink, MemoryLink
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ipv4_packet

from tests.support.ip_helpers import PEER, US


def ping(seq: int, src=US, dst=PEER, reply=False) -> bytes:
    msg = W.echo_request(1, seq, b"x" * seq)
    return ipv4_packet(src=src, dst=dst, protocol=1, payload=W.echo_reply(W.parse_icmp(msg)) if reply else msg)


def exchange(cap, peer):
    """Out, in, in, out through ``cap``; returns the four packets in that order."""
    p1, p2, p3, p4 = ping(1), ping(2, PEER, US, reply=True), ping(3, PEER, US), ping(4)
    cap.send(p1)
    peer.send(p2)
    peer.send(p3)
    got = [bytes(v) for v, _meta in cap.recv_batch()]
    cap.send(p4)
    assert got == [p2, p3]                                     # received packets pass through unchanged
    assert [bytes(v) for v, _ in peer.recv_batch()] == [p1, p4]   # ... and so do sent ones
    return [p1, p2, p3, p4]


def test_packets_in_both_directions_land_in_the_pcap_in_order(tmp_path):
    path = tmp_path / "c.pcap"
    a, peer = MemoryLink.pair()
    cap = CaptureLink(a, pcap=str(path))
    assert (cap.mtu, cap.name) == (a.mtu, "capture(memory:a)")
    packets = exchange(cap, peer)
    cap.detach()                                               # what Stack.close calls
    recs = read_pcap(str(path))
    assert [r.data for r in recs] == packets
    assert {r.linktype for r in recs} == {LINKTYPE_RAW}
    assert all(r.orig_len == len(r.data) for r in recs)
    stamps = [(r.ts_sec, r.ts_nsec) for r in recs]
    assert stamps == sorted(stamps)


def test_trace_prints_one_line_per_packet_with_its_direction():
    out = io.StringIO()
    a, peer = MemoryLink.pair()
    cap = CaptureLink(a, trace=out)
    exchange(cap, peer)
    lines = out.getvalue().splitlines()
    assert [line[:2] for line in lines] == ["> ", "< ", "< ", "> "]
    assert "echo request" in lines[0] and "echo reply" in lines[1] and "echo request" in lines[2]
    assert all("198.18.0." in line for line in lines)


def test_pcap_and_trace_together(tmp_path):
    path = tmp_path / "c.pcap"
    out = io.StringIO()
    a, peer = MemoryLink.pair()
    cap = CaptureLink(a, pcap=str(path), trace=out)
    packets = exchange(cap, peer)
    cap.close()
    assert [r.data for r in read_pcap(str(path))] == packets
    assert len(out.getvalue().splitlines()) == 4


def test_detach_ends_the_recording(tmp_path):
    buf = io.BytesIO()
    a, peer = MemoryLink.pair()
    cap = CaptureLink(a, pcap=buf)
    cap.send(ping(1))
    cap.detach()
    assert cap.pcap is None and not buf.closed                # a file passed in is flushed, not closed
    size = len(buf.getvalue())
    cap.send(ping(2))                                          # still delivered, no longer recorded
    assert len(peer.recv_batch()) == 2
    assert len(buf.getvalue()) == size
    assert len(read_pcap(io.BytesIO(buf.getvalue()))) == 1


def test_close_closes_the_recording_and_the_inner_link(tmp_path):
    a, _peer = MemoryLink.pair()
    cap = CaptureLink(a, pcap=str(tmp_path / "c.pcap"))
    writer = cap.pcap
    cap.close()
    assert writer.closed and cap.pcap is None and a.closed


def test_attach_reaches_the_inner_link():
    a, peer = MemoryLink.pair()
    cap = CaptureLink(a, trace=io.StringIO())
    calls = []

    class Loop:
        def call_soon(self, fn):
            calls.append(fn)

    cap.attach(Loop(), lambda: None)
    peer.send(ping(1))
    assert calls                                               # the inner link signalled readiness
    cap.detach()
    assert a._on_readable is None


def test_nothing_to_capture_is_refused():
    a, _peer = MemoryLink.pair()
    with pytest.raises(ValueError):
        CaptureLink(a)


def test_pcap_flush_packet_puts_each_packet_on_disk_as_it_passes(tmp_path):
    """--pcap-flush packet (tcpdump -U): the file holds every packet while recording goes on;
    the default buffered mode does not (it writes 64 KiB blocks)."""
    a, peer = MemoryLink.pair()
    live = CaptureLink(a, pcap=str(tmp_path / "live.pcap"), pcap_flush="packet")
    b, peer2 = MemoryLink.pair()
    buffered = CaptureLink(b, pcap=str(tmp_path / "buf.pcap"))
    for n in (1, 2, 3):
        live.send(ping(n))
        buffered.send(ping(n))
        assert len(read_pcap(str(tmp_path / "live.pcap"))) == n             # readable now, not at the end
    assert (tmp_path / "buf.pcap").stat().st_size == 0                     # still in the buffer
    buffered.detach()
    assert len(read_pcap(str(tmp_path / "buf.pcap"))) == 3                 # flushed when recording ends
    live.detach()


def test_pcap_flush_mode_is_checked():
    a, _ = MemoryLink.pair()
    with pytest.raises(ValueError, match="pcap_flush"):
        CaptureLink(a, pcap=io.BytesIO(), pcap_flush="sometimes")
