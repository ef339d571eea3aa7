"""The SMTP server's per-address connection limit and its graceful shutdown, on fake streams."""
from __future__ import annotations

import asyncio
import threading

from smtp.delivery import MemorySink
from smtp.server import SmtpServer
from smtp.session import SessionConfig
from tests.support.smtp_fakes import FakeClock, _open, _settle

CFG = SessionConfig(hostname="mx.example.test")
TXN = b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"


class _HeldDisk:
    """A blocking delivery held until released."""

    blocking = True

    def __init__(self):
        self.entered, self.release, self.done = threading.Event(), threading.Event(), []

    def deliver(self, env, qid):
        self.entered.set()
        assert self.release.wait(10)
        self.done.append(qid)
        return []


def test_per_address_limit_refuses_with_421_4_7_0_counts_and_closes():
    async def main():
        server = SmtpServer(CFG, clock=FakeClock(), max_per_ip=2)
        a1, a2 = _open(server, 1, "192.0.2.1"), _open(server, 2, "192.0.2.1")
        await _settle()
        a3 = _open(server, 3, "192.0.2.1")
        b1 = _open(server, 4, "192.0.2.2")               # another address is not affected
        await _settle()
        assert a3[2].done() and a3[1].closed
        assert bytes(a3[1].out) == (b"421 4.7.0 mx.example.test Error: too many connections from your address "
                                    b"(at most 2), try again later\r\n")
        assert server.refused_per_ip == 1 and server.connections_refused == 1
        for r, w, t in (a1, a2, b1):
            assert bytes(w.out).startswith(b"220 ") and not t.done()
        a1[0].feed_data(b"QUIT\r\n")                      # a slot frees up: the address may connect again
        await asyncio.wait_for(a1[2], 5)
        a4 = _open(server, 5, "192.0.2.1")
        await _settle()
        assert bytes(a4[1].out).startswith(b"220 ") and not a4[2].done()
        for r, w, t in (a2, b1, a4):
            r.feed_eof()
        await asyncio.wait_for(asyncio.gather(a2[2], b1[2], a4[2]), 5)
        assert server.active == 0 and server._per_ip == {}

    asyncio.run(main())


def test_total_limit_refuses_with_421_4_7_0_when_nobody_can_be_shed():
    async def main():
        server = SmtpServer(CFG, clock=FakeClock(), max_connections=1, shed_after=0)
        first = _open(server, 1)
        await _settle()
        second = _open(server, 2, "192.0.2.50")
        await _settle()
        assert second[2].done() and second[1].closed
        assert bytes(second[1].out).startswith(b"421 4.7.0 mx.example.test Error: too many connections (at most 1)")
        assert server.connections_refused == 1 and server.refused_per_ip == 0
        first[0].feed_eof()
        await asyncio.wait_for(first[2], 5)

    asyncio.run(main())


def test_shutdown_idle_sessions_get_421_4_3_2_transactions_in_data_finish_then_421():
    async def main():
        sink = MemorySink()
        server = SmtpServer(CFG, clock=FakeClock(), delivery=sink)
        idle = _open(server, 1)
        busy = _open(server, 2)
        idle[0].feed_data(b"EHLO c\r\n")
        busy[0].feed_data(TXN + b"Subject: x\r\n\r\nhalf of the ")
        await _settle()
        assert bytes(busy[1].out).endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        stop = asyncio.ensure_future(server.shutdown(drain_seconds=30))
        await _settle()
        assert idle[2].done() and idle[1].closed
        assert bytes(idle[1].out).endswith(b"421 4.3.2 mx.example.test Service shutting down, closing the "
                                           b"connection\r\n")
        late = _open(server, 3)                           # accepted by the kernel just before the close
        await _settle()
        assert bytes(late[1].out) == b"421 4.3.2 mx.example.test Service shutting down, try again later\r\n"
        assert not busy[2].done() and not stop.done()     # the message in DATA may finish
        busy[1].out.clear()
        busy[0].feed_data(b"body\r\n.\r\nMAIL FROM:<a@remote.test>\r\n")
        await asyncio.wait_for(busy[2], 5)
        lines = bytes(busy[1].out).split(b"\r\n")
        assert lines[0].startswith(b"250 2.0.0 Ok: queued as ")
        assert lines[1] == b"421 4.3.2 mx.example.test Service shutting down, closing the connection"
        assert len(sink.messages) == 1 and sink.messages[0][1].content == b"Subject: x\r\n\r\nhalf of the body\r\n"
        await asyncio.wait_for(stop, 5)                   # nothing left: shutdown ends before the deadline
        assert server.refused_shutting_down == 1

    asyncio.run(main())


