"""The stack loop over the in-memory link: readiness, batches, timers, transports, capture."""
import asyncio
import io
from collections import deque

import pytest

from netstack.capture.pcap import read_pcap
from netstack.link import CaptureLink, FaultyLink, MemoryLink
from netstack.stack import Stack
from netstack.tcp import TCPConfig, TCPLayer
from netstack.transport import Outgoing
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ipv4_packet, parse_ipv4

from tests.support.ip_helpers import PEER, US, fragments


#: an IP protocol number for the test transports (RFC 3692: for experimentation); TCP's is the stack's own
EXPERIMENT = 253


def run(coro, timeout=10):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def replies(peer, n, timeout=2.0):
    got = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < n and loop.time() < end:
        got.extend(bytes(v) for v, _ in peer.recv_batch())
        await asyncio.sleep(0.001)
    return got


def test_stack_answers_ping_over_memory_link():
    async def main():
        a, peer = MemoryLink.pair()
        async with Stack(a, "198.18.0.2") as stack:
            for seq in range(100):
                peer.send(ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.echo_request(1, seq, b"x" * 56)))
            got = await replies(peer, 100)
        return stack, got

    stack, got = run(main())
    assert len(got) == 100
    seqs = [W.parse_icmp(parse_ipv4(g).payload).seq for g in got]
    assert seqs == list(range(100))
    assert stack.counters.get("icmp.out.echo_reply") == 100
    assert stack.counters.get("link.in.packets") == 100


def test_the_stack_owns_its_tcp():
    a, _peer = MemoryLink.pair(mtu=9000)
    stack = Stack(a, US)
    assert isinstance(stack.tcp, TCPLayer)
    assert stack.transports[6] is stack.tcp and stack.ip.transports[6] is stack.tcp
    assert stack.tcp.on_output == stack.kick
    assert stack.tcp.local_addr == US and stack.tcp.counters is stack.counters
    assert stack.tcp.config.mss == 8960                  # by default from the link MTU (RFC 9293 §3.7.1)
    config = TCPConfig(rcvbuf=65536)
    assert Stack(a, US, tcp=config).tcp.config is config
    small, _ = MemoryLink.pair(mtu=576)
    assert Stack(small, US, tcp=config).tcp.config.mss == 536   # never above the link's MTU - 40


def test_register_transport_refuses_a_protocol_already_served():
    a, _peer = MemoryLink.pair()
    stack = Stack(a, US)
    for proto in (6, 1):                                 # TCP is the stack's own; ICMP the IP layer's
        with pytest.raises(ValueError):
            stack.register_transport(proto, TimerTransport(None))
    assert stack.transports == {6: stack.tcp}


class TimerTransport:
    """Sends one segment when its deadline passes; counts polls."""

    def __init__(self, at):
        self.at = at
        self.outbox = deque()
        self.polls = []
        self.on_output = None
        self.datagrams = []

    def on_datagram(self, src, dst, payload, now):
        self.datagrams.append(bytes(payload))
        self.outbox.append(Outgoing(src, b"ack:" + bytes(payload), False))

    def next_deadline(self):
        return self.at

    def poll(self, now):
        self.polls.append(now)
        if self.at is not None and now >= self.at:
            self.at = None
            self.outbox.append(Outgoing(PEER, b"timer fired", False))

    def on_icmp_error(self, icmp_type, code, info, quoted, now):
        pass


def test_transport_timers_input_and_kick():
    async def main():
        a, peer = MemoryLink.pair()
        stack = Stack(a, US)
        stack.start()
        t = TimerTransport(stack.clock() + 0.05)
        stack.register_transport(EXPERIMENT, t)
        assert t.on_output == stack.kick
        peer.send(ipv4_packet(src=PEER, dst=US, protocol=EXPERIMENT, payload=b"seg"))
        first = await replies(peer, 1)
        assert bytes(parse_ipv4(first[0]).payload) == b"ack:seg"
        fired = await replies(peer, 1, timeout=1)
        assert bytes(parse_ipv4(fired[0]).payload) == b"timer fired"
        # user write outside on_datagram/poll: kick makes the loop flush
        t.outbox.append(Outgoing(PEER, b"user write", False))
        t.on_output()
        kicked = await replies(peer, 1)
        stack.close()
        return t, kicked

    t, kicked = run(main())
    assert bytes(parse_ipv4(kicked[0]).payload) == b"user write"
    assert len(t.polls) >= 1


class WriteTransport(TimerTransport):
    """Like TCP with a user write waiting: its poll is due at once and sends the write."""

    def __init__(self):
        super().__init__(None)
        self.waiting = []

    def user_write(self, data):
        self.waiting.append(data)
        self.on_output()

    def next_deadline(self):
        return 0.0 if self.waiting else None

    def poll(self, now):
        self.polls.append(now)
        while self.waiting:
            self.outbox.append(Outgoing(PEER, self.waiting.pop(0), False))


def test_a_kick_flushes_a_user_write_in_its_own_loop_turn():
    """A user call that gives a transport work (a write to flush) kicks the stack; the kick polls
    the transport and sends in that same loop turn, not one turn later through the timer."""
    async def main():
        a, peer = MemoryLink.pair()
        stack = Stack(a, US)
        stack.start()
        t = WriteTransport()
        stack.register_transport(EXPERIMENT, t)
        await asyncio.sleep(0)
        t.user_write(b"user write")
        await asyncio.sleep(0)          # one loop turn: the kick's callback has run, nothing else
        got = [bytes(v) for v, _ in peer.recv_batch()]
        stack.close()
        return got

    got = run(main())
    assert [bytes(parse_ipv4(g).payload) for g in got] == [b"user write"]


