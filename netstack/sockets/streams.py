"""asyncio streams on netstack: ``open_connection`` and ``start_server``.

These mirror :func:`asyncio.open_connection` and :func:`asyncio.start_server`
with the stack as the first argument.  The reader and writer they give are
asyncio's own :class:`asyncio.StreamReader` / :class:`asyncio.StreamWriter`
(over :class:`~netstack.sockets.transport.TCPTransport`), so code written for
asyncio streams runs on netstack by swapping those two calls::

    reader, writer = await open_connection(stack, "198.18.0.1", 7)
    writer.write(b"hello\\n")
    await writer.drain()
    line = await reader.readline()

    server = await start_server(stack, handle, port=7)
    async with server:
        await server.serve_forever()

Errors are the standard ones: ``ConnectionRefusedError`` when a RST answers
our SYN (RFC 9293 §3.10.7.3), ``TimeoutError`` when the SYN retransmissions
are exhausted, ``OSError(EADDRINUSE)`` when a listener already holds the port.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time

from netstack.sockets import errors
from netstack.sockets.transport import TCPTransport, kick
from netstack.tcp.events import ConnEvent, ListenerEvent

__all__ = ["open_connection", "start_server", "create_connection", "create_server", "Server",
           "tcp_layer", "DEFAULT_LIMIT"]

log = logging.getLogger("netstack.sockets")

DEFAULT_LIMIT = 2 ** 16   # asyncio.streams._DEFAULT_LIMIT


def tcp_layer(stack):
    """The stack's TCP layer (:attr:`netstack.stack.Stack.tcp`)."""
    return stack.tcp


def _free_port(tcp) -> int:
    """An unused port from the ephemeral range, for a listener asked to bind port 0."""
    cfg = tcp.config
    used = set(tcp.listeners) | {key[2] for key in tcp.connections}
    for port in range(cfg.ephemeral_low, cfg.ephemeral_high + 1):
        if port not in used:
            return port
    raise OSError(errno.EADDRNOTAVAIL, "no free port to listen on")


def _now(stack) -> float:
    clock = getattr(stack, "clock", None)
    return clock() if callable(clock) else time.monotonic()


def _parse_host(host) -> int:
    """A dotted-quad IPv4 address as an int (no name resolution: the stack has no DNS)."""
    if isinstance(host, int):
        return host
    if host in ("localhost",):
        raise OSError(errno.EHOSTUNREACH, "netstack has no loopback; use the peer's IPv4 address")
    try:
        return int(ipaddress.IPv4Address(host))
    except ValueError:
        raise OSError(errno.EINVAL, f"not an IPv4 address: {host!r} (netstack does not resolve names)") from None


def _check_local_host(stack, host) -> None:
    if host in (None, "", "0.0.0.0", "*"):
        return
    hosts = [host] if isinstance(host, (str, int)) else list(host)
    for h in hosts:
        if h in (None, "", "0.0.0.0", "*"):
            continue
        if _parse_host(h) != stack.addr:
            raise OSError(errno.EADDRNOTAVAIL, f"Cannot assign requested address: {h!r} is not this stack's address")


# --------------------------------------------------------------------------------------------
# Active open
# --------------------------------------------------------------------------------------------
async def create_connection(stack, protocol_factory, host, port, *, local_port: int | None = None,
                            nodelay: bool = True, timeout: float | None = None):
    """Like ``loop.create_connection``: connect, then run ``protocol_factory()`` on a transport.

    Returns ``(transport, protocol)``.  Raises ``ConnectionRefusedError`` when
    the peer answers the SYN with a RST, ``TimeoutError`` when the SYN
    retransmissions run out (or ``timeout`` seconds pass: then the attempt is
    aborted).  ``nodelay`` (TCP_NODELAY, Nagle off) defaults to True because
    asyncio sets it on every TCP transport; pass False for Nagle.
    """
    loop = asyncio.get_running_loop()
    dst = _parse_host(host)
    if not 0 < int(port) < 65536:
        raise OverflowError("port must be 1-65535.")
    tcp = tcp_layer(stack)
    kw = {}
    if local_port is not None:
        kw["src_port"] = local_port
    kw["nodelay"] = bool(nodelay)
    conn = tcp.connect(dst, int(port), _now(stack), **kw)
    opened = loop.create_future()

    def on_event(ev: ConnEvent) -> None:
        if opened.done():
            return
        if ev is ConnEvent.ESTABLISHED:
            opened.set_result(None)
        elif ev.is_failure or ev is ConnEvent.CLOSED:
            exc = errors.connection_error(conn, ev)
            if exc is None:
                exc = errors.refused() if ev is ConnEvent.CLOSED else errors.reset()
            opened.set_exception(exc)

    conn.on_event = on_event
    kick(stack)
    try:
        if timeout is None:
            await opened
        else:
            await asyncio.wait_for(opened, timeout)
    except TimeoutError:
        conn.on_event = None
        if opened.done() and not opened.cancelled() and opened.exception() is not None:
            raise                                   # the SYN retransmissions ran out
        conn.abort()                                # our own ``timeout`` elapsed
        kick(stack)
        raise errors.timed_out("connect timed out") from None
    except BaseException:
        conn.on_event = None
        if not opened.done() or opened.cancelled():
            conn.abort()
            kick(stack)
        raise
    protocol = protocol_factory()
    transport = TCPTransport(loop, stack, conn, protocol)
    transport._start()
    return transport, protocol