def test_shutdown_quit_still_gets_221():
    async def main():
        server = SmtpServer(CFG, clock=FakeClock(), delivery=MemorySink())
        r, w, t = _open(server, 1)
        r.feed_data(TXN)
        await _settle()
        stop = asyncio.ensure_future(server.shutdown(drain_seconds=30))
        await _settle()
        r.feed_data(b"x\r\n.\r\nQUIT\r\n")
        await asyncio.wait_for(asyncio.gather(t, stop), 5)
        assert bytes(w.out).endswith(b"221 2.0.0 mx.example.test Bye\r\n") and b"250 2.0.0 Ok: queued" in w.out

    asyncio.run(main())


def test_shutdown_deadline_closes_unfinished_data_and_delivers_nothing():
    async def main():
        sink = MemorySink()
        server = SmtpServer(CFG, clock=FakeClock(), delivery=sink)
        r, w, t = _open(server, 1)
        r.feed_data(TXN + b"Subject: never finished\r\n")
        await _settle()
        await asyncio.wait_for(server.shutdown(drain_seconds=0.05), 5)
        await _settle()
        assert t.done() and w.closed and sink.messages == []
        assert b"250 2.0.0 Ok: queued" not in w.out

    asyncio.run(main())


def test_shutdown_waits_for_a_running_delivery_past_the_deadline_and_sends_its_250():
    async def main():
        disk = _HeldDisk()
        server = SmtpServer(CFG, clock=FakeClock(), delivery=disk)
        r, w, t = _open(server, 1)
        r.feed_data(TXN + b"x\r\n.\r\n")
        await asyncio.to_thread(disk.entered.wait, 10)
        stop = asyncio.ensure_future(server.shutdown(drain_seconds=0.01))
        await asyncio.sleep(0.1)                          # well past the deadline
        assert not stop.done() and not t.done()           # a delivery in flight is never abandoned
        disk.release.set()
        await asyncio.wait_for(asyncio.gather(stop, t), 5)
        assert disk.done and f"250 2.0.0 Ok: queued as {disk.done[0]}\r\n".encode() in w.out
        assert server.accepted == 1

    asyncio.run(main())


def test_a_server_delivers_from_one_event_loop_and_then_from_another(tmp_path):
    """The delivery threads hand results to the loop that asked; a server driven by a second
    event loop later (asyncio.run twice) gets a pool of its own."""
    from smtp.delivery import MaildirDelivery

    server = SmtpServer(CFG, clock=FakeClock(), delivery=MaildirDelivery(str(tmp_path)))

    async def one_message():
        reader, writer, task = _open(server, 1)
        reader.feed_data(TXN + b"hello\r\n.\r\nQUIT\r\n")
        await asyncio.wait_for(task, 10)
        return bytes(writer.out)

    for _ in range(2):
        assert b"250 2.0.0 Ok: queued as " in asyncio.run(one_message())
    assert len(list((tmp_path / "bob" / "new").iterdir())) == 2


# ------------------------------------------------------------------ the protocol driver (SmtpServer.protocol)


async def _delivering():
    """A protocol conversation whose message is in a held delivery: (disk, server, conv, transport)."""
    disk = _HeldDisk()
    server = SmtpServer(CFG, clock=FakeClock(), delivery=disk)
    conv, transport = _connect(server)
    conv.data_received(TXN + b"x\r\n.\r\n")
    await asyncio.to_thread(disk.entered.wait, 10)
    return disk, server, conv, transport


def _connect(server, port=1, ip="192.0.2.9"):
    from tests.support.smtp_fakes import FakeTransport

    transport = FakeTransport((ip, port))
    conv = server.protocol()
    conv.connection_made(transport)
    return conv, transport


