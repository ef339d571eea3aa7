"""TCPTransport serving an ``asyncio.BufferedProtocol`` (get_buffer / buffer_updated /
eof_received), as asyncio's selector transports do: the bytes are copied from the TCP receive
buffer straight into the protocol's buffer, however small the buffers it hands out; an empty
buffer is a fatal error; pause_reading()/resume_reading() leave the bytes in TCP; the read
reopens the receive window and the window update leaves (RFC 9293 §3.8.6, RFC 1122 §4.2.3.3).

Deterministic: a scripted TCP peer on a fake clock (tests.support.tcp_script) and a fake loop
whose callbacks the test runs by hand."""
from __future__ import annotations

import asyncio

import pytest

from netstack.sockets.transport import TCPTransport
from netstack.tcp import TCPConfig
from netstack.tcp.events import ConnEvent
from netstack.wire.tcp import RST

from tests.support.tcp_script import Script


class FakeLoop:
    def __init__(self):
        self.ready = []
        self.errors = []

    def call_soon(self, cb, *args):
        self.ready.append((cb, args))

    def call_exception_handler(self, ctx):
        self.errors.append(ctx)

    def run(self):
        while self.ready:
            cb, args = self.ready.pop(0)
            cb(*args)


class FakeStack:
    def __init__(self, script: Script):
        self.script = script
        self.kicks = 0

    def kick(self):
        self.kicks += 1


class Sink(asyncio.BufferedProtocol):
    """Hands out buffers of the given sizes in turn (the last one repeats)."""

    def __init__(self, sizes=(65536,), keep_open=True):
        self.sizes = list(sizes)
        self.got = bytearray()
        self.buf = None
        self.updates = []
        self.eof = 0
        self.lost = []
        self.keep_open = keep_open
        self.on_update = None

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        size = self.sizes.pop(0) if len(self.sizes) > 1 else self.sizes[0]
        self.buf = bytearray(size)
        return self.buf

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.updates.append(nbytes)
        self.got += self.buf[:nbytes]
        if self.on_update is not None:
            self.on_update()

    def eof_received(self):
        self.eof += 1
        return self.keep_open

    def connection_lost(self, exc):
        self.lost.append(exc)


def _open(sink, config=None):
    s = Script(config)
    conn, _ = s.passive_open()
    loop, stack = FakeLoop(), FakeStack(s)
    t = TCPTransport(loop, stack, conn, sink)
    t._start()
    loop.run()
    return s, conn, loop, t


def _send(s, data, off=0):
    s.peer("P.", seq=s.peer_isn + 1 + off, ack=s.our_isn + 1, data=data)


def test_data_arrives_intact_through_many_small_buffers():
    sizes = [1, 2, 3, 5, 7, 11, 13, 17, 4096, 1]
    sink = Sink(sizes)
    s, conn, loop, t = _open(sink)
    payload = bytes(range(256)) * 20             # 5120 bytes over 4 segments
    off = 0
    for i in range(0, len(payload), 1400):
        _send(s, payload[i:i + 1400], off)
        off += len(payload[i:i + 1400])
    loop.run()
    assert bytes(sink.got) == payload
    assert sink.updates[:9] == sizes[:9]           # each buffer filled as far as it goes
    assert conn.readable == 0
    assert loop.errors == [] and sink.lost == []


def test_the_bytes_come_straight_from_read_only_views_kept_in_the_receive_buffer():
    """A kept (not copied) payload, as a GSO super-segment from the TUN's read buffer: the
    protocol's buffer gets its bytes, split across buffers smaller than it."""
    sink = Sink([10000])
    s, conn, loop, t = _open(sink)
    payload = bytes(i * 7 & 255 for i in range(40000))
    conn.rcv.buf.append(memoryview(payload).toreadonly())   # as the fast path keeps it
    t._on_event(ConnEvent.READABLE)
    loop.run()
    assert bytes(sink.got) == payload and sink.updates == [10000] * 4


def test_an_empty_buffer_is_a_fatal_runtime_error():
    sink = Sink([0])
    s, conn, loop, t = _open(sink)
    _send(s, b"hello")
    loop.run()
    assert len(loop.errors) == 1 and isinstance(loop.errors[0]["exception"], RuntimeError)
    assert len(sink.lost) == 1 and isinstance(sink.lost[0], RuntimeError)
    s.poll()
    assert any(seg.flags & RST for seg in s.sent())      # the connection is aborted (RST)
    assert t.is_closing()


def test_a_failing_buffer_updated_is_fatal_too():
    sink = Sink()

    def boom():
        raise ValueError("application bug")
    sink.on_update = boom
    s, conn, loop, t = _open(sink)
    _send(s, b"hello")
    loop.run()
    assert isinstance(loop.errors[0]["exception"], ValueError)
    assert isinstance(sink.lost[0], ValueError)


def test_pause_keeps_the_bytes_in_tcp_and_resume_delivers_them():
    sink = Sink([3])
    s, conn, loop, t = _open(sink)
    sink.on_update = t.pause_reading                     # pause from inside buffer_updated
    _send(s, b"abcdefgh")
    loop.run()
    assert bytes(sink.got) == b"abc" and conn.readable == 5 and not t.is_reading()
    _send(s, b"ij", 8)
    loop.run()
    assert bytes(sink.got) == b"abc"                     # paused: nothing more delivered
    sink.on_update = None
    t.resume_reading()
    loop.run()
    assert bytes(sink.got) == b"abcdefghij" and conn.readable == 0 and t.is_reading()


