"""TCP receive path in memory: in-order data segments through IP, TCP and the connection.

``netstack bench segments [--count N] [--repeat N] [--payload BYTES] [--batch N] [--json FILE] [--profile FILE]``

What is measured is exactly what the stack does for each received packet
of a bulk transfer, without the TUN: the packets are raw IPv4 datagrams
prebuilt like the Linux kernel sends them (DF, TTL 64, incrementing IP ID,
``NOP,NOP,TS`` options with a rising TSval, valid IP and TCP checksums,
1448 payload bytes by default, in order), and a :class:`ReplayLink` hands
them to a real :class:`~netstack.stack.Stack` in batches of 64.  The stack
reads them through its own live-loop entry point (``Stack._on_readable``:
``link.recv_batch`` -> ``IPLayer.input_batch`` -> ``TCPLayer.on_datagram`` ->
``Connection.on_segment``, then the outbox flush through ``IPLayer.send``
to ``link.send`` and the timer re-arm), inside a running asyncio loop.
The connection is ESTABLISHED by a real three-way handshake on the
:class:`~netstack.tcp.TCPLayer` (MSS, SACK-permitted, timestamps and
window scale offered, as Linux does) under a fake clock; the ACKs follow
the delayed-ACK rule (one per two full-sized segments) and are counted.
The application drains the receive buffer after every batch
(``Connection.recv``), and the loop gets one turn (``asyncio.sleep(0)``)
per batch, so window updates and timers run as they would live.

Rows, timed in the same run with their repeats interleaved (median of
``--repeat`` runs over ``--count`` segments each, after ``--warmup`` discarded
runs; the table shows how the runs spread around the median):

``parse``
    the reference: ``parse_ipv4`` + ``parse_tcp`` with the checksum verified,
    over the same packets, nothing else;
``ip layer``
    the stack's loop and IPv4 layer delivering to a transport that does
    nothing (what IP input costs beyond the parse; the packets carry an
    experimental protocol number, 253, for which that transport is
    registered, the stack's own TCP keeping 6);
``receive path``
    the full path above, ACKs included;
``receive path, N idle``
    the receive path again, with ``--idle`` N (default 10,000) more
    ESTABLISHED connections open on the same stack, each with keep-alive on
    (an armed timer, as on a server with SO_KEEPALIVE) and nothing to do:
    timers live in a deadline heap, so its cost per segment should be that
    of the receive path (``vs receive path`` in the summary line);
``with streams``
    the same with netstack's socket layer on top: the connection is accepted
    by ``start_server`` and the application is an asyncio ``StreamReader``
    reading 256 KiB at a time (as the echo/discard services do), so the
    transport's event handling and the stream's buffering count too.

Times are CPU time of the benchmark's thread (``time.thread_time_ns``):
all the work runs in that thread without I/O, so this equals the wall time
on an idle machine and is not inflated by other processes on a busy one.

Columns: ns per segment, segments/s, MB/s of payload (10^6 bytes/s),
``x parse`` (this row's time per segment / the parse-only time: how many
times the bare parse the whole path costs), ACKs sent per segment.

Every run is checked before it counts: every byte delivered to the
application, RCV.NXT at the end of the data, the last ACK acknowledging
it, no drop counter moved.  A run that fails a check aborts the benchmark
(exit status 1) rather than report a figure for a broken path.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from netstack.bench import report
from netstack.bench._args import bounded
from netstack.tcp.state import State

#: What a run is timed with: the CPU time of this thread.  Everything measured
#: runs in this thread (no I/O, no sleeping), so on an idle machine it equals
#: the wall time; on a machine shared with other work it leaves out the time
#: other processes held the CPU, which would otherwise inflate the figures.
_clock = time.thread_time_ns

DEFAULT_COUNT = 20_000
DEFAULT_REPEAT = 7
QUICK_COUNT = 2_000
QUICK_REPEAT = 3
DEFAULT_PAYLOAD = 1448
DEFAULT_BATCH = 64           # netstack.stack.BATCH: what one wakeup reads

PEER_ADDR = "198.18.0.1"     # the "kernel" that sends
STACK_ADDR = "198.18.0.2"
PEER_PORT = 40000
STACK_PORT = 5001
#: the ``ip layer`` row's protocol number: one of RFC 3692's two for experimentation
PROTO_EXPERIMENT = 253

ROWS = ("parse", "ip layer", "receive path", "with streams")
DEFAULT_IDLE = 10_000
QUICK_IDLE = 1_000


def idle_row(idle: int) -> str:
    """The name of the row with ``idle`` idle connections."""
    return f"receive path, {idle:,} idle"

COLUMNS = [
    report.Column("path", "path", "{}", "<"),
    report.Column("ns_per_segment", "ns/segment", "{:.0f}"),
    report.Column("segments_per_s", "segments/s", "{:,.0f}"),
    report.Column("mb_per_s", "MB/s", "{:.1f}"),
    report.Column("x_parse", "x parse", "{:.2f}x"),
    report.Column("acks_per_segment", "ACKs/segment", "{:.3f}"),
    report.SPREAD,
]
KEY = ("path",)
FIGURE = ("ns_per_segment", "lower")


class CheckFailed(RuntimeError):
    """A run did not do what the stack must do (lost bytes, drops, wrong ACK)."""


# --- the link ---------------------------------------------------------------------------------


def _replay_link_class():
    from netstack.link.base import Link

    class ReplayLink(Link):
        """An in-memory link that replays prebuilt packets and counts what the stack sends.

        ``feed(views)`` queues packets; ``recv_batch`` returns them (as the TUN
        does: memoryviews, ``None`` metadata).  ``send`` counts packets and
        keeps a copy of the last one (``last_sent``) for the checks.
        """

        def __init__(self, mtu: int = 1500) -> None:
            self.mtu = mtu
            self.name = "replay"
            self._queue: list = []
            self._pos = 0
            self.sent = 0
            self.last_sent = b""
            self.closed = False

        def feed(self, views) -> None:
            self._queue = [(v, None) for v in views]
            self._pos = 0

        def pending(self) -> int:
            return len(self._queue) - self._pos

        def recv_batch(self, max_packets: int = 64):
            pos = self._pos
            out = self._queue[pos:pos + max_packets]
            self._pos = pos + len(out)
            return out

        def send(self, data, meta=None) -> None:
            self.sent += 1
            self.last_sent = bytes(data)

        def attach(self, loop, on_readable) -> None:
            pass                    # the driver calls on_readable itself, batch by batch

        def detach(self) -> None:
            pass

        def close(self) -> None:
            self.closed = True

    return ReplayLink


class FakeClock:
    """The stack's clock: advanced by the driver, never the wall clock."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class NullTransport:
    """A transport that accepts every datagram and does nothing (the ``ip layer`` row)."""

    def __init__(self) -> None:
        from collections import deque
        self.outbox = deque()
        self.on_output = None
        self.datagrams = 0

    def on_datagram(self, src, dst, payload, now) -> None:
        self.datagrams += 1

    def on_icmp_error(self, icmp_type, code, info, quoted, now) -> None:
        pass

    def poll(self, now) -> None:
        pass

    def next_deadline(self):
        return None


