"""An ``asyncio.Transport`` over one netstack TCP connection.

This is the seam between the sans-I/O TCP :class:`~netstack.tcp.Connection`
and asyncio's protocol world: any ``asyncio.Protocol`` (in particular
``asyncio.StreamReaderProtocol``, hence ``StreamReader``/``StreamWriter``)
runs on it unchanged, and so does an ``asyncio.BufferedProtocol``.

How data moves:

- **Writing.** ``write(data)`` hands bytes to ``Connection.send``, which takes
  what fits in the TCP send buffer; the rest waits here in a user-space write
  buffer and is pushed on the connection's ``WRITABLE`` events.  Above the
  high-water mark the protocol's ``pause_writing()`` is called, below the
  low-water mark ``resume_writing()`` (that is what ``StreamWriter.drain()``
  waits on).
- **Reading.** On ``READABLE`` the transport pulls from ``Connection.recv``
  and feeds ``protocol.data_received``.  An ``asyncio.BufferedProtocol`` is
  served as asyncio's selector transports serve it: ``get_buffer()``, then
  ``Connection.recv_into`` copies straight from the TCP receive buffer into the
  protocol's buffer (one copy, no ``bytes`` object), then
  ``buffer_updated(n)``.  ``pause_reading()`` stops pulling, so
  the bytes stay in the TCP receive buffer, the advertised window shrinks and
  reaches zero: real TCP flow control (RFC 9293 §3.8.6), not an unbounded
  buffer in the application.
- **Closing.** ``write_eof()`` is ``shutdown(SHUT_WR)``: our FIN after the
  buffered bytes.  ``close()`` flushes the write buffer into TCP, then closes
  (FIN); ``connection_lost(None)`` follows.  ``abort()`` sends a RST at once.
  After either, as with asyncio's own transports, the protocol hears nothing more
  (no data, no ``eof_received``) but ``connection_lost``.
  A reset, a refused or timed-out connection ends with
  ``connection_lost(exc)`` carrying the standard exception
  (``ConnectionResetError``, ``TimeoutError``...).
- **Options.** ``get_extra_info('socket')`` is a :class:`TransportSocket`, so
  asyncio code that tunes its socket (``TCP_NODELAY``, ``SO_KEEPALIVE``,
  ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``) runs unchanged.

Connection events arrive from inside the TCP layer's input or timer
processing; the transport never re-enters the connection from there.  It
records the event and handles it once the stack's round has sent its output
(``Stack.call_after_round``: in the same loop turn, as asyncio's selector
transports feed their protocols), or in a ``loop.call_soon`` callback on a
stack without that hook.
"""
from __future__ import annotations

import asyncio
import collections
import logging

from netstack.sockets import errors
from netstack.sockets import options
from netstack.sockets.options import SocketOptions
from netstack.tcp.events import ConnEvent

__all__ = ["TCPTransport", "TransportSocket", "endpoints", "kick"]

log = logging.getLogger("netstack.sockets")

#: Bytes pulled from the connection per ``recv`` call.
READ_CHUNK = 256 * 1024
#: asyncio's own defaults for selector transports.
DEFAULT_HIGH_WATER = 64 * 1024
#: what the end-of-stream check "reads" into (recv_into with nothing buffered never writes)
_NO_BUFFER = bytearray()


