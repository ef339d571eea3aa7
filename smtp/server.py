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

Run on kernel streams for tests and comparison: ``python -m netstack.cli.smtp_server --port 2525
--maildir DIR``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import ssl
import time

from .delivery import MaildirDelivery, MemorySink
from .replies import reply
from .session import AuthRequest, Close, MessageReady, SessionConfig, SmtpSession, StartTlsRequest
from .tls import PlainStream, TlsStream, set_nodelay

log = logging.getLogger("smtp.server")

READ_SIZE = 65536


def new_queue_id() -> str:
    return os.urandom(5).hex().upper()


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
    ``connections_refused`` count both outcomes.
    """

    def __init__(self, config: SessionConfig | None = None, *, delivery=None, maildir: str | None = None,
                 tls_context: ssl.SSLContext | None = None, users=None, clock=time.monotonic,
                 max_connections: int = 500, handshake_timeout: float = 30.0, shed_after: float = 2.0):
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
        #: running sessions -> (the stream box, the task serving it)
        self._running: dict[SmtpSession, tuple[list, asyncio.Task | None]] = {}
        self._shed_tasks: set = set()

    async def start(self, starter):
        """``starter(handler)`` -> awaitable listening server (e.g. a partial of asyncio.start_server)."""
        return await starter(self.handle)

    async def handle(self, reader, writer) -> None:
        """One connection, start to finish. Never raises."""
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        peer = tuple(peer[:2]) if isinstance(peer, (tuple, list)) else (str(peer), 0)
        self.active += 1
        try:
            if self.active > self.max_connections and not self._shed_one():
                self.connections_refused += 1
                writer.write(b"421 4.3.2 Too many connections, try again later\r\n")
                await writer.drain()
                return
            set_nodelay(writer)
            await self._run(reader, writer, peer)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("connection from %s:%s ended: %s", peer[0], peer[1], exc)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task not in self._shed_tasks:
                raise
            self._shed_tasks.discard(task)
            task.uncancel()
            log.info("session with %s:%s shed for a new connection", peer[0], peer[1])
        except Exception:   # noqa: BLE001 - a bug in one session must not kill the server
            log.exception("session with %s:%s failed", peer[0], peer[1])
        finally:
            self.active -= 1
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

    async def _run(self, reader, writer, peer) -> None:
        box = [PlainStream(reader, writer)]
        try:
            await self._converse(reader, writer, peer, box)
        finally:
            if isinstance(box[0], TlsStream):
                box[0].close()          # close_notify (RFC 8446 §6.1) before the TCP close

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

    async def _converse(self, reader, writer, peer, box: list) -> None:
        clock = self.clock
        session = SmtpSession(self.config, peer=peer, now=clock())
        self._running[session] = (box, asyncio.current_task())
        try:
            await self._conversation(session, reader, writer, peer, box)
        finally:
            self._running.pop(session, None)

    async def _conversation(self, session: SmtpSession, reader, writer, peer, box: list) -> None:
        clock = self.clock
        stream = box[0]
        pending: list = []
        while True:
            out = session.data_to_send()
            if out:
                stream.write(out)
                await stream.drain()
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
                    stream.write(session.data_to_send())     # the 220, in plaintext
                    await stream.drain()
                    try:
                        async with asyncio.timeout(self.handshake_timeout):
                            await tls.handshake()
                    except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
                        log.info("TLS handshake with %s:%s failed: %s", peer[0], peer[1], exc)
                        return
                    stream = box[0] = tls
                    pending += session.tls_established(tls.version() or "TLS", (tls.cipher() or ("?",))[0], clock())
                continue
            if session.closed:
                return
            deadline = session.next_deadline()
            try:
                if deadline is None:
                    data = await stream.read(READ_SIZE)
                else:
                    async with asyncio.timeout(max(0.0, deadline - clock())):
                        data = await stream.read(READ_SIZE)
            except TimeoutError:
                pending += session.poll(clock())
                continue
            if not data:
                session.connection_lost()
                return
            pending += session.receive_data(data, clock())

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
                await asyncio.to_thread(self.delivery.deliver, env, qid)
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