# --- the peer: packets as Linux would send them ------------------------------------------------


class Peer:
    """Builds the peer's packets (SYN, ACK, data) for one connection."""

    def __init__(self, *, payload: int, src: int, dst: int, sport: int = PEER_PORT, dport: int = STACK_PORT,
                 isn: int = 0xFFFF0000, tsval: int = 3_000_000_000, window: int = 502, wscale: int = 7):
        self.payload = payload
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        self.isn = isn
        self.seq = isn                 # next sequence number to send
        self.ack = 0                   # what we acknowledge (the stack's SND.NXT)
        self.ts_ecr = 0
        self.tsval = tsval
        self.window = window
        self.wscale = wscale
        self.ip_id = 0x1234
        #: the IP protocol number of the packets (TCP; the ``ip layer`` row uses PROTO_EXPERIMENT)
        self.protocol = 6
        self._data = bytes((i * 7 + 3) & 0xFF for i in range(payload))

    def _packet(self, flags: int, options: bytes, payload: bytes = b"") -> bytes:
        from netstack.wire.ipv4 import ipv4_packet
        from netstack.wire.tcp import tcp_segment

        seg = tcp_segment(src=self.src, dst=self.dst, src_port=self.sport, dst_port=self.dport, seq=self.seq,
                          ack=self.ack, flags=flags, window=self.window, options=options, payload=payload)
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return ipv4_packet(src=self.src, dst=self.dst, protocol=self.protocol, payload=seg, df=True,
                           ident=self.ip_id)

    def syn(self) -> bytes:
        from netstack.wire.tcp import SYN
        from netstack.wire.tcp_options import build_options

        opts = build_options(mss=self.payload + 12, sack_permitted=True, ts=(self.tsval, 0), wscale=self.wscale)
        pkt = self._packet(SYN, opts)
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return pkt

    def ack_of(self, synack: bytes) -> bytes:
        """The third packet of the handshake, acknowledging the stack's SYN-ACK."""
        from netstack.wire.ipv4 import parse_ipv4
        from netstack.wire.tcp import ACK, SYN, parse_tcp

        p = parse_ipv4(synack)
        s = parse_tcp(p.payload, src=p.src, dst=p.dst)
        if s.flags & (SYN | ACK) != (SYN | ACK) or s.ack != self.seq:
            raise CheckFailed(f"expected a SYN-ACK for {self.seq}, got flags {s.flags:#x} ack {s.ack}")
        if s.options.ts_val is None:
            raise CheckFailed("the SYN-ACK carries no timestamps although the SYN offered them")
        self.ack = (s.seq + 1) & 0xFFFFFFFF
        self.ts_ecr = s.options.ts_val
        self.tsval += 1
        return self._packet(ACK, self._ts_option())

    def _ts_option(self) -> bytes:
        return b"\x01\x01\x08\x0a" + self.tsval.to_bytes(4, "big") + self.ts_ecr.to_bytes(4, "big")

    def data(self, count: int) -> tuple[bytearray, list]:
        """``count`` in-order data packets in one buffer; returns (buffer, views).

        Like a Linux bulk sender: ACK on every segment, PSH on every 16th,
        DF, TSval rising one tick per 32 segments, checksums filled.
        """
        from netstack.wire.ipv4 import build_ipv4_header
        from netstack.wire.tcp import ACK, PSH, build_tcp

        n = self.payload
        size = 20 + 32 + n
        buf = bytearray(size * count)
        views = []
        mv = memoryview(buf)
        seq, ident = self.seq, self.ip_id
        for i in range(count):
            off = i * size
            ident = (ident + 1) & 0xFFFF
            if i % 32 == 0:
                self.tsval = (self.tsval + 1) & 0xFFFFFFFF
            build_ipv4_header(buf, off, src=self.src, dst=self.dst, protocol=self.protocol, payload_len=32 + n,
                              ident=ident, df=True)
            build_tcp(buf, off + 20, src=self.src, dst=self.dst, src_port=self.sport, dst_port=self.dport,
                      seq=seq, ack=self.ack, flags=ACK | (PSH if i % 16 == 15 else 0), window=self.window,
                      options=self._ts_option(), payload=self._data)
            seq = (seq + n) & 0xFFFFFFFF
            views.append(mv[off:off + size])
        self.seq, self.ip_id = seq, ident
        return buf, views