def _int2ip(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def endpoints(conn) -> tuple[tuple[str, int], tuple[str, int]]:
    """``(sockname, peername)`` of a connection as ``(ip_text, port)`` pairs."""
    local = (_int2ip(conn.local_addr), conn.local_port)
    remote = (_int2ip(conn.remote_addr), conn.remote_port)
    return local, remote


def kick(stack) -> None:
    """Ask the stack loop to flush TCP's outbox soon (after a user call)."""
    k = getattr(stack, "kick", None)
    if k is not None:
        k()


class TransportSocket:
    """What ``transport.get_extra_info('socket')`` gives: a socket-like view of
    one netstack connection, as asyncio's ``trsock.TransportSocket`` is of a
    kernel socket.

    ``setsockopt``/``getsockopt`` take the options of
    :mod:`netstack.sockets.options` (``TCP_NODELAY``, ``SO_KEEPALIVE``,
    ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``, ``TCP_CONGESTION``, ``SO_RCVBUF``) and act on the
    connection at once; ``getsockname``/``getpeername`` give the endpoints.
    Call it from the stack's loop (where asyncio code runs).  There is no
    file descriptor: ``fileno()`` is -1.
    """

    family = 2        # socket.AF_INET
    type = 1          # socket.SOCK_STREAM
    proto = 6

    def __init__(self, transport: "TCPTransport") -> None:
        self._transport = transport
        self._opts = SocketOptions()

    def setsockopt(self, level: int, optname: int, value) -> None:
        t = self._transport
        options.apply(t._conn, self._opts.set(level, optname, value))
        kick(t._stack)

    def getsockopt(self, level: int, optname: int, buflen: int = 0):
        return self._opts.get(level, optname, self._transport._conn, buflen=buflen)

    def getsockname(self) -> tuple[str, int]:
        return self._transport.get_extra_info("sockname")

    def getpeername(self) -> tuple[str, int]:
        return self._transport.get_extra_info("peername")

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        return f"<netstack.TransportSocket laddr={self.getsockname()} raddr={self.getpeername()}>"


class TCPTransport(asyncio.Transport):
    """``asyncio.Transport`` over an established netstack TCP connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stack, conn, protocol: asyncio.BaseProtocol,
                 *, extra: dict | None = None, on_lost=None) -> None:
        base = {}
        try:
            sockname, peername = endpoints(conn)
            base = {"sockname": sockname, "peername": peername}
        except AttributeError:
            pass
        base.update({"socket": TransportSocket(self), "netstack_connection": conn, "netstack_stack": stack})
        if extra:
            base.update(extra)
        super().__init__(base)
        self._loop = loop
        self._stack = stack
        self._conn = conn
        self._protocol = protocol
        self._on_lost = on_lost
        self._wbuf: collections.deque = collections.deque()   # memoryviews not yet accepted by TCP
        self._wsize = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._protocol_paused = False       # we called protocol.pause_writing()
        self._reading_paused = False
        self._eof_written = False           # write_eof() called
        self._fin_sent = False              # shutdown_write() handed to TCP
        self._eof_received = False
        self._closing = False               # close() called (or connection ended)
        self._lost = False                  # connection_lost delivered
        self._conn_closed = False           # conn.close()/abort() called
        self._forced = False                # abort() or a fatal error: connection_lost is due
        self._pending: list[ConnEvent] = []
        self._scheduled = False
        self._conn_lost_writes = 0
        self._defer = getattr(stack, "call_after_round", None) or loop.call_soon
        conn.on_event = self._on_event

    # -- connection events (called from inside the TCP layer) -----------------------------------
    def _on_event(self, event: ConnEvent) -> None:
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            self._defer(self._process)

    def _start(self) -> None:
        """Deliver ``connection_made`` and pick up anything already buffered."""
        self._protocol.connection_made(self)
        self._pending.append(ConnEvent.READABLE)
        self._pending.append(ConnEvent.WRITABLE)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        if self._lost or self._forced:      # (a forced close already scheduled connection_lost)
            self._pending.clear()
            return
        events, self._pending = self._pending, []
        fatal = None
        readable = writable = closed = False
        for ev in events:
            if ev is ConnEvent.READABLE or ev is ConnEvent.EOF:
                readable = True
            elif ev is ConnEvent.WRITABLE:
                writable = True
            elif ev.is_failure:
                fatal = ev
            elif ev is ConnEvent.CLOSED:
                closed = True
        try:
            if readable or fatal or closed:
                # Deliver what the connection still holds before any error or close;
                # once it is CLOSED, even past a pause_reading() (nothing else would).
                self._pull(force=closed and fatal is None)
            if self._lost:
                return
            if fatal is not None:
                self._fail(errors.connection_error(self._conn, fatal))
                return
            if writable:
                self._push()
            if closed and not self._lost:
                exc = errors.connection_error(self._conn)
                if self._wsize and exc is None:
                    exc = errors.reset("connection closed with unsent data")
                self._conn_closed = True
                self._connection_lost(exc)
        except Exception as exc:     # a protocol callback failed: behave like asyncio (fatal error)
            self._fatal_error(exc, "Fatal error in protocol callback")

    # -- reading ------------------------------------------------------------------------------
    def _pull(self, force: bool = False) -> None:
        if isinstance(self._protocol, asyncio.BufferedProtocol):
            self._pull_into(force)
            return
        conn = self._conn
        pulled = False
        # an asyncio StreamReader copies what it is fed into its own buffer: it may take the
        # connection's receive buffer itself (no copy); any other protocol gets bytes, as asyncio's
        recv = conn.recv_owned if isinstance(self._protocol, asyncio.StreamReaderProtocol) else conn.recv
        while (force or not self._reading_paused) and not self._eof_received and not (self._closing or self._lost):
            if conn.would_block:
                break                   # nothing buffered yet (recv would raise BlockingIOError)
            try:
                data = recv(READ_CHUNK)
            except BlockingIOError:
                break                   # nothing buffered yet
            except OSError:
                break                   # the connection failed: its event reports it
            if data:
                pulled = True
                self._protocol.data_received(data)
                continue
            # b"": the peer's FIN arrived and everything before it has been read.
            self._end_of_stream()
            break
        if pulled:
            kick(self._stack)           # reading freed buffer space: a window update may be due

    def _end_of_stream(self) -> None:
        """The peer's FIN, after every byte before it was delivered: ``eof_received()``, and
        close unless the protocol keeps the connection open (it returned True)."""
        self._eof_received = True
        if not self._protocol.eof_received() and not self._closing:
            self.close()

    def _pull_into(self, force: bool = False) -> None:
        """Reading for an ``asyncio.BufferedProtocol``, as asyncio's selector transport does
        it: ``get_buffer(-1)``, then ``Connection.recv_into`` copies the received bytes
        straight into that buffer (one copy, receive buffer to protocol), then
        ``buffer_updated(n)``; again until nothing is buffered or reading is paused.  A
        buffer smaller than what is buffered only means more rounds; an empty one is a fatal
        error (RuntimeError, as asyncio).  A failing ``get_buffer``/``buffer_updated`` ends
        the connection through the fatal-error path."""
        conn = self._conn
        protocol = self._protocol
        pulled = False
        while (force or not self._reading_paused) and not self._eof_received and not (self._closing or self._lost):
            if conn.would_block:
                break                   # nothing buffered yet (recv_into would raise BlockingIOError)
            if conn.readable:
                try:
                    buf = protocol.get_buffer(-1)
                    if not len(buf):
                        raise RuntimeError("get_buffer() returned an empty buffer")
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
                    break
                try:
                    n = conn.recv_into(buf)
                except BlockingIOError:
                    break
                except OSError:
                    break               # the connection failed: its event reports it
                pulled = True
                try:
                    protocol.buffer_updated(n)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
                    break
                continue
            # nothing buffered and not blocking: end of stream (0) or the connection's error
            try:
                conn.recv_into(_NO_BUFFER)
            except OSError:
                break                   # failed (or BlockingIOError): its event reports it
            self._end_of_stream()
            break
        if pulled:
            kick(self._stack)           # reading freed buffer space: a window update may be due

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        """Stop pulling from the connection: the TCP receive window fills and closes."""
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True

    def resume_reading(self) -> None:
        """Pull again: the window reopens (TCP sends the window update)."""
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        if not self._conn.would_block:       # (else the next READABLE event brings the data)
            self._on_event(ConnEvent.READABLE)

    # -- writing ------------------------------------------------------------------------------
    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost or self._conn_closed:
            if self._conn_lost_writes >= 5:
                log.warning("socket.send() raised exception.")
            self._conn_lost_writes += 1
            return
        if not isinstance(data, bytes):
            data = bytes(data)      # the caller may reuse its buffer; we must own ours
        mv = memoryview(data)
        if not self._wbuf:
            n = self._send(mv)
            if n == len(mv):
                return
            mv = mv[n:]
        self._wbuf.append(mv)
        self._wsize += len(mv)
        self._maybe_pause_protocol()

    def _send(self, mv) -> int:
        try:
            n = self._conn.send(mv)
        except (BrokenPipeError, ConnectionError, OSError) as exc:
            self._fatal_error(exc, "Fatal write error on netstack transport")
            return len(mv)
        if n:
            kick(self._stack)
        return n

    def _push(self) -> None:
        """Move buffered bytes into TCP's send buffer; finish a pending close/EOF."""
        wbuf = self._wbuf
        while wbuf and not self._lost:
            mv = wbuf[0]
            n = self._send(mv)
            if self._lost:
                return
            self._wsize -= n
            if n == len(mv):
                wbuf.popleft()
            else:
                if n:
                    wbuf[0] = mv[n:]
                break
        self._maybe_resume_protocol()
        if not wbuf:
            if self._eof_written and not self._fin_sent:
                self._fin_sent = True
                self._conn.shutdown_write()
                kick(self._stack)
            if self._closing and not self._conn_closed:
                self._conn_closed = True
                self._conn.close()
                kick(self._stack)
                self._loop.call_soon(self._connection_lost, None)

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Half-close: send our FIN once the buffered bytes are handed to TCP."""
        if self._eof_written or self._closing:
            return
        self._eof_written = True
        if not self._wbuf:
            self._fin_sent = True
            self._conn.shutdown_write()
            kick(self._stack)

    def get_write_buffer_size(self) -> int:
        return self._wsize

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._wsize <= self._high or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": "protocol.pause_writing() failed", "exception": exc,
                "transport": self, "protocol": self._protocol})

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._wsize <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler({
                    "message": "protocol.resume_writing() failed", "exception": exc,
                    "transport": self, "protocol": self._protocol})

    # -- closing ------------------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Flush the write buffer into TCP, then close (our FIN); ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._reading_paused = True
        if not self._wbuf:
            self._conn_closed = True
            self._conn.close()
            kick(self._stack)
            self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        """Reset the connection (RFC 9293 §3.10.5 ABORT: RST); ``connection_lost(None)``."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on netstack transport") -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        if self._lost or self._forced:
            return
        self._forced = True
        self._closing = True
        self._wbuf.clear()
        self._wsize = 0
        if not self._conn_closed:
            self._conn_closed = True
            self._conn.abort()
            kick(self._stack)
        self._loop.call_soon(self._connection_lost, exc)

    def _fail(self, exc) -> None:
        """The connection ended with an error (reset, timeout): report it."""
        self._closing = True
        self._conn_closed = True
        self._wbuf.clear()
        self._wsize = 0
        self._connection_lost(exc)

    def _connection_lost(self, exc) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._conn.on_event = None
            if self._on_lost is not None:
                self._on_lost(self)

    # -- misc ---------------------------------------------------------------------------------
    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        peer = self._extra.get("peername")
        if peer:
            info.append(f"peer={peer[0]}:{peer[1]}")
        state = getattr(self._conn, "state", None)
        if state is not None:
            info.append(f"state={getattr(state, 'name', state)}")
        if self._closing:
            info.append("closing")
        if self._wsize:
            info.append(f"wbuf={self._wsize}")
        return "<{}>".format(" ".join(info))
