"""The SMTP server: runs sans-I/O sessions (smtp.session) on injected transports or streams.

Nothing here opens a socket by itself.  Two ways to serve, with the same
conversation (``_Conversation``: the session's replies out, the client's
bytes in, its events acted on) and the same behaviour:

- ``SmtpServer.protocol`` is an ``asyncio.Protocol`` factory for
  ``loop.create_server`` or netstack's ``streams.create_server``: the
  conversation runs straight on the transport's callbacks, a reply written
  from the callback that delivered its command (no task to wake per
  command).  This is how ``netstack serve`` and ``smtp_server`` serve.
- ``SmtpServer.handle(reader, writer)`` is a connection handler with the
  signature of ``asyncio.start_server``'s callback and works with any stream
  pair offering ``read``, ``write``, ``drain``, ``close``, ``wait_closed``
  and ``get_extra_info('peername')``: a small read loop feeds the same
  conversation.

To listen::

    from netstack.sockets import streams
    server = SmtpServer(SessionConfig(hostname="mx.example.test"), maildir="./mail")
    loop = asyncio.get_running_loop()
    srv = await server.start_protocol(functools.partial(loop.create_server, host="127.0.0.1", port=2525))  # kernel
    srv = await server.start_protocol(functools.partial(streams.create_server, stack, port=25))           # netstack
    srv = await server.start(functools.partial(streams.start_server, stack, port=25))      # on stream pairs

(``netstack.cli.serve_smtp`` does the second for ``netstack serve``.)

STARTTLS (RFC 3207) swaps the plaintext stream for a ``smtp.tls.TlsStream``
over the same reader/writer, so TLS works on any stream pair; a conversation
running as a protocol first moves onto asyncio streams over its transport
(``transport.set_protocol``) and goes on there.

One log line per accepted message (logger ``smtp.server``, INFO)::

    queued 3F2A9C01DE client=127.0.0.1:40211 from=<a@x> to=<b@localhost>,<c@localhost> size=2048

Connection limit and slow clients: at most ``max_connections`` sessions run
at once.  When a new connection finds the server full, the session that has
made no progress for longest (``SmtpSession.stalled_since``: no complete
command line, or a message below the minimum data rate) gives up its slot
with ``421 4.3.2``, if it has been stalled at least ``shed_after`` seconds;
otherwise the newcomer gets ``421 4.3.2`` itself.  With the session's own
time defences (per-line deadline, minimum data rate, session deadline), a
crowd of clients trickling bytes can delay a normal delivery by at most
``shed_after`` seconds, not hold the server.  Sessions waiting for us
(delivery, AUTH, TLS) are never shed.

Per-address limit: at most ``max_per_ip`` sessions from one client address
(0: no limit).  A connection beyond it, or one that finds the server full
with no stalled session to shed, is answered ``421 4.7.0`` with the reason,
counted (``refused_per_ip``, ``connections_refused``) and closed.

Delivery runs in a pool of ``delivery_workers`` threads, never in the event
loop (``smtp.workers``: results reach the loop in batches, one wake-up for
the deliveries that end together); ``smtp.delivery.MaildirDelivery`` shares
one directory fsync among the deliveries renamed before it (group commit).  The 250 is sent when the
delivery has returned, i.e. when the message is durable.

Graceful shutdown (``await server.shutdown(drain_seconds)``, what SIGTERM
runs): the listeners stop accepting; a session between transactions gets
``421 4.3.2`` and is closed at once; a session whose message is under way
(in DATA or BDAT, or waiting for its delivery) may finish it, and its next
command is answered ``421 4.3.2`` (QUIT still gets its 221).  At the
deadline the sessions still open are closed; a delivery already running is
always waited for, so a message is either in ``new/`` with its 250 sent,
or not in ``new/`` at all (or, if the client vanished meanwhile, in
``new/`` without a 250: delivered, never lost, never half-written).

Run on kernel streams for tests and comparison: ``python -m netstack.cli.smtp_server --port 2525
--maildir DIR``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import itertools
import logging
import os
import ssl
import time

from .delivery import MaildirDelivery, MemorySink
from .replies import reply
from .session import AuthRequest, Close, MessageReady, SessionConfig, SmtpSession, StartTlsRequest
from .tls import TlsStream, set_nodelay
from .workers import WorkerPool

log = logging.getLogger("smtp.server")

READ_SIZE = 65536


_QID_SEQ = itertools.count()


def new_queue_id() -> str:
    """A queue id unique on this host, across processes (``netstack serve --workers``): 19 hex
    digits, the time in seconds, the process id and a per-process sequence number, as Postfix
    builds its long queue ids from time and inode.  Two processes never share a PID at one time,
    and one process issues at most 2^20 ids in a second before its sequence wraps."""
    return f"{int(time.time()) & 0xFFFFFFFF:08X}{os.getpid() & 0x3FFFFF:06X}{next(_QID_SEQ) & 0xFFFFF:05X}"


class _Conversation(asyncio.Protocol):
    """One connection's conversation, driven by callbacks: the session's replies out, the
    client's bytes in (``data_received``), its events acted on in order.

    As an ``asyncio.Protocol`` it runs straight on a transport (:meth:`SmtpServer.protocol`,
    ``loop.create_server`` or netstack's ``create_server``): a command's reply is written from
    the callback that delivered the command, with no task to wake.  On a stream pair
    (:meth:`SmtpServer.handle`) a small read loop feeds it the same way.  STARTTLS moves a
    transport's conversation onto streams (a ``StreamReader`` over the same transport) and
    carries on there under TLS (``smtp.tls.TlsStream``).

    While the session waits for us (a delivery, an AUTH check, the TLS handshake) reading is
    paused, so the client's pipelined input stays in TCP's receive buffer and its window closes
    (as the stream driver never reads then).  The session's deadlines run on one loop timer,
    moved lazily: a session's deadline mostly moves later (every command restarts its line and
    idle clocks), so the timer set stays at or before it, and a timer that fires early is set
    again for the deadline as it is then."""

    def __init__(self, server: "SmtpServer") -> None:
        self.server = server
        self.transport = None             # a transport, or a _StreamLink in stream mode
        self.session: SmtpSession | None = None
        self.peer: tuple = ("unknown", 0)
        self.ip = "unknown"
        self._events: list = []           # the session's events not yet acted on
        self._busy = False                # an event is being answered (delivery, AUTH, TLS)
        self._ended = False
        self._counted = False             # in server.active / _per_ip
        self._reading_paused = False      # we paused the transport's reading
        self._writing_paused = False      # the transport's buffer is above its high-water mark
        self._write = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0        # the session deadline the timer was set for
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None    # stream mode: the read loop
        self._cancelled = False           # we cancelled that task (end of the conversation)
        self._wakeup: asyncio.Future | None = None
        self._held_reading = None         # a transport whose reading waits for the STARTTLS 220 to drain
        self._want_tls = False
        self._tls: TlsStream | None = None
        self._gone = False                # the peer went away while a delivery ran
        self._how = "closed"

    # ------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport) -> None:
        server = self.server
        self.transport = transport
        self._write = transport.write
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername") or ("unknown", 0)
        self.peer = tuple(peer[:2]) if isinstance(peer, (tuple, list)) else (str(peer), 0)
        self.ip = str(self.peer[0])
        self._counted = True
        server._opened(self.ip)
        refusal = server._admission(self.ip)
        if refusal is not None:
            self._ended = True
            transport.write(refusal)
            if self._task is None:        # (stream mode: handle() drains and closes)
                transport.close()
            return
        set_nodelay(transport)
        session = self.session = SmtpSession(server.config, peer=self.peer, now=server.clock())
        server._running[session] = self
        self._advance()

    def data_received(self, data) -> None:
        if self._ended:
            return
        self._events += self.session.receive_data(data, self.server.clock())
        self._advance()

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc) -> None:
        if exc is not None:
            log.debug("connection from %s:%s ended: %s", self.peer[0], self.peer[1], exc)
        self._lost()
        self._uncount()

    def pause_writing(self) -> None:
        """The client does not read its replies: read no more commands (what the stream driver's
        drain() does) until the transport's buffer has gone down."""
        self._writing_paused = True
        self._pause(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._busy:
            self._pause(False)

    # ------------------------------------------------------------- the conversation

    def _advance(self) -> None:
        """Write what the session queued and act on its events in order, until it needs input
        (then read, with its deadline set) or waits for us."""
        session = self.session
        server = self.server
        while True:
            out = session.data_to_send()
            if out:
                self._write(out)
            if self._busy or self._ended:
                return
            events = self._events
            if events:
                event = events.pop(0)
                if isinstance(event, MessageReady):
                    self._deliver(event.envelope)
                elif isinstance(event, Close):
                    self._end()
                    return
                elif isinstance(event, AuthRequest):
                    self._check_auth(event)
                elif isinstance(event, StartTlsRequest):
                    self._starttls()
                continue
            if session.closed or server._hard_stop or session not in server._running:
                self._end()                   # (shutdown: past the drain deadline)
                return
            break
        if self._reading_paused and not self._writing_paused:
            self._pause(False)
        self._arm()

    def _wait_for_driver(self) -> None:
        self._busy = True
        self._pause(True)

    def _answered(self, events: list) -> None:
        """The driver's answer (delivery, AUTH, TLS) is in: carry on (or end, if the client
        went away meanwhile)."""
        self._busy = False
        if self._gone:
            self.session.connection_lost()
            self._end()
            return
        self._events += events
        if not self._ended:
            self._advance()

    def _deliver(self, env) -> None:
        server = self.server
        qid = new_queue_id()
        if not server.delivery.blocking:
            try:
                server.delivery.deliver(env, qid)
            except Exception as exc:   # noqa: BLE001 - any failure is a 451, never a lost 250
                self._events += server._delivery_outcome(self.session, env, qid, exc)
                return
            self._events += server._delivery_outcome(self.session, env, qid, None)
            return
        self._wait_for_driver()
        # the delivery runs to its end even if this conversation ends meanwhile (shed, shutdown)
        server._delivery_pool().call(server.delivery.deliver, (env, qid),
                                     lambda result, exc: self._delivery_done(env, qid, exc))

    def _delivery_done(self, env, qid: str, exc: BaseException | None) -> None:
        """A blocking delivery returned (``exc`` None) or raised: its 250, 451 or 452, and on.  If
        answering it fails (a bug), the conversation ends (the connection closes without a reply,
        so the client tries again later) rather than wait for an answer that never comes, which
        a shutdown would wait for forever; the error goes on to the worker pool, which reports it."""
        try:
            self._answered(self.server._delivery_outcome(self.session, env, qid, exc))
        except BaseException:
            self._end("error answering a delivery")
            raise

    def _check_auth(self, event: AuthRequest) -> None:
        self._wait_for_driver()
        fut = self._loop.run_in_executor(None, self.server.users.verify, event.username, event.password)

        def done(f):
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                log.warning("AUTH check for %s failed: %s", self.peer[0], exc)
            ok = exc is None and bool(f.result())
            self._answered(self.session.auth_result(ok, self.server.clock(), event.username))

        fut.add_done_callback(done)

    def _starttls(self) -> None:
        """RFC 3207: the 220, then the handshake, in the stream read loop (started here when the
        conversation runs on a transport).  A transport whose writing is paused (the client does
        not read its replies) moves on paused: the stream protocol installed on it is paused too,
        so the 220's drain() waits for the transport's resume_writing(), and reading resumes only
        once the 220 has drained."""
        server = self.server
        if server.tls_context is None:
            self._events += self.session.starttls_refused(server.clock())
            return
        self._wait_for_driver()
        self._want_tls = True
        if self._task is None:
            loop = self._loop
            reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
            proto = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport = self.transport
            transport.set_protocol(proto)
            proto.connection_made(transport)
            writer = asyncio.StreamWriter(transport, proto, reader, loop)
            held = self._writing_paused
            if held:
                # the transport's buffer is above its high-water mark: its resume_writing() now
                # goes to proto, which must be paused too (so drain() waits and that call is
                # balanced); from here on the read loop drains before it reads
                proto.pause_writing()
                self._writing_paused = False
            if self._reading_paused:
                self._reading_paused = False
                if held:
                    self._held_reading = transport    # resumed once the 220 has gone (_handshake)
                else:
                    transport.resume_reading()
            link = _StreamLink(writer)
            self.transport, self._write = link, link.write
            self._task = loop.create_task(self._run_streams(reader, writer))
        else:
            self._wake()

    def _arm(self) -> None:
        """The session reads: its deadline on the timer (moved only when it comes earlier)."""
        deadline = self.session.next_deadline()
        if deadline is None or (self._timer is not None and deadline >= self._timer_deadline):
            return                    # none, or the timer set fires first
        if self._timer is not None:
            self._timer.cancel()
        self._timer_deadline = deadline
        loop = self._loop
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - self.server.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._ended or self._busy:
            return                    # the next _advance sets it again
        session = self.session
        deadline = session.next_deadline()
        if deadline is None:
            return
        now = self.server.clock()
        if deadline > now:            # the deadline moved on since the timer was set
            self._arm()
            return
        self._events += session.poll(now)
        self._advance()

    def _pause(self, paused: bool) -> None:
        if paused == self._reading_paused or self._ended:
            return
        self._reading_paused = paused
        if self._task is not None:
            if not paused:
                self._wake()
            return
        transport = self.transport
        try:
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()
        except (AttributeError, RuntimeError):
            pass

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    def _end(self, how: str = "closed") -> None:
        """The conversation is over: close the connection (after what was written)."""
        if self._ended:
            return
        self._ended = True
        self._how = how
        server = self.server
        if self.session is not None and server._running.pop(self.session, None) is not None:
            if server._idle_event is not None and not server._running:
                server._idle_event.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None:
            if task is not asyncio.current_task():
                self._cancelled = True
                task.cancel()         # its read loop ends quietly and closes the streams
            return
        self.transport.close()

    def _lost(self) -> None:
        """The peer went away (EOF, reset): an unfinished transaction is dropped.  A delivery
        under way finishes first (the session still waits for it, so a shutdown waits too)."""
        if self._ended:
            return
        session = self.session
        if session is not None and session.waiting == "deliver":
            self._gone = True
            self._events.clear()
            return
        if session is not None and not session.closed:
            session.connection_lost()
        self._end()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.server._closed(self.ip)

    # ------------------------------------------------------------- stream mode

    async def _run_streams(self, reader, writer) -> None:
        """Read the client's bytes from a stream pair into the conversation (stream mode), and
        run the TLS handshake when STARTTLS asks for it.  Ends with the conversation."""
        read = reader.read
        transport = getattr(writer, "transport", None)
        buffered = transport.get_write_buffer_size if transport is not None else None
        loop = self._loop
        peer = self.peer
        try:
            while not self._ended:
                if self._want_tls:
                    self._want_tls = False
                    read = await self._handshake(reader, writer)
                    if read is None:
                        self._lost()
                        break
                    if self._tls is not None:
                        buffered = None
                    continue
                if self._reading_paused:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    self._wakeup = None
                    continue
                if buffered is None or buffered():
                    await (writer.drain() if self._tls is None else self._tls.drain())
                data = await read(READ_SIZE)
                if not data:
                    self._lost()
                    break
                self.data_received(data)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("connection from %s:%s ended: %s", peer[0], peer[1], exc)
            self._lost()
        except asyncio.CancelledError:
            if not self._cancelled:
                self._lost()
                raise
            self._cancelled = False
            asyncio.current_task().uncancel()
            if self._how != "closed":
                log.info("session with %s:%s closed by the server (%s)", peer[0], peer[1], self._how)
        finally:
            if not self._ended:
                self._end()
            if self._tls is not None:
                self._tls.close()     # close_notify (RFC 8446 §6.1) before the TCP close
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError, ssl.SSLError):
                pass
            self._uncount()

    def _release_reading(self) -> None:
        """Resume the reading that STARTTLS held while the client did not read its replies."""
        transport, self._held_reading = self._held_reading, None
        if transport is not None:
            transport.resume_reading()

    async def _handshake(self, reader, writer):
        """STARTTLS accepted: the 220 in plaintext, then the handshake.  Returns the read
        function from now on, or None when the handshake failed (the conversation ends)."""
        server = self.server
        session = self.session
        try:
            tls = TlsStream(reader, writer, server.tls_context, server_side=True)
        except (ssl.SSLError, ValueError, TypeError) as exc:
            log.warning("cannot start TLS: %s", exc)
            self._release_reading()
            self._answered(session.starttls_refused(server.clock()))
            return reader.read
        session.starttls_accepted(server.clock())
        self._write(session.data_to_send())          # the 220, in plaintext
        await writer.drain()
        self._release_reading()                      # the client's handshake may come in
        try:
            async with asyncio.timeout(server.handshake_timeout):
                await tls.handshake()
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("TLS handshake with %s:%s failed: %s", self.peer[0], self.peer[1], exc)
            return None
        self._tls = tls
        self._write = tls.write
        self._reading_paused = False
        self._answered(session.tls_established(tls.version() or "TLS", (tls.cipher() or ("?",))[0],
                                               server.clock()))
        return tls.read


