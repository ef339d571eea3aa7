"""The SMTP server: runs sans-I/O sessions (smtp.session) on injected streams.

Nothing here opens a socket by itself.  ``SmtpServer.handle(reader, writer)``
is a connection handler with the signature of ``asyncio.start_server``'s
callback and works with any stream pair offering ``read``, ``write``,
``drain``, ``close``, ``wait_closed`` and ``get_extra_info('peername')``:
asyncio's kernel streams or netstack's own.  To listen::

    from netstack.sockets import streams
    server = SmtpServer(SessionConfig(hostname="mx.example.test"), maildir="./mail")
    srv = await server.start(functools.partial(asyncio.start_server, host="127.0.0.1", port=2525))  # kernel
    srv = await server.start(functools.partial(streams.start_server, stack, port=25))              # netstack

(``netstack.cli.serve_smtp`` does the latter for ``netstack serve``.)

STARTTLS (RFC 3207) swaps the plaintext stream for a ``smtp.tls.TlsStream``
over the same reader/writer, so TLS works on any stream pair.

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
from .tls import PlainStream, TlsStream, set_nodelay
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


class _ReadDeadline:
    """A session's deadlines (SmtpSession.next_deadline) while the server waits to read: one loop
    timer per session, moved lazily.

    ``asyncio.timeout()`` around every read would make and cancel a timer per command.  A
    session's deadline mostly moves later (every command line restarts the line and idle
    clocks), so this keeps one timer at or before it: a timer that fires early is set again
    for the deadline as it is then.  A deadline that has come while the task waits in
    ``read()`` cancels the task, as ``asyncio.timeout()`` does; the read site asks
    :meth:`expired` whether that cancellation was ours (then it polls the session) or
    someone else's (shedding, shutdown: it propagates)."""

    __slots__ = ("session", "clock", "loop", "task", "handle", "at", "deadline", "waiting", "fired")

    def __init__(self, session: SmtpSession, clock) -> None:
        self.session = session
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.handle: asyncio.TimerHandle | None = None
        self.at = 0.0                 # loop time the timer is set for
        self.deadline = 0.0           # the session's deadline it was set for (the session's clock)
        self.waiting = False          # the task waits in read()
        self.fired = False            # we cancelled the task

    def reading(self, deadline: float | None) -> None:
        """The task is about to wait in read(); ``deadline`` on the session's clock, or None."""
        self.waiting = True
        if deadline is None or (self.handle is not None and deadline >= self.deadline):
            return                    # none, or the timer set fires first
        when = self.loop.time() + max(0.0, deadline - self.clock())
        if self.handle is not None:
            self.handle.cancel()
        self.at, self.deadline = when, deadline
        self.handle = self.loop.call_at(when, self._fire)

    def done(self) -> None:
        self.waiting = False

    def expired(self) -> bool:
        """In ``except CancelledError`` at the read: True if the cancellation was (only) ours."""
        if not self.fired:
            return False
        self.fired = False
        return self.task.uncancel() == 0

    def _fire(self) -> None:
        self.handle = None
        if not self.waiting or self.fired:
            return                    # not reading: the next read sets the timer again
        deadline = self.session.next_deadline()
        if deadline is None:
            return
        delay = deadline - self.clock()
        if delay > 0:                 # the deadline moved on since the timer was set
            self.at, self.deadline = self.loop.time() + delay, deadline
            self.handle = self.loop.call_at(self.at, self._fire)
            return
        self.fired = True
        self.task.cancel()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


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
        #: running sessions -> (the stream box, the task serving it)
        self._running: dict[SmtpSession, tuple[list, asyncio.Task | None]] = {}
        self._shed_tasks: set = set()

    async def start(self, starter):
        """``starter(handler)`` -> awaitable listening server (e.g. a partial of asyncio.start_server)."""
        srv = await starter(self.handle)
        self._listeners.append(srv)
        return srv

    async def handle(self, reader, writer) -> None:
        """One connection, start to finish. Never raises."""
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        peer = tuple(peer[:2]) if isinstance(peer, (tuple, list)) else (str(peer), 0)
        ip = str(peer[0])
        self.active += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        try:
            refusal = self._admission(ip)
            if refusal is not None:
                writer.write(refusal)
                await writer.drain()
                return
            set_nodelay(writer)
            await self._serve(reader, writer, peer)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("connection from %s:%s ended: %s", peer[0], peer[1], exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task not in self._shed_tasks:
                raise
            self._shed_tasks.discard(task)
            task.uncancel()
            log.info("session with %s:%s closed by the server (%s)", peer[0], peer[1],
                     "shutdown" if self.shutting_down else "shed for a new connection")
        except Exception:   # noqa: BLE001 - a bug in one session must not kill the server
            log.exception("session with %s:%s failed", peer[0], peer[1])
        finally:
            self.active -= 1
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
            if self._idle_event is not None and not self._running:
                self._idle_event.set()
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

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
        for session, (box, task) in list(self._running.items()):
            session.begin_shutdown(now)
            if session.closed:
                self._close_session(session, box, task)
        self._idle_event = asyncio.Event()
        if self._running:
            try:
                async with asyncio.timeout(max(0.0, drain_seconds)):
                    while self._running:
                        self._idle_event.clear()
                        await self._idle_event.wait()
            except TimeoutError:
                pass
        self._hard_stop = True
        for session, (box, task) in list(self._running.items()):
            if session.waiting != "deliver":         # a running delivery is always waited for
                session.connection_lost()
                self._close_session(session, box, task, reply_bytes=False)
        while self._running:                          # only deliveries in flight remain
            self._idle_event.clear()
            await self._idle_event.wait()
        for srv in self._listeners:
            await srv.wait_closed()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _close_session(self, session, box, task, *, reply_bytes: bool = True) -> None:
        """Send what the session has queued (its 421) and end its task quietly."""
        self._running.pop(session, None)
        if reply_bytes:
            try:
                box[0].write(session.data_to_send())
            except (ConnectionError, OSError, ssl.SSLError):
                pass
        if task is not None and task is not asyncio.current_task():
            self._shed_tasks.add(task)
            task.cancel()

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
        box, task = self._running.pop(victim)
        victim.shed(now)
        try:
            box[0].write(victim.data_to_send())
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        if task is not None:
            self._shed_tasks.add(task)       # handle() ends quietly and closes the connection
            task.cancel()
        self.sessions_shed += 1
        return True

    async def _serve(self, reader, writer, peer) -> None:
        """The conversation: the session's replies out, the client's bytes in, its events acted on.
        (One coroutine, the read and write calls bound once: every level of coroutine and wrapper
        is paid again at each resume, i.e. per command.)"""
        clock = self.clock
        session = SmtpSession(self.config, peer=peer, now=clock())
        box = [PlainStream(reader, writer)]
        self._running[session] = (box, asyncio.current_task())
        watch = _ReadDeadline(session, clock)
        read, write, drain = reader.read, writer.write, writer.drain
        # asyncio's StreamWriter.drain() only waits above the high-water mark: with nothing
        # buffered in the transport (the usual case) it is skipped
        transport = getattr(writer, "transport", None)
        buffered = transport.get_write_buffer_size if transport is not None else None
        pending: list = []
        try:
            while True:
                out = session.data_to_send()
                if out:
                    write(out)
                    if buffered is None or buffered() or transport.is_closing():
                        await drain()
                if pending:
                    event = pending.pop(0)
                    if isinstance(event, Close):
                        return
                    if isinstance(event, MessageReady):
                        pending += await self._deliver(session, event.envelope)
                    elif isinstance(event, AuthRequest):
                        ok = await asyncio.to_thread(self.users.verify, event.username, event.password)
                        pending += session.auth_result(ok, clock(), event.username)
                    elif isinstance(event, StartTlsRequest):
                        tls = self._starttls(reader, writer)
                        if tls is None:
                            pending += session.starttls_refused(clock())
                            continue
                        session.starttls_accepted(clock())
                        write(session.data_to_send())          # the 220, in plaintext
                        await drain()
                        try:
                            async with asyncio.timeout(self.handshake_timeout):
                                await tls.handshake()
                        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
                            log.info("TLS handshake with %s:%s failed: %s", peer[0], peer[1], exc)
                            return
                        box[0] = tls
                        read, write, drain, buffered = tls.read, tls.write, tls.drain, None
                        pending += session.tls_established(tls.version() or "TLS", (tls.cipher() or ("?",))[0],
                                                           clock())
                    continue
                if session.closed:
                    return
                if self._hard_stop or session not in self._running:
                    return                                   # shutdown: past the drain deadline
                watch.reading(session.next_deadline())
                try:
                    data = await read(READ_SIZE)
                except asyncio.CancelledError:
                    if not watch.expired():
                        raise
                    pending += session.poll(clock())
                    continue
                finally:
                    watch.done()
                if not data:
                    session.connection_lost()
                    return
                pending += session.receive_data(data, clock())
        finally:
            watch.close()
            self._running.pop(session, None)
            if isinstance(box[0], TlsStream):
                box[0].close()          # close_notify (RFC 8446 §6.1) before the TCP close

    def _starttls(self, reader, writer):
        try:
            return TlsStream(reader, writer, self.tls_context, server_side=True)
        except (ssl.SSLError, ValueError, TypeError) as exc:
            log.warning("cannot start TLS: %s", exc)
            return None

    async def _deliver(self, session: SmtpSession, env) -> list:
        qid = new_queue_id()
        try:
            if self.delivery.blocking:
                pool = self._pool
                if pool is None or pool.loop not in (None, asyncio.get_running_loop()):
                    if pool is not None:          # served an earlier event loop: its threads may go
                        pool.shutdown(wait=False)
                    pool = self._pool = WorkerPool(self.delivery_workers, name="smtp-delivery")
                # the delivery runs to its end even if this session is cancelled meanwhile (shed, shutdown)
                await pool.submit(self.delivery.deliver, env, qid)
            else:
                self.delivery.deliver(env, qid)
        except Exception as exc:   # noqa: BLE001 - any failure is a 451, never a lost 250
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
