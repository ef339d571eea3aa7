"""SMTP availability under abuse, sans-I/O with a fake clock: the time defences against slow
clients (per-line deadline, minimum data rate, session deadline), fair error counting (452 is
flow control), long lines inside DATA (refused with 500 5.5.2, memory bounded), and the server
shedding its longest-stalled session when full."""
from __future__ import annotations

import asyncio
import errno
import tracemalloc

from smtp.server import SmtpServer
from smtp.session import Close, MessageReady, SessionConfig, SmtpSession
from tests.support.smtp_fakes import FakeClock, _open, _settle

PEER = ("192.0.2.7", 40000)


def make(now: float = 0.0, **kw) -> SmtpSession:
    kw.setdefault("hostname", "mx.example.test")
    s = SmtpSession(SessionConfig(**kw), peer=PEER, now=now)
    s.data_to_send()
    return s


def talk(s: SmtpSession, data: bytes, now: float):
    events = s.receive_data(data, now)
    return s.data_to_send().decode("utf-8", "replace").split("\r\n")[:-1], events


def ready(s: SmtpSession, now: float = 0.0, rcpts: int = 1) -> None:
    out, _ = talk(s, b"EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\n"
                  + b"RCPT TO:<bob@example.test>\r\n" * rcpts, now)
    assert out[-1] == "250 2.1.5 Ok", out


def closes(events) -> list[str]:
    return [e.reason for e in events if isinstance(e, Close)]


# ------------------------------------------------------------------ the per-line deadline


def test_trickled_command_line_is_cut_at_the_line_deadline_though_bytes_keep_coming():
    s = make(line_timeout=10.0, idle_timeout=300.0)
    line = b"EHLO a-rather-long-client-name.example.test\r\n"
    replies, events, t = [], [], 100.0
    for i, byte in enumerate(line):             # one byte a second, never a poll(): only receive_data
        out, ev = talk(s, bytes([byte]), now=t + i)
        replies += out
        events += ev
        if s.closed:
            break
    assert replies == ["421 mx.example.test Error: command line not completed in time"]   # no ESC before EHLO
    assert closes(events) == ["line timeout"]
    assert i == 10                              # the byte at first-byte + 10 s found the deadline passed


def test_line_deadline_restarts_per_line_and_is_off_when_nothing_is_pending():
    s = make(line_timeout=10.0, idle_timeout=300.0)
    assert talk(s, b"NO", now=0.0) == ([], [])
    assert s.next_deadline() == 10.0
    out, _ = talk(s, b"OP\r\nNO", now=9.0)      # completes in time; the next line starts now
    assert out == ["250 Ok"]
    assert s.next_deadline() == 19.0
    out, _ = talk(s, b"OP\r\n", now=18.0)
    assert out == ["250 Ok"]
    assert s.next_deadline() == 318.0           # nothing pending: only the idle deadline
    assert s.poll(s.next_deadline() - 0.001) == []


def test_partial_line_bytes_do_not_reset_the_idle_timer():
    s = make(line_timeout=0, idle_timeout=30.0)     # line deadline off: idle still ends a trickle
    out, ev = [], []
    for t in range(0, 40):
        o, e = talk(s, b"x", now=float(t))
        out += o
        ev += e
        if s.closed:
            break
    assert out == ["421 mx.example.test Error: timeout exceeded"] and closes(ev) == ["idle timeout"]
    assert t == 30


def test_over_long_command_line_still_has_a_deadline():
    s = make(line_timeout=5.0, max_line_length=512)
    talk(s, b"x" * 600, now=0.0)                # discarded as too long, but still the same line
    assert s.next_deadline() == 5.0
    out, ev = talk(s, b"x", now=5.0)
    assert closes(ev) == ["line timeout"]


# ------------------------------------------------------------------ the minimum data rate