async def open_connection(stack, host, port, *, limit: int = DEFAULT_LIMIT, **kwds):
    """``asyncio.open_connection`` on netstack: returns ``(StreamReader, StreamWriter)``.

    Extra keywords: ``local_port``, ``nodelay`` (TCP_NODELAY), ``timeout``.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(stack, lambda: protocol, host, port, **kwds)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


# --------------------------------------------------------------------------------------------
# Passive open
# --------------------------------------------------------------------------------------------
class ListenerInfo:
    """What ``Server.sockets`` lists: a read-only view of one listening port,
    shaped like the ``TransportSocket`` objects asyncio.Server gives."""

    def __init__(self, stack, port: int) -> None:
        self._stack = stack
        self._port = port
        self.family = 2        # socket.AF_INET
        self.type = 1          # socket.SOCK_STREAM
        self.proto = 6

    def getsockname(self) -> tuple[str, int]:
        return (str(ipaddress.IPv4Address(self._stack.addr)), self._port)

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        host, port = self.getsockname()
        return f"<netstack listener {host}:{port}>"


class Server:
    """Mirrors :class:`asyncio.Server` for a netstack listener.

    ``close()`` stops listening (established connections stay);
    ``wait_closed()`` waits until it is closed and, as asyncio does since
    3.12, until its connections are gone; ``serve_forever()``;
    ``close_clients()`` / ``abort_clients()``; ``async with``.
    """

    def __init__(self, stack, protocol_factory, port: int, backlog: int, loop, nodelay: bool = True) -> None:
        self._stack = stack
        self._nodelay = nodelay
        self._protocol_factory = protocol_factory
        self._port = port
        self._backlog = backlog
        self._loop = loop
        self._listener = None
        self._accept_scheduled = False
        self._serving = False
        self._closed = False
        self._transports: set[TCPTransport] = set()
        self._waiters: list[asyncio.Future] = []
        self._serving_forever_fut: asyncio.Future | None = None
        self.sockets: tuple = ()

    # --- the listener
    def _listen(self) -> None:
        tcp = tcp_layer(self._stack)
        port = self._port or _free_port(tcp)
        listener = tcp.listen(port, self._backlog, nodelay=self._nodelay)   # OSError(EADDRINUSE) if taken
        self._listener = listener
        self._port = port
        self.sockets = (ListenerInfo(self._stack, port),)
        listener.on_event = self._on_listener_event

    def _on_listener_event(self, ev: ListenerEvent) -> None:
        if not self._accept_scheduled:
            self._accept_scheduled = True
            defer = getattr(self._stack, "call_after_round", None) or self._loop.call_soon
            defer(self._accept_all)      # once the stack's round has sent its output (see transport.py)

    def _accept_all(self) -> None:
        self._accept_scheduled = False
        listener = self._listener
        if listener is None:
            return
        while self._serving:          # not serving yet: connections wait in the accept queue
            conn = listener.accept()
            if conn is None:
                break
            try:
                protocol = self._protocol_factory()
            except Exception as exc:
                self._loop.call_exception_handler({"message": "protocol factory failed", "exception": exc})
                conn.abort()
                kick(self._stack)
                continue
            transport = TCPTransport(self._loop, self._stack, conn, protocol, on_lost=self._detach)
            self._transports.add(transport)
            transport._start()

    def _detach(self, transport) -> None:
        self._transports.discard(transport)
        self._wake()

    def _wake(self) -> None:
        if self._closed and not self._transports:
            for w in self._waiters:
                if not w.done():
                    w.set_result(None)
            self._waiters.clear()

    # --- asyncio.Server API
    @property
    def port(self) -> int:
        return self._port

    def get_loop(self):
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._listener is None:
            self._listen()
        self._serving = True
        self._accept_all()

    def close(self) -> None:
        """Stop listening: new SYNs are refused; established connections carry on."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        listener, self._listener = self._listener, None
        self.sockets = ()
        if listener is not None:
            listener.on_event = None
            listener.close()
            kick(self._stack)
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        self._wake()

    def close_clients(self) -> None:
        for t in list(self._transports):
            t.close()

    def abort_clients(self) -> None:
        for t in list(self._transports):
            t.abort()

    async def wait_closed(self) -> None:
        if self._closed and not self._transports:
            return
        w = self._loop.create_future()
        self._waiters.append(w)
        await w

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            self.close()          # stop listening; established connections carry on
            raise
        finally:
            self._serving_forever_fut = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return f"<netstack Server port={self._port} serving={self._serving} connections={len(self._transports)}>"


async def create_server(stack, protocol_factory, host=None, port: int = 0, *, backlog: int = 100,
                        start_serving: bool = True, nodelay: bool = True) -> Server:
    """Like ``loop.create_server`` on the stack's address.

    Accepted connections have TCP_NODELAY set, as asyncio's transports do
    (``nodelay=False`` keeps Nagle on)."""
    loop = asyncio.get_running_loop()
    _check_local_host(stack, host)
    if port is None:
        port = 0
    if not 0 <= int(port) < 65536:
        raise OverflowError("port must be 0-65535.")
    server = Server(stack, protocol_factory, int(port), backlog, loop, nodelay)
    server._listen()
    if start_serving:
        await server.start_serving()
    return server


async def start_server(stack, client_connected_cb, host=None, port: int = 0, *, limit: int = DEFAULT_LIMIT,
                       backlog: int = 100, start_serving: bool = True, nodelay: bool = True) -> Server:
    """``asyncio.start_server`` on netstack.

    ``client_connected_cb(reader, writer)`` (plain function or coroutine) runs
    for each accepted connection with asyncio's StreamReader/StreamWriter.
    """
    loop = asyncio.get_running_loop()

    def factory():
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(stack, factory, host, port, backlog=backlog, start_serving=start_serving,
                               nodelay=nodelay)