class _StreamLink:
    """The transport of a conversation in stream mode: writes go to the writer of the stream
    pair (reading and closing are the read loop's: ``_run_streams``)."""

    __slots__ = ("writer", "write")

    def __init__(self, writer) -> None:
        self.writer = writer
        self.write = writer.write

    def get_extra_info(self, name, default=None):
        return self.writer.get_extra_info(name, default)


class SmtpServer:
    """Serves SMTP sessions on any asyncio-style stream pair.

    ``delivery`` is any object with ``deliver(envelope, queue_id)`` (raise to
    refuse with 451 4.3.0) and ``blocking`` (True: run it in a worker thread).
    Default: ``MaildirDelivery(maildir)`` when ``maildir`` is given, else an
    in-memory sink.  A delivery failing for lack of space (ENOSPC, EDQUOT) is
    answered ``452 4.3.1`` (RFC 3463: mail system full), any other ``451 4.3.0``.

    ``max_connections``: sessions at once; ``shed_after``: how long a session
    must have been stalled before a newcomer may take its slot when full
    (0: never shed, refuse the newcomer).  ``sessions_shed`` and
    ``connections_refused`` count both outcomes.  ``max_per_ip``: sessions
    at once from one address (0: any); ``refused_per_ip`` counts the
    connections refused for it (they count in ``connections_refused`` too).
    ``delivery_workers``: threads running blocking deliveries.
    """

    def __init__(self, config: SessionConfig | None = None, *, delivery=None, maildir: str | None = None,
                 tls_context: ssl.SSLContext | None = None, users=None, clock=time.monotonic,
                 max_connections: int = 500, handshake_timeout: float = 30.0, shed_after: float = 2.0,
                 max_per_ip: int = 0, delivery_workers: int = 16):
        config = config or SessionConfig()
        config = dataclasses.replace(config, tls_available=tls_context is not None,
                                     auth_available=users is not None and len(users) > 0)
        self.config = config
        if delivery is None:
            delivery = (MaildirDelivery(maildir, hostname=config.hostname, software=config.software)
                        if maildir else MemorySink())
        self.delivery = delivery
        self.tls_context = tls_context
        self.users = users
        self.clock = clock
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.shed_after = shed_after
        self.active = 0
        self.accepted = 0
        self.sessions_shed = 0
        self.connections_refused = 0
        self.max_per_ip = max_per_ip
        self.refused_per_ip = 0
        self.refused_shutting_down = 0
        self.delivery_workers = delivery_workers
        self.shutting_down = False
        self._hard_stop = False
        self._per_ip: dict[str, int] = {}
        self._listeners: list = []
        self._pool: WorkerPool | None = None
        self._idle_event: asyncio.Event | None = None
        #: running sessions -> the conversation serving each
        self._running: dict[SmtpSession, _Conversation] = {}

    async def start(self, starter):
        """``starter(handler)`` -> awaitable listening server (e.g. a partial of asyncio.start_server):
        the conversations run on its stream pairs (:meth:`handle`)."""
        srv = await starter(self.handle)
        self._listeners.append(srv)
        return srv

    async def start_protocol(self, creator):
        """``creator(protocol_factory)`` -> awaitable listening server, e.g. a partial of
        ``loop.create_server`` or of ``netstack.sockets.streams.create_server``: the
        conversations run as protocols straight on its transports (:meth:`protocol`), the fast
        way; STARTTLS moves one onto streams over its transport."""
        srv = await creator(self.protocol)
        self._listeners.append(srv)
        return srv

    def protocol(self) -> asyncio.Protocol:
        """A protocol for one connection (a protocol factory for ``create_server``)."""
        return _Conversation(self)

    async def handle(self, reader, writer) -> None:
        """One connection on a stream pair, start to finish (the signature of
        ``asyncio.start_server``'s callback). Never raises."""
        conv = _Conversation(self)
        conv._task = asyncio.current_task()
        link = _StreamLink(writer)
        try:
            conv.connection_made(link)
            if conv.session is None:              # refused
                conv._uncount()
                try:
                    await writer.drain()
                    writer.close()
                    await writer.wait_closed()
                except (ConnectionError, OSError, ssl.SSLError):
                    pass
                return
            await conv._run_streams(reader, writer)
        except asyncio.CancelledError:
            raise
        except Exception:   # noqa: BLE001 - a bug in one session must not kill the server
            log.exception("session with %s:%s failed", conv.peer[0], conv.peer[1])
            conv._end()
            conv._uncount()
            try:
                writer.close()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

    def _opened(self, ip: str) -> None:
        self.active += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1

    def _closed(self, ip: str) -> None:
        self.active -= 1
        left = self._per_ip.get(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)
        if self._idle_event is not None and not self._running:
            self._idle_event.set()

    def _admission(self, ip: str) -> bytes | None:
        """None to serve a new connection, else the 421 that refuses it (counted)."""
        host = self.config.hostname
        if self.shutting_down:
            self.connections_refused += 1
            self.refused_shutting_down += 1
            return reply(421, "4.3.2", f"{host} Service shutting down, try again later").encode(True)
        if self.max_per_ip and self._per_ip[ip] > self.max_per_ip:
            self.connections_refused += 1
            self.refused_per_ip += 1
            log.info("connection from %s refused: %d sessions from that address already", ip, self.max_per_ip)
            return reply(421, "4.7.0", f"{host} Error: too many connections from your address "
                                       f"(at most {self.max_per_ip}), try again later").encode(True)
        if self.active > self.max_connections and not self._shed_one():
            self.connections_refused += 1
            log.info("connection from %s refused: %d sessions open (the limit)", ip, self.max_connections)
            return reply(421, "4.7.0", f"{host} Error: too many connections (at most {self.max_connections}), "
                                       "try again later").encode(True)
        return None

    async def shutdown(self, drain_seconds: float = 10.0) -> None:
        """Graceful shutdown (see the module docstring): stop accepting, 421 4.3.2 to sessions between
        transactions, let those inside one finish for up to ``drain_seconds``, then close the rest."""
        self.shutting_down = True
        for srv in self._listeners:
            srv.close()
        now = self.clock()
        self._idle_event = asyncio.Event()
        for session, conv in list(self._running.items()):
            session.begin_shutdown(now)
            if session.closed:
                self._close_conversation(conv, "shutdown")
        if self._running:
            try:
                async with asyncio.timeout(max(0.0, drain_seconds)):
                    while self._running:
                        self._idle_event.clear()
                        await self._idle_event.wait()
            except TimeoutError:
                pass
        self._hard_stop = True
        for session, conv in list(self._running.items()):
            if session.waiting != "deliver":         # a running delivery is always waited for
                session.connection_lost()
                conv._end("shutdown")
        while self._running:                          # only deliveries in flight remain
            self._idle_event.clear()
            await self._idle_event.wait()
        for srv in self._listeners:
            await srv.wait_closed()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @staticmethod
    def _close_conversation(conv: _Conversation, how: str) -> None:
        """Send what the session has queued (its 421) and end the conversation quietly."""
        try:
            conv._write(conv.session.data_to_send())
        except (ConnectionError, OSError, ssl.SSLError, RuntimeError):
            pass
        conv._end(how)

    def _shed_one(self) -> bool:
        """Full: close the longest-stalled session (stalled >= ``shed_after``) with 421 4.3.2."""
        if self.shed_after <= 0:
            return False
        now = self.clock()
        victim, oldest = None, now - self.shed_after
        for session in self._running:
            since = session.stalled_since
            if since is not None and since <= oldest:
                victim, oldest = session, since
        if victim is None:
            return False
        victim.shed(now)
        self._close_conversation(self._running[victim], "shed for a new connection")
        self.sessions_shed += 1
        return True

    def _delivery_pool(self) -> WorkerPool:
        pool = self._pool
        if pool is None or pool.loop not in (None, asyncio.get_running_loop()):
            if pool is not None:          # served an earlier event loop: its threads may go
                pool.shutdown(wait=False)
            pool = self._pool = WorkerPool(self.delivery_workers, name="smtp-delivery")
        return pool

    def _delivery_outcome(self, session: SmtpSession, env, qid: str, exc: BaseException | None) -> list:
        """The session's answer to a delivery that returned (250) or raised ``exc`` (451, or 452 for
        a full disk).  A delivery that raised a ``BaseException`` that is not an ``Exception``
        (``SystemExit``, ``KeyboardInterrupt`` raised by its code in a worker thread) failed like
        any other: 451 4.3.0, logged as an error with its traceback; the server goes on."""
        if exc is not None:
            if not isinstance(exc, Exception):
                log.error("delivery of %s from %s raised %r", qid, env.peer[0], exc,
                          exc_info=(type(exc), exc, exc.__traceback__))
            else:
                log.warning("delivery of %s from %s failed: %s", qid, env.peer[0], exc)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return session.delivery_failed(self.clock(), reply(452, "4.3.1", "Error: insufficient system "
                                                                               "storage, try again later"))
            return session.delivery_failed(self.clock())
        self.accepted += 1
        if log.isEnabledFor(logging.INFO):
            log.info("queued %s client=%s:%s from=<%s> to=%s size=%d", qid, env.peer[0], env.peer[1],
                     env.mail_from, ",".join(f"<{r}>" for r in env.rcpt_tos), len(env.content))
        return session.delivered(qid, self.clock())