# --- the subjects -------------------------------------------------------------------------------


class _Driven:
    """A Stack on a replay link under a fake clock, with a peer building its packets."""

    def __init__(self, payload: int, batch: int, tcp=None) -> None:
        from netstack.stack import Stack
        from netstack.wire.ipv4 import ip2int

        self.payload = payload
        self.batch = batch
        self.clock = FakeClock()
        self.link = _replay_link_class()(mtu=max(1500, payload + 52))
        self.stack = Stack(self.link, STACK_ADDR, clock=self.clock, tcp=tcp)
        self.peer = Peer(payload=payload, src=ip2int(PEER_ADDR), dst=self.stack.addr)

    def close(self) -> None:
        self.stack.close()


class ReceivePath(_Driven):
    """A Stack with TCP on a replay link, one ESTABLISHED connection, driven batch by batch."""

    def __init__(self, payload: int, batch: int) -> None:
        from netstack.tcp import TCPConfig

        self.config = TCPConfig(mss=max(1460, payload + 12))
        super().__init__(payload, batch, tcp=self.config)
        self.tcp = self.stack.tcp
        self.conn = None
        self.drained = 0
        self._sink = bytearray(self.config.rcvbuf)

    def _handshake(self) -> None:
        """SYN in, SYN-ACK out, ACK in: through the stack's own entry point, like any packet."""
        self.link.feed([memoryview(self.peer.syn())])
        self.stack._on_readable()
        if self.link.sent != 1:
            raise CheckFailed(f"the stack sent {self.link.sent} packets for a SYN, expected one SYN-ACK")
        self.clock.now += 0.0001
        self.link.feed([memoryview(self.peer.ack_of(self.link.last_sent))])
        self.stack._on_readable()

    def open(self) -> None:
        """Start the stack (inside the running loop) and do the three-way handshake."""
        self.stack.start()
        self.tcp.listen(STACK_PORT)
        listener = self.tcp.listeners[STACK_PORT]
        self._handshake()
        self.conn = listener.accept()
        if self.conn is None or self.conn.state is not State.ESTABLISHED:
            raise CheckFailed(f"handshake did not establish a connection: {self.conn!r}")
        self.link.sent = 0

    async def run(self, views) -> tuple[int, int]:
        """Push ``views`` through; returns (elapsed ns, ACKs sent)."""
        link, stack, conn, clock = self.link, self.stack, self.conn, self.clock
        on_readable = stack._on_readable
        recv_into = conn.recv_into
        sink = self._sink
        batch = self.batch
        tick = 0.00001 * batch       # ~10 us of fake time per segment
        sent0 = link.sent
        drained = 0
        link.feed(views)
        t0 = _clock()
        while link.pending():
            # one wakeup of the live loop: read up to BATCH packets, feed IP/TCP, flush, re-arm timer
            on_readable()
            # the application reads what arrived
            while conn.readable:
                drained += recv_into(sink)
            clock.now += tick
            await asyncio.sleep(0)   # the loop's turn: kicks and timers run as they would live
        t1 = _clock()
        self.drained += drained
        return t1 - t0, link.sent - sent0

    def check(self, views, acks: int) -> None:
        from netstack.wire.ipv4 import parse_ipv4
        from netstack.wire.tcp import parse_tcp

        c = self.stack.counters.snapshot()
        drops = {k: v for k, v in c.items() if ".drop." in k and v}
        if drops:
            raise CheckFailed(f"packets were dropped: {drops}")
        expected = len(views) * self.payload
        if self.drained != expected:
            raise CheckFailed(f"the application read {self.drained} bytes, {expected} were sent")
        conn = self.conn
        if conn.rcv.nxt != self.peer.seq:
            raise CheckFailed(f"RCV.NXT is {conn.rcv.nxt}, the peer sent up to {self.peer.seq}")
        # RFC 1122 §4.2.3.2 / RFC 5681 §4.2: an ACK at least every second full-sized segment
        least = expected // (2 * conn.rcv.mss) - 1
        if acks < least:
            raise CheckFailed(f"{acks} ACKs for {len(views)} segments of {self.payload} B: fewer than one "
                              f"per two full-sized segments ({least})")
        # the delayed ACK may still be pending for an odd tail: let it fire, then check the last ACK
        self.clock.now += 1.0
        self.stack._on_timer()
        p = parse_ipv4(self.link.last_sent)
        s = parse_tcp(p.payload, src=p.src, dst=p.dst)
        if s.ack != self.peer.seq:
            raise CheckFailed(f"the last ACK acknowledges {s.ack}, expected {self.peer.seq}")
        self.drained = 0