def test_protocol_reading_pauses_while_a_delivery_runs_and_resumes_after_its_250():
    """As the stream driver does not read while it waits for the disk, the protocol pauses the
    transport's reading (the client's pipelined bytes stay in TCP, its window closes)."""
    async def main():
        disk, server, conv, transport = await _delivering()
        paused_while_delivering = transport.paused
        conv.data_received(b"NOOP\r\n")                  # bytes already on their way are kept, not answered yet
        before_250 = bytes(transport.out)
        disk.release.set()
        for _ in range(500):
            if b"250 2.0.0 Ok\r\n" in transport.out:
                break
            await asyncio.sleep(0.01)
        return paused_while_delivering, before_250, bytes(transport.out), transport.paused, server

    paused, before, out, paused_after, server = asyncio.run(main())
    assert paused and not paused_after
    assert before.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert out.endswith(b"250 2.0.0 Ok\r\n") and b"250 2.0.0 Ok: queued as " in out
    assert server.accepted == 1


def test_protocol_client_gone_during_delivery_the_message_is_delivered_and_the_conversation_ends():
    async def main():
        disk, server, conv, transport = await _delivering()
        conv.connection_lost(ConnectionResetError())
        counted_while_delivering = (server.active, dict(server._per_ip), len(server._running))
        stop = asyncio.ensure_future(server.shutdown(drain_seconds=0))
        await asyncio.sleep(0.05)
        waited = not stop.done()                         # the delivery in flight is waited for
        written = len(transport.out)
        disk.release.set()
        await asyncio.wait_for(stop, 5)
        return counted_while_delivering, waited, written, len(transport.out), server, disk

    counted, waited, written, written_after, server, disk = asyncio.run(main())
    assert counted == (0, {}, 1)                         # the connection is gone; its delivery still runs
    assert waited and disk.done and server.accepted == 1
    assert written_after == written                       # no reply to a client that left
    assert server._running == {}


def test_protocol_refusals_and_shutdown_close_the_transport():
    async def main():
        server = SmtpServer(CFG, clock=FakeClock(), delivery=MemorySink(), max_per_ip=1)
        first, t1 = _connect(server, 1)
        second, t2 = _connect(server, 2)
        refused = (bytes(t2.out), t2.closed)
        second.connection_lost(None)
        await server.shutdown(drain_seconds=5)
        return refused, bytes(t1.out), t1.closed, server

    (out2, closed2), out1, closed1, server = asyncio.run(main())
    assert out2.startswith(b"421 4.7.0 mx.example.test Error: too many connections from your address") and closed2
    assert out1.startswith(b"220 ") and closed1
    assert out1.endswith(b"421 mx.example.test Service shutting down, closing the connection\r\n")
    assert server.refused_per_ip == 1 and server.active == 1     # the first one's connection_lost is still to come


def test_protocol_reads_no_more_commands_while_the_client_does_not_read_its_replies():
    """pause_writing (the transport's buffer above its high-water mark) pauses reading until
    resume_writing, whatever commands were already on their way (the stream driver drains
    before it reads)."""
    async def main():
        server = SmtpServer(CFG, clock=FakeClock(), delivery=MemorySink())
        conv, transport = _connect(server)
        conv.pause_writing()
        paused = transport.paused
        conv.data_received(b"NOOP\r\n")                  # already in flight: answered, reading stays paused
        still = transport.paused
        conv.resume_writing()
        return paused, still, transport.paused, bytes(transport.out)

    paused, still, after, out = asyncio.run(main())
    assert paused and still and not after
    assert out.endswith(b"250 Ok\r\n")


class _Fatal(BaseException):
    """Not an Exception (as SystemExit, KeyboardInterrupt)."""


class _GatedDisk:
    """A blocking delivery per client port, each held until its gate opens; port 1's raises _Fatal."""

    blocking = True

    def __init__(self):
        self.gates = {1: threading.Event(), 2: threading.Event()}
        self.entered = threading.Semaphore(0)
        self.done = []

    def deliver(self, env, qid):
        self.entered.release()
        assert self.gates[env.peer[1]].wait(10)
        if env.peer[1] == 1:
            raise _Fatal("delivery code raised a BaseException")
        self.done.append(qid)
        return []


