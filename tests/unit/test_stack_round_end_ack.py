"""On a stack, the end of a receive round (netstack/stack.py, delack.py's ``round_end``).

Super-segments that close the receive window below one MSS are ACKed at the
end of the stack's round, after the application's callbacks of that round:
an application reading there (an ``asyncio.BufferedProtocol`` on
``create_server``) gets one ACK on the wire, acknowledging everything and
carrying the window its read re-opened, not a closed window followed by a
window update; one that does not read (reading paused) still has the
closed window reported in the same loop turn (RFC 9293 §3.8.6.2.2: the
sender must learn of it to persist).  The kick that the read asks for is
served at the end of the round, without a loop turn (or a loop handle) of
its own.  Memory link, no timers involved: the ACKs are looked at in the
callback queued right behind the link's.
"""
from __future__ import annotations

import asyncio

from netstack.link import MemoryLink
from netstack.sockets.streams import create_server
from netstack.stack import Stack
from netstack.tcp import TCPConfig
from netstack.wire.tcp import ACK, PSH

from tests.support.offload import (OFFLOAD_MSS as MSS, OFFLOAD_PEER as PEER, OFFLOAD_US as US, data,
                                   offloaded_tcp, stack_handshake, stack_segments, ts_option)

SUPER = 44 * MSS
STREAM = data(8 * SUPER)


def test_a_closing_window_and_the_read_in_the_same_round_make_one_ack_and_no_extra_loop_turn():
    async def main():
        a, peer = MemoryLink.pair(offload=True)
        loop = asyncio.get_running_loop()
        got = bytearray()
        made = {}

        class Sink(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(1 << 20)

            def connection_made(self, transport):
                made["t"] = transport

            def get_buffer(self, sizehint):
                return self.buf

            def buffer_updated(self, n):
                got.extend(self.buf[:n])

        async with Stack(a, "198.18.0.2", tcp=TCPConfig(rcvbuf=100_000, quickack_segments=0,
                                                           rcvbuf_autotune=False)) as stack:   # (a closing window)
            await create_server(stack, Sink, port=80)
            seq, ack, ecr = await stack_handshake(peer)
            while "t" not in made:
                await asyncio.sleep(0)
            conn = made["t"].get_extra_info("netstack_connection")
            ts = 3
            off = 0

            def send(n):
                nonlocal seq, ts, off
                pkt, meta = offloaded_tcp(PEER, US, sport=40000, dport=80, seq=seq, ack=ack, flags=ACK | PSH,
                                          window=65535, payload=STREAM[off:off + n], options=ts_option(ts, ecr),
                                          mss=MSS)
                peer.send(pkt, meta)
                seq += n
                ts += 1
                off += n

            async def round_closing_the_window():
                """Two super-segments in one link read, leaving 100 bytes of window; the segments
                the stack sent in that link's loop turn."""
                wnd = conn.rcv.wnd
                send(SUPER)
                send(wnd - SUPER - 100)
                seen = loop.create_future()
                loop.call_soon(lambda: seen.set_result(stack_segments(peer)))   # right behind the link's turn
                return await seen

            send(SUPER)                                     # the first: the SYN-ACK's window grows
            while len(got) < off:
                await asyncio.sleep(0)
            await asyncio.sleep(0.01)
            stack_segments(peer)

            kicks = []
            call_soon = loop.call_soon

            def spy(cb, *args, **kw):
                kicks.append(getattr(cb, "__name__", ""))
                return call_soon(cb, *args, **kw)

            loop.call_soon = spy
            try:
                acks = await round_closing_the_window()
            finally:
                del loop.call_soon
            assert bytes(got) == STREAM[:off]               # the sink read it in the round
            assert [s.ack for s in acks] == [seq]           # one ACK for the round...
            assert acks[0].window << 7 >= MSS               # ...with the window the read re-opened
            assert "_on_kick" not in kicks                  # the read's kick, served by the round's end

            made["t"].pause_reading()                       # the application stops reading
            acks = await round_closing_the_window()
            assert [s.ack for s in acks] == [seq]           # the closed window, reported in the turn
            assert acks[0].window << 7 < MSS
            assert conn.readable == off - len(got)
            made["t"].resume_reading()
            while len(got) < off:
                await asyncio.sleep(0)
            assert bytes(got) == STREAM[:off]

    asyncio.run(asyncio.wait_for(main(), 10))