class IdleReceivePath(ReceivePath):
    """The receive path with ``idle`` more ESTABLISHED connections on the stack, keep-alive on."""

    def __init__(self, payload: int, batch: int, idle: int) -> None:
        from dataclasses import replace
        super().__init__(payload, batch)
        self.idle = idle
        self.stack.tcp.config = replace(self.stack.tcp.config, max_connections=max(65536, 2 * idle))
        self.idle_conns: list = []

    def open(self) -> None:
        from netstack.wire.ipv4 import ip2int

        self.stack.start()
        listener = self.tcp.listen(STACK_PORT, backlog=self.idle + 16)
        src = ip2int(PEER_ADDR)
        for i in range(self.idle):
            # other clients: the same peer address, another port each (the 4-tuple differs)
            peer = Peer(payload=self.payload, src=src, dst=self.stack.addr, sport=1024 + i)
            sent = self.link.sent
            self.link.feed([memoryview(peer.syn())])
            self.stack._on_readable()
            if self.link.sent != sent + 1:
                raise CheckFailed(f"idle connection {i}: no SYN-ACK")
            self.link.feed([memoryview(peer.ack_of(self.link.last_sent))])
            self.stack._on_readable()
            conn = listener.accept()
            if conn is None or conn.state is not State.ESTABLISHED:
                raise CheckFailed(f"idle connection {i} did not establish: {conn!r}")
            conn.set_keepalive(True, idle=7200.0)
            self.idle_conns.append(conn)
        self.stack._on_timer()                    # the flush of the last one arms its keep-alive timer
        armed = sum(1 for c in self.idle_conns if c.next_deadline() is not None)
        if armed != self.idle:
            raise CheckFailed(f"{armed} of {self.idle} idle connections have a timer armed")
        self.link.sent = 0
        self._handshake()
        self.conn = listener.accept()
        if self.conn is None or self.conn.state is not State.ESTABLISHED:
            raise CheckFailed(f"handshake did not establish a connection: {self.conn!r}")
        self.link.sent = 0

    def check(self, views, acks: int) -> None:
        super().check(views, acks)
        alive = sum(1 for c in self.idle_conns if c.state is State.ESTABLISHED)
        if alive != self.idle:
            raise CheckFailed(f"{self.idle - alive} idle connections were lost during the run")


