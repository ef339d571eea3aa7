"""When a GSO super-segment is ACKed (delack.py, recv_space.py), and the fast path at the window's edge.

A super-segment the application has not read yet is ACKed when it reads, as
Linux does (tcp_input.c __tcp_ack_snd_check: "right edge of window advances
far enough", else tcp_cleanup_rbuf ACKs after recvmsg): one ACK then carries
the window the read re-opened and covers every super-segment of that read.
Without a read, the delayed-ACK timer sends it; a window closing below one
MSS is ACKed at the end of the input round, after the application's
callbacks, so that a read there re-opens the window in that one ACK; segments up to the MSS keep RFC 1122's every second
full-sized segment.  The peer is a scripted Linux kernel with TSO on its TUN
(tests/support/offload.py), on a fake clock; quick-ACK mode is off, so that
the rule itself is what answers.
"""
from __future__ import annotations

from netstack.tcp import TCPConfig
from netstack.tcp.connection import Connection

from tests.support.offload import OFFLOAD_MSS as MSS, OffloadHost, data

SUPER = 44 * MSS                       # 63712 bytes: a 64 KB super-segment
STREAM = data(6 * SUPER)


def host(**cfg) -> OffloadHost:
    """A connection past its first super-segment, read and ACKed, so that the window advertised
    is the buffer's, no longer the SYN-ACK's (never scaled: 64 KB at most).  Offsets below count
    from there."""
    cfg.setdefault("rcvbuf", 1 << 20)
    h = OffloadHost(TCPConfig(quickack_segments=0, **cfg))
    h.offloaded(0, STREAM[:SUPER])
    assert h.conn.recv() == STREAM[:SUPER]
    h.poll()
    assert h.sent()[-1].ack == h.seq(SUPER)
    h.origin = SUPER
    return h


def window(seg, h) -> int:
    return seg.window << h.conn.rcv.wscale


def test_a_super_segment_not_yet_read_is_acked_by_the_read_with_the_window_it_reopened():
    h = host()
    before = h.conn.rcv.wnd
    h.offloaded(0, STREAM[:SUPER])
    assert h.sent() == []                                  # the ACK waits for the read...
    assert h.conn.timers.delack is not None                # ...or the delayed-ACK timer
    assert h.conn.recv() == STREAM[:SUPER]
    h.poll()
    (ack,) = h.sent()
    assert ack.ack == h.seq(SUPER) and not ack.payload
    assert window(ack, h) >= before                        # the read re-opened what the segment used
    assert h.conn.timers.delack is None


def test_one_ack_covers_the_super_segments_of_one_read():
    h = host()
    h.read_batch([(k * SUPER, STREAM[k * SUPER:(k + 1) * SUPER]) for k in range(3)])
    assert h.sent() == []
    assert h.conn.recv() == STREAM[:3 * SUPER]
    h.poll()
    (ack,) = h.sent()
    assert ack.ack == h.seq(3 * SUPER)


def test_without_a_read_the_delayed_ack_timer_sends_it_within_ato():
    h = host(delack_min=0.04, delack_timeout=0.2)
    h.offloaded(0, STREAM[:SUPER])
    assert h.sent() == []
    deadline = h.conn.timers.delack
    assert deadline is not None and deadline - h.now <= 0.2        # RFC 9293 §3.8.6.3: well under 0.5 s
    h.now = deadline
    h.poll()
    (ack,) = h.sent()
    assert ack.ack == h.seq(SUPER)
    assert window(ack, h) < h.conn.rcv.buf.capacity                # nothing read: the window shrank
    assert h.conn.readable == SUPER


def _close_the_window(h):
    """Two super-segments that leave 100 bytes of window; returns the bytes they carry."""
    wnd = h.conn.rcv.wnd
    h.offloaded(0, STREAM[:SUPER])
    assert h.sent() == []                                  # the window stays open: the ACK waits
    rest = wnd - SUPER - 100                               # leaves 100 bytes of window
    h.offloaded(SUPER, STREAM[SUPER:SUPER + rest])
    return SUPER + rest


def test_a_window_closing_below_one_mss_is_acked_at_the_end_of_the_input_round():
    h = host(rcvbuf=100_000)
    n = _close_the_window(h)
    assert h.sent() == []                                  # not inside the input...
    assert h.conn.acks.due and h.conn.acks.round_end
    assert h.tcp.next_deadline() == h.now                  # ...but at the poll that ends the round
    h.poll()
    (ack,) = h.sent()
    assert ack.ack == h.seq(n)
    assert window(ack, h) < MSS                            # the sender learns of it now (persist)
    assert not h.conn.acks.due and not h.conn.acks.round_end


def test_a_read_in_the_same_round_reopens_the_closing_window_in_the_same_ack():
    h = host(rcvbuf=100_000)
    n = _close_the_window(h)
    assert h.conn.recv() == STREAM[:n]                     # the application's callback reads
    h.poll()
    (ack,) = h.sent()                                      # one ACK, not a closed window and an update
    assert ack.ack == h.seq(n)
    assert window(ack, h) >= h.conn.rcv.wnd >= MSS
    h.poll()
    assert h.sent() == []


def test_a_full_path_segment_behind_the_deferred_ack_sends_it_with_its_own():
    h = host(rcvbuf=100_000)
    n = _close_the_window(h)
    h.offloaded(n + 5 * MSS, STREAM[n:n + 50])             # out of window: the full path ACKs at once
    acks = h.sent()
    assert [a.ack for a in acks] == [h.seq(n)]
    assert not h.conn.acks.round_end
    h.poll()
    assert h.sent() == []                                  # nothing left for the round's end