def test_data_below_the_minimum_rate_gets_421_442():
    s = make(min_data_rate=1024.0, data_rate_window=30.0, idle_timeout=300.0)
    ready(s)
    talk(s, b"DATA\r\n", now=1.0)
    ev_all, out_all = [], []
    for t in range(2, 40):                      # 100 octets a second < 1 KB/s
        out, ev = talk(s, b"y" * 98 + b"\r\n", now=float(t))
        out_all += out
        ev_all += ev
        if s.closed:
            break
    assert out_all == ["421 4.4.2 mx.example.test Error: minimum data rate not met (1024 octets/s)"]
    assert closes(ev_all) == ["data rate"] and t == 31


def test_silent_client_in_data_fails_the_rate_at_the_window_end_via_poll():
    s = make(min_data_rate=1024.0, data_rate_window=30.0)
    ready(s)
    talk(s, b"DATA\r\n", now=1.0)
    assert s.next_deadline() == 31.0
    assert closes(s.poll(31.0)) == ["data rate"]


def test_data_at_the_minimum_rate_passes_window_after_window():
    s = make(min_data_rate=1024.0, data_rate_window=30.0, max_message_size=10**7)
    ready(s)
    talk(s, b"DATA\r\n", now=0.0)
    for t in range(1, 100):                     # 2 KB/s for 99 s: three windows checked
        out, ev = talk(s, (b"z" * 510 + b"\r\n") * 4, now=float(t))
        assert out == [] and ev == []
        assert s.poll(float(t)) == []
    out, ev = talk(s, b".\r\n", now=100.0)
    assert len([e for e in ev if isinstance(e, MessageReady)]) == 1


def test_bdat_below_the_minimum_rate_gets_421():
    s = make(min_data_rate=1000.0, data_rate_window=10.0)
    ready(s)
    talk(s, b"BDAT 100000 LAST\r\n", now=0.0)
    for t in range(1, 20):
        out, ev = talk(s, b"b" * 100, now=float(t))
        if s.closed:
            break
    assert out == ["421 4.4.2 mx.example.test Error: minimum data rate not met (1000 octets/s)"] and t == 10


def test_rate_window_is_not_running_outside_a_message():
    s = make(min_data_rate=1024.0, data_rate_window=30.0, idle_timeout=300.0)
    ready(s)
    talk(s, b"DATA\r\nshort\r\n.\r\n", now=1.0)
    s.delivered("Q1", 2.0)
    assert s.next_deadline() == 302.0


# ------------------------------------------------------------------ the session deadline


def test_session_deadline_ends_even_a_busy_session():
    s = make(session_timeout=60.0, idle_timeout=300.0)
    talk(s, b"EHLO c.test\r\n", now=0.0)
    out_all, ev_all = [], []
    for t in range(0, 70):
        out, ev = talk(s, b"NOOP\r\n", now=float(t))
        out_all += out
        ev_all += ev
        if s.closed:
            break
    assert out_all[-1] == "421 4.4.2 mx.example.test Error: session time limit exceeded"
    assert out_all[:-1] == ["250 2.0.0 Ok"] * 60 and closes(ev_all) == ["session timeout"]


def test_no_deadline_runs_while_the_driver_delivers():
    s = make(line_timeout=5.0, session_timeout=0, idle_timeout=30.0)
    ready(s)
    out, ev = talk(s, b"DATA\r\nx\r\n.\r\nNO", now=1.0)     # pipelined partial line behind the message
    assert isinstance(ev[0], MessageReady) and s.next_deadline() is None
    assert s.poll(1000.0) == []
    s.delivered("Q", 1000.0)                    # a slow disk is not the client's fault
    assert s.next_deadline() == 1005.0          # the pending line's deadline starts now


# ------------------------------------------------------------------ fair error counting