class StreamsPath(ReceivePath):
    """The receive path with netstack's socket layer on top: the application is an asyncio
    ``StreamReader`` (``start_server`` handler reading 256 KiB at a time), as for the services."""

    def __init__(self, payload: int, batch: int) -> None:
        super().__init__(payload, batch)
        self.server = None
        self._writer = None
        self._handler_started = False
        self._handler_done = False

    async def _handle(self, reader, writer) -> None:
        self.conn = writer.get_extra_info("netstack_connection")
        self._writer = writer
        self._handler_started = True
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    break
                self.drained += len(data)
        except ConnectionError:
            pass
        finally:
            self._handler_done = True

    async def aopen(self) -> None:
        from netstack.sockets.streams import start_server

        self.stack.start()
        self.server = await start_server(self.stack, self._handle, port=STACK_PORT)
        self._handshake()
        for _ in range(100):
            if self._handler_started:
                break
            await asyncio.sleep(0)
        if self.conn is None or self.conn.state is not State.ESTABLISHED:
            raise CheckFailed(f"the stream server did not get an established connection: {self.conn!r}")
        self.link.sent = 0

    async def run(self, views) -> tuple[int, int]:
        link, stack, clock = self.link, self.stack, self.clock
        on_readable = stack._on_readable
        tick = 0.00001 * self.batch
        sent0 = link.sent
        expected = self.drained + len(views) * self.payload
        link.feed(views)
        t0 = _clock()
        while link.pending():
            on_readable()
            clock.now += tick
            await asyncio.sleep(0)   # the transport hands data to the StreamReader; the handler reads
        for _ in range(1000):        # the application catches up with the last batch
            if self.drained >= expected:
                break
            await asyncio.sleep(0)
        t1 = _clock()
        return t1 - t0, link.sent - sent0

    async def aclose(self) -> None:
        """Reset the connection so the handler ends, stop serving, close the stack."""
        if self._writer is not None:
            self._writer.transport.abort()
            for _ in range(100):
                if self._handler_done:
                    break
                await asyncio.sleep(0)
        if self.server is not None:
            self.server.close()
        self.close()