def test_a_deadline_moved_later_keeps_the_loop_timer_an_earlier_one_resets_it():
    """The stack's one loop timer is set again only for an earlier deadline: one that moved later
    (a retransmission timer restarted on an ACK) is left to the timer already set, which fires,
    finds nothing due and is set for the deadline then."""
    async def main():
        loop = asyncio.get_running_loop()
        armed = []
        real_call_at = loop.call_at

        def call_at(when, cb, *args, **kw):
            if getattr(cb, "__name__", "") == "_on_timer":
                armed.append(when)
            return real_call_at(when, cb, *args, **kw)

        loop.call_at = call_at
        a, peer = MemoryLink.pair()
        stack = Stack(a, US)
        stack.start()
        t = TimerTransport(stack.clock() + 0.05)
        stack.register_transport(EXPERIMENT, t)
        await asyncio.sleep(0)
        first = len(armed)
        for k in range(1, 20):                     # moved later, round after round: no new timer
            t.at = stack.clock() + 0.05 + k * 0.01
            stack.kick()
            await asyncio.sleep(0)
        later = len(armed)
        fired = await replies(peer, 1, timeout=2)  # the early timer fired, was set again, and sent
        t.at, before = stack.clock() + 10.0, len(armed)
        stack.kick()
        await asyncio.sleep(0)
        t.at = stack.clock() + 0.001
        stack.kick()
        await asyncio.sleep(0)
        stack.close()
        return first, later, fired, len(armed) - before

    first, later, fired, earlier = run(main())
    assert first == 1 and later == first
    assert bytes(parse_ipv4(fired[0]).payload) == b"timer fired"
    assert earlier == 2          # +10 s: set (none pending after the fire); then +1 ms: earlier, set again


def test_df_too_big_reported_to_local_sender():
    async def main():
        a, peer = MemoryLink.pair(mtu=1000)
        stack = Stack(a, US)
        stack.start()
        t = TimerTransport(None)
        errors = []
        t.on_icmp_error = lambda ty, code, info, quoted, now: errors.append((ty, code, info, bytes(quoted)))
        stack.register_transport(EXPERIMENT, t)
        t.outbox.append(Outgoing(PEER, b"S" * 1500, True))
        t.outbox.append(Outgoing(PEER, b"T" * 1500, False))   # DF clear: fragmented
        stack.kick()
        got = await replies(peer, 2)
        stack.close()
        return errors, got

    errors, got = run(main())
    assert len(errors) == 1
    ty, code, mtu, quoted = errors[0]
    assert (ty, code, mtu) == (3, 4, 1000)
    assert parse_ipv4(quoted, verify=False).dst == PEER and quoted[20:28] == b"S" * 8
    assert len(got) == 2 and all(parse_ipv4(g).is_fragment for g in got)


def test_reassembly_timeout_fires_from_the_loop():
    async def main():
        a, peer = MemoryLink.pair()
        stack = Stack(a, US, reassembly_timeout=0.05)
        stack.start()
        peer.send(fragments(W.echo_request(1, 1, bytes(3000)))[0])
        got = await replies(peer, 1, timeout=2)
        stack.close()
        return stack, got

    stack, got = run(main())
    assert stack.counters.get("ip.in.drop.reasm_timeout") == 1
    m = W.parse_icmp(parse_ipv4(got[0]).payload)
    assert (m.type, m.code) == (W.TIME_EXCEEDED, W.FRAG_REASSEMBLY_EXCEEDED)


def test_pcap_records_both_directions(tmp_path):
    path = tmp_path / "s.pcap"

    async def main():
        a, peer = MemoryLink.pair()
        async with Stack(CaptureLink(a, pcap=str(path)), US):
            peer.send(ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.echo_request(1, 1, b"hi")))
            await replies(peer, 1)

    run(main())
    recs = read_pcap(str(path))
    assert len(recs) == 2
    kinds = [W.parse_icmp(parse_ipv4(r.data).payload).type for r in recs]
    assert kinds == [W.ECHO_REQUEST, W.ECHO_REPLY]


def test_trace_prints_each_packet():
    out = io.StringIO()

    async def main():
        a, peer = MemoryLink.pair()
        async with Stack(CaptureLink(a, trace=out), US):
            peer.send(ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.echo_request(1, 1, b"hi")))
            await replies(peer, 1)

    run(main())
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("<") and "echo request" in lines[0]
    assert lines[1].startswith(">") and "echo reply" in lines[1]


def test_ping_through_faulty_link_with_delay():
    async def main():
        a, peer = MemoryLink.pair()
        f = FaultyLink(a, delay=0.01, seed=1)
        async with Stack(f, US):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            peer.send(ipv4_packet(src=PEER, dst=US, protocol=1, payload=W.echo_request(1, 1, b"hi")))
            got = await replies(peer, 1)
            return got, loop.time() - t0

    got, elapsed = run(main())
    assert len(got) == 1
    assert elapsed >= 0.019            # delayed on the way in and on the way out
