"""The server's read deadlines: one lazily moved timer per session, not one per command."""
from __future__ import annotations

import asyncio
import time

from smtp.server import SmtpServer, _ReadDeadline
from smtp.session import SessionConfig
from tests.support.smtp_fakes import FakeClock, _open, _settle


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


class _Session:
    def __init__(self, deadline):
        self.deadline = deadline

    def next_deadline(self):
        return self.deadline


def test_a_timer_that_fires_before_the_deadline_is_set_again_and_cancels_only_when_due():
    """The deadline moved later after the timer was set (a command restarted it): the early timer
    sets itself for the new deadline; when that has come the waiting task is cancelled, and the
    read site learns that the cancellation was the deadline's."""
    async def main():
        clock = FakeClock()
        session = _Session(clock.t + 0.01)
        watch = _ReadDeadline(session, clock)
        loop = asyncio.get_running_loop()
        never = loop.create_future()
        watch.reading(session.deadline)
        session.deadline = clock.t + 0.02            # moved on: the timer (at +0.01) fires early
        try:
            await asyncio.wait_for(asyncio.shield(never), 0.05)
        except TimeoutError:
            pass
        early = watch.handle is not None and not watch.fired
        clock.t += 1.0                               # now the deadline has passed
        try:
            await never
        except asyncio.CancelledError:
            return early, watch.expired()
        finally:
            watch.done()
            watch.close()
        return early, None

    early, ours = asyncio.run(main())
    assert early                 # still waiting, timer set again
    assert ours is True          # cancelled by the deadline, and uncancelled for the read site