def test_eof_after_the_data_then_close_when_eof_received_is_false():
    sink = Sink([4], keep_open=False)
    s, conn, loop, t = _open(sink)
    s.peer("FP.", seq=s.peer_isn + 1, ack=s.our_isn + 1, data=b"last words")
    loop.run()
    assert bytes(sink.got) == b"last words" and sink.eof == 1
    assert sink.lost == [None]                             # closed by the transport
    assert t.is_closing()


def test_eof_kept_open_by_the_protocol():
    sink = Sink(keep_open=True)
    s, conn, loop, t = _open(sink)
    s.peer("F.", seq=s.peer_isn + 1, ack=s.our_isn + 1)
    loop.run()
    assert sink.eof == 1 and sink.lost == [] and not t.is_closing()
    t.write(b"reply")                                      # half-open: we can still send
    s.poll()
    assert any(seg.payload == b"reply" for seg in s.sent())


def test_the_read_reopens_the_window_and_the_update_leaves():
    """With reading paused the receive buffer fills and the advertised window closes; the
    protocol's reads (into its own buffer) free it and a window update goes out."""
    rcvbuf = 16 * 1024
    sink = Sink([1000])
    s, conn, loop, t = _open(sink, TCPConfig(rcvbuf=rcvbuf))
    t.pause_reading()
    sent = bytearray()
    while True:                                            # until TCP takes no more
        held = conn.readable
        chunk = bytes([held // 1000 & 255]) * 1000
        _send(s, chunk, held)
        if conn.readable == held:
            break
        sent += chunk[:conn.readable - held]
    loop.run()
    assert held >= rcvbuf and sink.got == b""             # all held in TCP, none delivered
    s.after(1.0)                                           # the delayed ACK, if any, is out
    acks = s.sent()
    assert acks and acks[-1].window == 0                  # the window is closed
    assert acks[-1].ack == (s.peer_isn + 1 + held) & 0xFFFFFFFF
    t.resume_reading()
    loop.run()
    assert conn.readable == 0 and sink.got == sent
    kicks = t._stack.kicks
    assert kicks                                           # the stack was asked to flush
    s.poll()
    update = s.sent()
    assert update and update[-1].window > 0                # the window update left
    assert update[-1].ack == (s.peer_isn + 1 + held) & 0xFFFFFFFF


def test_a_plain_protocol_still_gets_bytes():
    class P(asyncio.Protocol):
        def __init__(self):
            self.data = []

        def connection_made(self, transport):
            pass

        def data_received(self, data):
            self.data.append(data)
    p = P()
    s, conn, loop, t = _open(p)
    _send(s, b"xyz")
    loop.run()
    assert p.data == [b"xyz"] and type(p.data[0]) is bytes


# -- after abort() or close(), the protocol hears nothing more but connection_lost --------------
# (asyncio's selector transports stop reading at once; Connection.abort() leaves the receive
# buffer in place, and a CLOSED connection without an error reads as end of stream)

def test_a_buffered_protocol_gets_no_buffer_updated_after_abort():
    sink = Sink([1000])
    s, conn, loop, t = _open(sink)
    sink.on_update = t.abort            # abort from inside the first buffer_updated
    _send(s, b"x" * 5000)
    loop.run()
    assert sink.updates == [1000]       # 4000 bytes were still buffered: not handed over
    assert sink.eof == 0
    assert sink.lost == [None]


class _AbortingProtocol(asyncio.Protocol):
    """Aborts its transport on the first data; counts every callback after that."""

    def __init__(self):
        self.calls = 0
        self.after = []
        self.lost = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.calls += 1
        if self.calls == 1:
            self.transport.abort()
        else:
            self.after.append("data_received")

    def eof_received(self):
        self.after.append("eof_received")

    def connection_lost(self, exc):
        self.lost.append(exc)


def test_a_plain_protocol_gets_no_data_or_eof_after_abort():
    from netstack.sockets.transport import READ_CHUNK
    p = _AbortingProtocol()
    s, conn, loop, t = _open(p)
    t.pause_reading()
    off = 0
    while off < READ_CHUNK + 3000:      # more than one read's worth, held while paused
        _send(s, b"y" * 1400, off)
        off += 1400
    loop.run()
    assert conn.readable > READ_CHUNK
    t.resume_reading()
    loop.run()
    assert p.calls == 1 and p.after == [] and p.lost == [None]


def test_a_plain_protocol_gets_no_eof_after_abort():
    p = _AbortingProtocol()
    s, conn, loop, t = _open(p)
    _send(s, b"hello")
    loop.run()
    assert p.calls == 1 and p.after == [] and p.lost == [None]


def test_nothing_after_close_either():
    sink = Sink([1000])
    s, conn, loop, t = _open(sink)
    sink.on_update = t.close            # close from inside the first buffer_updated
    _send(s, b"x" * 5000)
    loop.run()
    assert sink.updates == [1000] and sink.eof == 0


pytestmark = pytest.mark.unit