def test_110_recipients_get_452_without_counting_as_errors():
    s = make(max_recipients=100, max_errors=10)
    talk(s, b"EHLO c.test\r\nMAIL FROM:<a@remote.test>\r\n", now=0.0)
    out, ev = talk(s, b"".join(b"RCPT TO:<u%d@example.test>\r\n" % i for i in range(110)), now=1.0)
    assert out == ["250 2.1.5 Ok"] * 100 + ["452 4.5.3 Error: too many recipients"] * 10
    assert not s.closed and s.errors == 0
    out, ev = talk(s, b"DATA\r\nhello\r\n.\r\n", now=2.0)
    (msg,) = [e for e in ev if isinstance(e, MessageReady)]
    assert len(msg.envelope.rcpt_tos) == 100


def test_syntax_and_sequence_errors_still_count():
    s = make(max_errors=3)
    out, ev = talk(s, b"EHLO c.test\r\nRCPT TO:<b@example.test>\r\nMAIL FROM:bad\r\nBOGUS\r\nNOOP\r\n", now=0.0)
    assert out[-4:] == ["503 5.5.1 Error: need MAIL command", "501 5.1.7 Bad sender address syntax: "
                        "path must be enclosed in <>", "500 5.5.2 Error: command not recognized",
                        "421 4.7.0 mx.example.test Error: too many errors"]
    assert closes(ev) == ["too many errors"]


def test_452_for_insufficient_storage_is_not_counted():
    from smtp.replies import reply
    s = make(max_errors=1)
    ready(s)
    out, ev = talk(s, b"DATA\r\nx\r\n.\r\n", now=1.0)
    s.delivery_failed(2.0, reply(452, "4.3.1", "Error: insufficient system storage"))
    assert s.data_to_send() == b"452 4.3.1 Error: insufficient system storage\r\n"
    assert not s.closed and s.errors == 0


# ------------------------------------------------------------------ long lines in DATA


def _data_reply(s: SmtpSession, body: bytes, chunk: int | None = None):
    ready(s)
    talk(s, b"DATA\r\n", now=1.0)
    wire = body + b"\r\n.\r\n"
    out_all, ev_all = [], []
    step = chunk or len(wire)
    for i in range(0, len(wire), step):
        out, ev = talk(s, wire[i:i + step], now=1.0)
        out_all += out
        ev_all += ev
    return out_all, ev_all


def test_a_1000_octet_line_is_accepted_and_1001_refused_with_500_552_after_the_message():
    s = make()
    out, ev = _data_reply(s, b"a" * 998)                    # 998 + CRLF = 1000 octets
    assert out == [] and len(ev) == 1 and isinstance(ev[0], MessageReady)
    s.delivered("Q", 1.0)
    s.data_to_send()
    out, ev = _data_reply(s, b"ok\r\n" + b"b" * 999 + b"\r\nmore\r\n")
    assert out == ["500 5.5.2 Error: line too long in message (at most 1000 octets with CRLF, "
                   "RFC 5321 4.5.3.1.6)"]
    assert ev == [] and not s.closed
    out, _ = talk(s, b"NOOP\r\n", now=2.0)                 # the session goes on
    assert out == ["250 2.0.0 Ok"]


def test_line_length_is_found_across_every_chunk_boundary():
    for chunk in (1, 2, 3, 7, 999, 1000, 1001):
        s = make()
        out, ev = _data_reply(s, b"x" * 998 + b"\r\n" + b"y" * 998, chunk)
        assert out == [] and isinstance(ev[0], MessageReady), chunk
        s = make()
        out, _ = _data_reply(s, b"x" * 998 + b"\r\n" + b"y" * 999, chunk)
        assert out[0].startswith("500 5.5.2 Error: line too long"), chunk


def test_a_dot_stuffed_or_bare_lf_line_is_measured_on_the_wire():
    s = make()
    out, _ = _data_reply(s, b"." + b"d" * 998)              # 1001 octets with its stuffing dot
    assert out[0].startswith("500 5.5.2")
    s = make()
    out, _ = _data_reply(s, b"e" * 600 + b"\n" + b"f" * 600)  # a bare LF does not end a line
    assert out[0].startswith("500 5.5.2")