def test_segments_up_to_the_mss_keep_the_every_second_segment_rule():
    h = host()
    h.offloaded(0, STREAM[:MSS])
    assert h.sent() == []                                  # one segment: the delayed ACK
    h.offloaded(MSS, STREAM[MSS:2 * MSS])
    (ack,) = h.sent()                                      # the second full-sized one: at once, unread
    assert ack.ack == h.seq(2 * MSS)
    assert h.conn.readable == 2 * MSS


def _edge_case(monkeypatch, predict: bool):
    """A segment ending at the edge the window field promised, rounded up past the buffer space
    backing it (RFC 7323 §2.4): where a window-limited sender's flight ends."""
    taken = []
    real = Connection.fast_path

    def spy(self, *a):
        ok = real(self, *a) if predict else False
        taken.append(ok)
        return ok

    monkeypatch.setattr(Connection, "fast_path", spy)
    h = OffloadHost(TCPConfig(rcvbuf=60_001))              # not a multiple of the 128-byte granule
    h.offloaded(0, STREAM[:1000])                          # quick-ACK: ACKed at once, the edge rounded up
    h.sent()
    rcv = h.conn.rcv
    edge = (rcv.adv - rcv.nxt) & 0xFFFFFFFF
    assert (rcv.adv - rcv.committed) & 0xFFFFFFFF > 0      # the promise lies past the committed edge
    h.offloaded(1000, STREAM[1000:1000 + edge])
    return h, taken, edge


def test_the_fast_path_takes_a_segment_ending_at_the_rounded_window_edge_as_the_full_path_does(monkeypatch):
    fast, taken, edge = _edge_case(monkeypatch, True)
    assert taken[-1] is True
    with monkeypatch.context():
        full, taken_full, edge_full = _edge_case(monkeypatch, False)
    assert edge_full == edge and not any(taken_full)
    for h in (fast, full):
        assert h.conn.rcv.nxt == h.seq(1000 + edge) and h.conn.rcv.committed == h.conn.rcv.nxt
    a, b = fast.sent(), full.sent()
    assert [(s.ack, s.window) for s in a] == [(s.ack, s.window) for s in b] and a
    assert fast.conn.recv() == full.conn.recv() == STREAM[:1000 + edge]
    assert fast.c.snapshot() == full.c.snapshot()


def test_on_a_stack_the_ack_waiting_for_the_read_leaves_in_the_same_loop_turn_as_the_read():
    """The stack's round delivers the super-segment to an asyncio StreamReader application (which
    takes it out of TCP's buffer) and sends the ACK that waited for that read in the same loop
    turn: a callback queued right behind the link's shows it on the wire already."""
    import asyncio

    from netstack.link import MemoryLink
    from netstack.sockets.streams import start_server
    from netstack.stack import Stack
    from netstack.wire.tcp import ACK, PSH

    from tests.support.offload import (OFFLOAD_PEER as PEER, OFFLOAD_US as US, offloaded_tcp, stack_handshake,
                                       stack_segments as segments, ts_option)

    async def main():
        a, peer = MemoryLink.pair(offload=True)
        loop = asyncio.get_running_loop()
        got = bytearray()

        async def sink(reader, writer):
            while data := await reader.read(1 << 20):
                got.extend(data)

        async with Stack(a, "198.18.0.2", tcp=TCPConfig(rcvbuf=1 << 20, quickack_segments=0)) as stack:
            await start_server(stack, sink, port=80)
            seq, ack, ecr = await stack_handshake(peer)
            for k in range(3):
                pkt, meta = offloaded_tcp(PEER, US, sport=40000, dport=80, seq=seq, ack=ack, flags=ACK | PSH,
                                          window=65535, payload=STREAM[:SUPER], options=ts_option(3 + k, ecr),
                                          mss=MSS)
                seq += SUPER
                peer.send(pkt, meta)
                if not k:                                  # ACKed at once (the SYN-ACK's window grows),
                    while len(got) < SUPER or not peer.pending():     # then a window update
                        await asyncio.sleep(0)
                    await asyncio.sleep(0.01)
                    assert segments(peer)[-1].ack == seq
                    continue
                seen = loop.create_future()
                loop.call_soon(lambda: seen.set_result(segments(peer)))   # right behind the link's turn
                acks = await seen
                assert [s.ack for s in acks] == [seq]      # one ACK, sent in the link's turn
                assert acks[0].window << 7 >= (1 << 20) - 16 * 127 - 127  # the read re-opened the window
            while len(got) < 3 * SUPER:
                await asyncio.sleep(0)
            assert bytes(got) == STREAM[:SUPER] * 3

    asyncio.run(asyncio.wait_for(main(), 10))


def test_the_delayed_ack_timer_a_read_in_the_same_round_stops_never_enters_the_deadline_heap(monkeypatch):
    import heapq
    import types

    import netstack.tcp.layer as layer

    pushed = []

    def push(heap, item):
        pushed.append(item)
        heapq.heappush(heap, item)

    monkeypatch.setattr(layer, "heapq", types.SimpleNamespace(heappush=push, heappop=heapq.heappop))
    h = host()
    pushed.clear()
    h.read_batch([(0, STREAM[:SUPER])])
    assert h.conn.timers.delack is not None                # armed: the ACK waits for the read
    assert h.conn.recv() == STREAM[:SUPER]                 # the round's read sends it...
    h.poll()
    assert [a.ack for a in h.sent()] == [h.seq(SUPER)]
    assert h.tcp.next_deadline() is None
    assert pushed == []                                    # ...and the timer was never filed

    h.read_batch([(SUPER, STREAM[SUPER:2 * SUPER])])       # no read: filed when the host asks
    assert h.tcp.next_deadline() == h.conn.timers.delack is not None
    assert [d for d, _n, _c in pushed] == [h.conn.timers.delack]