class IPOnlyPath(_Driven):
    """The same loop and IP layer delivering to a transport that does nothing."""

    def __init__(self, payload: int, batch: int) -> None:
        super().__init__(payload, batch)
        self.null = NullTransport()
        self.stack.register_transport(PROTO_EXPERIMENT, self.null)
        self.peer.protocol = PROTO_EXPERIMENT
        self.peer.ack = 1

    def open(self) -> None:
        self.stack.start()

    async def run(self, views) -> tuple[int, int]:
        link, on_readable, clock = self.link, self.stack._on_readable, self.clock
        tick = 0.00001 * self.batch
        link.feed(views)
        t0 = _clock()
        while link.pending():
            on_readable()
            clock.now += tick
            await asyncio.sleep(0)
        return _clock() - t0, 0

    def check(self, views, acks: int) -> None:
        if self.null.datagrams != len(views):
            raise CheckFailed(f"the IP layer delivered {self.null.datagrams} of {len(views)} datagrams")
        self.null.datagrams = 0


def parse_only(views) -> int:
    """The reference: parse_ipv4 + parse_tcp (checksum verified) of every packet; elapsed ns."""
    from netstack.wire.ipv4 import parse_ipv4
    from netstack.wire.tcp import parse_tcp

    t0 = _clock()
    for v in views:
        p = parse_ipv4(v)
        parse_tcp(p.payload, src=p.src, dst=p.dst)
    return _clock() - t0


# --- the run --------------------------------------------------------------------------------------


async def _measure(count: int, repeat: int, payload: int, batch: int, progress, profile_path=None,
                   warmup: int = 0, idle: int = 0) -> dict:
    import netstack.stack as stack_module

    old_batch = stack_module.BATCH
    stack_module.BATCH = batch
    full = ReceivePath(payload, batch)
    iponly = IPOnlyPath(payload, batch)
    streams = StreamsPath(payload, batch)
    idler = IdleReceivePath(payload, batch, idle) if idle else None
    names = ROWS[:3] + ((idle_row(idle),) if idle else ()) + ROWS[3:]
    try:
        full.open()
        iponly.open()
        await streams.aopen()
        if idler is not None:
            if progress is not None:
                progress.step(f"opening {idle:,} idle connections")
            idler.open()
        runs: dict[str, list[float]] = {name: [] for name in names}
        acks_total = stream_acks = idle_acks = 0
        for r in range(warmup + repeat):
            kept = r >= warmup                       # the first `warmup` runs are done and discarded
            what = f"run {r - warmup + 1}/{repeat}" if kept else f"warm-up {r + 1}/{warmup}"
            if progress is not None:
                progress.step(f"{what}: {count} segments of {payload} B (building)")
            _buf, views = full.peer.data(count)
            _ibuf, iviews = iponly.peer.data(count)
            _sbuf, sviews = streams.peer.data(count)
            _dbuf, dviews = idler.peer.data(count) if idler is not None else (None, None)
            if progress is not None:
                progress.step(f"{what}: {count} segments of {payload} B (timing)")
            parse_ns = parse_only(views) / count
            ns_ip, _ = await iponly.run(iviews)
            iponly.check(iviews, 0)
            ns_full, acks = await full.run(views)
            full.check(views, acks)
            ns_streams, sacks = await streams.run(sviews)
            streams.check(sviews, sacks)
            if idler is not None:
                ns_idle, dacks = await idler.run(dviews)
                idler.check(dviews, dacks)
            if kept:
                if idler is not None:
                    runs[idle_row(idle)].append(ns_idle / count)
                    idle_acks += dacks
                runs["parse"].append(parse_ns)
                runs["ip layer"].append(ns_ip / count)
                runs["receive path"].append(ns_full / count)
                runs["with streams"].append(ns_streams / count)
                acks_total += acks
                stream_acks += sacks
            del views, iviews, sviews, dviews, _buf, _ibuf, _sbuf, _dbuf
        profile = None
        if profile_path is not None:
            profile = await _profiled_run(full, count, progress)
    finally:
        full.close()
        iponly.close()
        await streams.aclose()
        if idler is not None:
            idler.close()
        stack_module.BATCH = old_batch

    parse_ns = statistics.median(runs["parse"])
    rows = []
    acked = {"receive path": acks_total, "with streams": stream_acks}
    if idle:
        acked[idle_row(idle)] = idle_acks
    for name in names:
        ns = statistics.median(runs[name])
        rows.append({
            "path": name,
            "ns_per_segment": ns,
            "segments_per_s": 1e9 / ns,
            "mb_per_s": payload * 1e3 / ns,
            "x_parse": ns / parse_ns,
            "acks_per_segment": acked[name] / (count * repeat) if name in acked else None,
            "runs_ns_per_segment": runs[name],
        })
    report.add_spread(rows, "runs_ns_per_segment")
    result = {"rows": rows, "counters": full.stack.counters.snapshot()}
    if profile is not None:
        from netstack.bench import _profile
        _profile.dump(profile, profile_path)
        result["profile"] = _profile.top(profile, count)
    return result