def test_protocol_a_delivery_raising_a_base_exception_is_a_451_and_loses_no_other_reply():
    """Two deliveries end together (one hand-over to the loop), the first raising a BaseException
    that is not an Exception: its client gets 451 4.3.0 as for any failed delivery, the other its
    250, and a shutdown then ends (nobody is left waiting for an answer)."""
    async def main():
        disk = _GatedDisk()
        server = SmtpServer(CFG, clock=FakeClock(), delivery=disk)
        convs = [_connect(server, port) for port in (1, 2)]
        for conv, _ in convs:
            conv.data_received(TXN + b"x\r\n.\r\n")
        for _ in range(2):
            assert await asyncio.to_thread(disk.entered.acquire, True, 10)
        pool = server._pool
        for port in (1, 2):                     # the loop is busy here: both end before it hands over
            disk.gates[port].set()
            for _ in range(5000):
                if pool.finished == port:
                    break
                threading.Event().wait(0.001)
        assert pool.finished == 2
        for _ in range(500):
            if b"\r\n451 " in convs[0][1].out and b"\r\n250 2.0.0 Ok: queued" in convs[1][1].out:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(server.shutdown(drain_seconds=0), 5)
        return [bytes(t.out) for _, t in convs], [t.closed for _, t in convs], disk, server

    (out1, out2), closed, disk, server = asyncio.run(main())
    assert out1.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n451 4.3.0 Error: local delivery failed, "
                         b"try again later\r\n421 4.3.2 mx.example.test Service shutting down, closing the "
                         b"connection\r\n")
    assert f"250 2.0.0 Ok: queued as {disk.done[0]}\r\n".encode() in out2
    assert closed == [True, True] and server.accepted == 1 and server._running == {}


def test_protocol_a_failure_answering_a_delivery_ends_the_conversation_so_shutdown_ends():
    """A bug while answering a finished delivery: the conversation ends (its connection closes
    without a reply), the error reaches the loop's exception handler, and a shutdown does not
    wait forever for an answer that never comes."""
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("exception")))
        disk, server, conv, transport = await _delivering()

        def broken(*args):
            raise RuntimeError("a bug in the answer")

        server._delivery_outcome = broken
        stop = asyncio.ensure_future(server.shutdown(drain_seconds=0))
        disk.release.set()
        await asyncio.wait_for(stop, 5)
        return transport.closed, server, errors

    closed, server, errors = asyncio.run(main())
    assert closed and server._running == {}
    assert [type(e) for e in errors] == [RuntimeError]


def test_protocol_starttls_while_the_client_does_not_read_its_replies_carries_the_pause_over():
    """STARTTLS while the transport's writing is paused: the stream protocol installed on the
    transport is paused too, so the 220's drain() waits and the transport's later
    resume_writing() is balanced (no assertion from asyncio); reading stays paused until the
    220 has drained, then resumes for the client's handshake."""
    import ssl

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        server = SmtpServer(CFG, clock=FakeClock(), tls_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        conv, transport = _connect(server)
        transport.protocol = conv
        conv.data_received(b"EHLO client.example\r\n")
        conv.pause_writing()                             # the client stopped reading our replies
        transport.buffered = 70000
        conv.data_received(b"STARTTLS\r\n")
        await _settle()
        moved = transport.protocol is not conv
        during = (transport.paused, bytes(transport.out).endswith(b"220 2.0.0 Ready to start TLS\r\n"))
        transport.buffered = 0
        transport.protocol.resume_writing()              # what the transport does once its buffer drains
        await _settle()
        after = transport.paused
        await asyncio.wait_for(server.shutdown(drain_seconds=0), 5)
        await _settle()
        return moved, during, after, errors, transport.closed

    moved, (paused_during, sent_220), paused_after, errors, closed = asyncio.run(main())
    assert moved and sent_220
    assert paused_during                                 # no reading while the 220 waits to drain
    assert not paused_after                              # drained: the handshake may come in
    assert errors == [] and closed