def test_long_lines_allowed_when_the_limit_is_off():
    s = make(max_data_line_length=0, max_message_size=10**6)
    out, ev = _data_reply(s, b"g" * 100_000)
    assert out == [] and ev[0].envelope.content == b"g" * 100_000 + b"\r\n"


def test_a_10mb_line_without_crlf_holds_bounded_memory():
    s = make(max_message_size=32 * 1024 * 1024)
    ready(s)
    talk(s, b"DATA\r\n", now=1.0)
    block = b"L" * 65536
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(160):                                # 10 MiB, no CRLF anywhere
            out, ev = talk(s, block, now=1.0)
            assert out == [] and ev == []
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024, peak                          # a read or two, never the line
    out, ev = talk(s, b"\r\n.\r\n", now=1.0)
    assert out == ["500 5.5.2 Error: line too long in message (at most 1000 octets with CRLF, "
                   "RFC 5321 4.5.3.1.6)"] and ev == []


# ------------------------------------------------------------------ the server sheds a stalled session


def test_full_server_sheds_the_longest_stalled_session_for_a_newcomer():
    async def main():
        clock = FakeClock()
        server = SmtpServer(SessionConfig(hostname="mx.example.test"), clock=clock, max_connections=2,
                            shed_after=2.0)
        (r1, w1, t1), (r2, w2, t2) = _open(server, 1), _open(server, 2)
        await _settle()
        clock.t += 1.0
        r2.feed_data(b"NOOP\r\n")                        # session 2 makes progress at t+1
        await _settle()
        clock.t += 0.5
        r3, w3, t3 = _open(server, 3)                    # nobody stalled 2 s yet: refused
        await _settle()
        assert t3.done() and bytes(w3.out) == (b"421 4.7.0 mx.example.test Error: too many connections (at most 2), "
                                                b"try again later\r\n")
        assert server.connections_refused == 1
        clock.t += 2.0
        r4, w4, t4 = _open(server, 4)                    # session 1 stalled 3.5 s, session 2 2.5 s: 1 goes
        await _settle()
        assert t1.done() and w1.closed and t1.exception() is None
        assert bytes(w1.out).endswith(b"421 mx.example.test Error: server busy, closing a stalled session\r\n")
        assert not t2.done() and not t4.done() and server.sessions_shed == 1
        assert bytes(w4.out).startswith(b"220 ")
        r4.feed_data(b"QUIT\r\n")
        r2.feed_data(b"QUIT\r\n")
        await asyncio.wait_for(asyncio.gather(t2, t4), 5)
        assert server.active == 0

    asyncio.run(main())


def test_shedding_off_refuses_the_newcomer():
    async def main():
        clock = FakeClock()
        server = SmtpServer(SessionConfig(), clock=clock, max_connections=1, shed_after=0)
        r1, w1, t1 = _open(server, 1)
        await _settle()
        clock.t += 100.0
        r2, w2, t2 = _open(server, 2)
        await _settle()
        assert t2.done() and bytes(w2.out).startswith(b"421 4.7.0 localhost Error: too many connections") and not t1.done()
        r1.feed_eof()
        await asyncio.wait_for(t1, 5)

    asyncio.run(main())


def test_full_disk_is_452_431():
    class FullDisk:
        blocking = False

        def deliver(self, envelope, queue_id):
            raise OSError(errno.ENOSPC, "No space left on device")

    async def main():
        server = SmtpServer(SessionConfig(), delivery=FullDisk())
        r, w, t = _open(server, 1)
        r.feed_data(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<b@localhost>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
        await asyncio.wait_for(t, 5)
        assert b"452 4.3.1 Error: insufficient system storage, try again later\r\n" in bytes(w.out)

    asyncio.run(main())