async def _profiled_run(path: ReceivePath, count: int, progress):
    """One extra, untimed run of the receive path under cProfile."""
    import cProfile

    if progress is not None:
        progress.step(f"profiling the receive path: {count} segments under cProfile")
    _buf, views = path.peer.data(count)
    profile = cProfile.Profile()
    profile.enable()
    try:
        _ns, acks = await path.run(views)
    finally:
        profile.disable()
    path.check(views, acks)
    return profile


def measure(*, count: int = DEFAULT_COUNT, repeat: int = DEFAULT_REPEAT, payload: int = DEFAULT_PAYLOAD,
            batch: int = DEFAULT_BATCH, progress: report.Progress | None = None, profile_path: str | None = None,
            warmup: int = 0, idle: int = 0) -> dict:
    """Run the benchmark (in a fresh event loop); returns {"rows", "counters"[, "profile"]}.

    With ``profile_path`` an extra run of the receive path goes through
    cProfile after the timed ones: the raw profile is written there and
    ``result["profile"]`` lists the top functions by own time per segment.
    ``idle`` > 0 adds the row with that many idle connections.
    """
    if progress is not None:
        progress.total = 2 * (warmup + repeat) + (1 if profile_path else 0) + (1 if idle else 0)
    return asyncio.run(_measure(count, repeat, payload, batch, progress, profile_path, warmup, idle))


