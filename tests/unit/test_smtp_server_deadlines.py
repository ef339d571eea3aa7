"""The server's read deadlines: one lazily moved timer per session, not one per command."""
from __future__ import annotations

import asyncio
import time

from smtp.server import SmtpServer
from smtp.session import SessionConfig
from tests.support.smtp_fakes import FakeClock, FakeTransport, _open, _settle


def test_a_session_of_many_commands_sets_no_timer_per_command():
    async def main():
        loop = asyncio.get_running_loop()
        timers = []
        real_call_at = loop.call_at

        def counting_call_at(when, cb, *args, **kw):
            timers.append(cb)
            return real_call_at(when, cb, *args, **kw)

        loop.call_at = counting_call_at
        server = SmtpServer(SessionConfig(hostname="mx.example.test"), clock=FakeClock())
        reader, writer, task = _open(server, 1)
        await _settle()
        for _ in range(50):
            reader.feed_data(b"NOOP\r\n")
            await _settle()
        reader.feed_data(b"QUIT\r\n")
        await asyncio.wait_for(task, 5)
        return timers, bytes(writer.out)

    timers, out = asyncio.run(main())
    assert out.count(b"250 Ok\r\n") == 50 and out.endswith(b"221 mx.example.test Bye\r\n")
    assert len(timers) <= 2          # asyncio.timeout() around each read set 51


def test_the_idle_deadline_still_closes_the_session_with_421():
    async def main():
        server = SmtpServer(SessionConfig(hostname="mx.example.test", idle_timeout=0.05), clock=time.monotonic)
        reader, writer, task = _open(server, 1)
        reader.feed_data(b"EHLO c\r\n")
        await asyncio.wait_for(task, 5)
        return bytes(writer.out), writer.closed

    out, closed = asyncio.run(main())
    assert out.endswith(b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n") and closed


def test_a_timer_that_fires_before_the_deadline_is_set_again_and_ends_the_session_only_when_due():
    """The deadline moved later after the timer was set (a command restarted the idle clock): the
    early timer sets itself for the deadline as it is then; once that has come (on the session's
    clock) the session gets its 421 and the connection is closed."""
    async def main():
        clock = FakeClock()
        server = SmtpServer(SessionConfig(hostname="mx.example.test", idle_timeout=0.01), clock=clock)
        transport = FakeTransport(("192.0.2.9", 1))
        conv = server.protocol()
        conv.connection_made(transport)
        first = conv._timer
        clock.t += 0.005
        conv.data_received(b"NOOP\r\n")           # the idle deadline moves 5 ms later: the timer stays
        kept = conv._timer is first
        for _ in range(20):
            await asyncio.sleep(0.005)              # it fires (more than once) before the deadline
        early = (conv._timer is not None and conv._timer is not first and not transport.closed)
        clock.t += 1.0                              # now the deadline has passed
        for _ in range(200):
            if transport.closed:
                break
            await asyncio.sleep(0.005)
        return kept, early, bytes(transport.out), transport.closed

    kept, early, out, closed = asyncio.run(main())
    assert kept and early
    assert out.endswith(b"250 Ok\r\n421 mx.example.test Error: timeout exceeded\r\n") and closed