# --- command line -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=bounded(int, 2, 10_000_000), metavar="N",
                        help=f"segments per run (default {DEFAULT_COUNT:,}, --quick {QUICK_COUNT:,})")
    parser.add_argument("--repeat", type=bounded(int, 1, 1000), metavar="N",
                        help=f"runs; the median is reported (default {DEFAULT_REPEAT}, --quick {QUICK_REPEAT})")
    report.add_warmup_argument(parser)
    parser.add_argument("--payload", type=bounded(int, 1, 65_000), default=DEFAULT_PAYLOAD, metavar="BYTES",
                        help=f"payload bytes per segment (default {DEFAULT_PAYLOAD}: a 1500-byte packet "
                             "with timestamps)")
    parser.add_argument("--batch", type=bounded(int, 1, 4096), default=DEFAULT_BATCH, metavar="N",
                        help=f"packets per loop wakeup (default {DEFAULT_BATCH}, the stack's batch)")
    parser.add_argument("--idle", type=bounded(int, 0, 60_000), metavar="N",
                        help=f"idle connections (keep-alive on) for the 'receive path, N idle' row (default "
                             f"{DEFAULT_IDLE:,}, --quick {QUICK_IDLE:,}; 0: no such row)")
    parser.add_argument("--profile", metavar="FILE",
                        help="after the timed runs, profile one more run of the receive path with cProfile: "
                             "write the raw profile to FILE and print the top functions per segment")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs: a rough picture")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE ('-' for stdout)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    problem = report.check_writable(args.json) or report.check_writable(args.profile)
    if problem:
        print(f"netstack bench segments: {problem.replace('--json', '--json/--profile', 1)}", file=sys.stderr)
        return 2
    count = args.count or (QUICK_COUNT if args.quick else DEFAULT_COUNT)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    rcvbuf = 256 * 1024
    if args.payload * args.batch > rcvbuf:
        print(f"netstack bench segments: --payload {args.payload} x --batch {args.batch} exceeds the "
              f"{rcvbuf}-byte receive window; lower --batch", file=sys.stderr)
        return 2
    progress = report.Progress(0, "bench segments", quiet=args.quiet)
    try:
        idle = args.idle if args.idle is not None else (QUICK_IDLE if args.quick else DEFAULT_IDLE)
        result = measure(count=count, repeat=repeat, payload=args.payload, batch=args.batch, progress=progress,
                         profile_path=args.profile, warmup=args.warmup, idle=idle)
    except CheckFailed as exc:
        print(f"netstack bench segments: check failed: {exc}", file=sys.stderr)
        return 1
    progress.finish()

    env = report.environment()
    rows = result["rows"]
    by = {r["path"]: r for r in rows}
    print(f"segments: checksum {env['checksum']}; {env['python']}; {env['cpu']}")
    print(f"{count:,} in-order segments of {args.payload} B (+52 B IPv4/TCP/timestamps) per run, "
          f"{args.batch} per wakeup; median of {repeat} runs after {args.warmup} warm-up")
    print()
    print(report.format_table(COLUMNS, rows))
    warnings = report.spread_warnings(rows, lambda r: r["path"])
    if warnings:
        print()
        print("\n".join(warnings))
    full = by["receive path"]
    print()
    print(f"receive path: {full['x_parse']:.2f}x the cost of parsing alone "
          f"(parse is {100 / full['x_parse']:.0f}% of it); "
          f"{full['ns_per_segment'] - by['ip layer']['ns_per_segment']:.0f} ns/segment in TCP "
          f"(parse+checksum, connection, ACK), "
          f"{by['ip layer']['ns_per_segment']:.0f} ns/segment in the loop and IP layer; "
          f"the socket layer and an asyncio StreamReader add "
          f"{by['with streams']['ns_per_segment'] - full['ns_per_segment']:.0f} ns/segment")
    if idle:
        idle_ns = by[idle_row(idle)]["ns_per_segment"]
        print(f"with {idle:,} idle connections (keep-alive timers armed): {idle_ns:.0f} ns/segment, "
              f"{idle_ns / full['ns_per_segment']:.2f}x the receive path alone "
              f"({idle_ns - full['ns_per_segment']:+.0f} ns/segment)")

    if "profile" in result:
        from netstack.bench import _profile
        print()
        print(f"profile of one more run under cProfile (raw profile: {args.profile}; cProfile inflates "
              f"small calls, so rank by it and read costs from the table above):")
        print(_profile.format_top(result["profile"]))

    if args.json:
        settings = {"count": count, "repeat": repeat, "warmup": args.warmup, "payload": args.payload,
                    "batch": args.batch, "idle": idle,
                    "packet_bytes": args.payload + 52}
        extra = {"profile": result["profile"]} if "profile" in result else {}
        try:
            report.write_json(args.json, "segments", COLUMNS, rows, settings=settings, key=KEY, figure=FIGURE,
                              warnings=warnings,
                              counters=result["counters"], **extra)
        except OSError as exc:
            print(f"netstack bench segments: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0
