"""A blocking, BSD-shaped socket facade for teaching scripts.

::

    from netstack.sockets.blocking import socket
    s = socket(stack)                 # or stack.socket()
    s.bind(("", 7007)); s.listen()
    conn, addr = s.accept()
    data = conn.recv(1024)
    conn.sendall(data)
    conn.close()

The stack's asyncio loop runs in a background thread (started on first use,
see :func:`background`); each blocking call submits a coroutine to it built on
the stream API (:mod:`netstack.sockets.streams`) and waits.  Timeouts follow
the ``socket`` module: ``settimeout(t)`` makes a blocking call raise
``TimeoutError`` (alias ``socket.timeout``) after ``t`` seconds,
``settimeout(0)`` / ``setblocking(False)`` makes it raise
``BlockingIOError`` when it would block, ``None`` blocks forever.
Options (``setsockopt``/``getsockopt``): ``TCP_NODELAY``, ``SO_KEEPALIVE``,
``TCP_KEEPIDLE``, ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``, ``TCP_CONGESTION``, ``SO_RCVBUF`` (see
:mod:`netstack.sockets.options`); set before ``connect()``/``listen()`` they
apply to the connection, and accepted sockets inherit the listener's.
Errors are the standard ones (``ConnectionRefusedError``,
``ConnectionResetError``, ``BrokenPipeError``, ``OSError(EADDRINUSE)``...).
"""
from __future__ import annotations

import asyncio
import atexit
import errno
import ipaddress
import socket as _socket
import threading
import weakref
from concurrent.futures import TimeoutError as _FutTimeout

from netstack.sockets import errors, options
from netstack.sockets.options import TCP_KEEPCNT, TCP_KEEPIDLE, TCP_KEEPINTVL, SocketOptions
from netstack.sockets.transport import kick
from netstack.sockets.streams import DEFAULT_LIMIT, create_server, open_connection, tcp_layer

__all__ = ["socket", "NetstackSocket", "background", "StackThread", "create_connection",
           "AF_INET", "SOCK_STREAM", "IPPROTO_TCP", "TCP_NODELAY", "SOL_SOCKET", "SO_REUSEADDR",
           "SO_KEEPALIVE", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "SHUT_RD", "SHUT_WR", "SHUT_RDWR"]

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
IPPROTO_TCP = _socket.IPPROTO_TCP
TCP_NODELAY = _socket.TCP_NODELAY
SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SHUT_RD = _socket.SHUT_RD
SHUT_WR = _socket.SHUT_WR
SHUT_RDWR = _socket.SHUT_RDWR

_CHUNK = 64 * 1024


# --------------------------------------------------------------------------------------------
# The loop thread
# --------------------------------------------------------------------------------------------
#: Seconds a script's exit waits for its connections to deliver what they hold.
LINGER_AT_EXIT = 3.0


def _connections(stack) -> list:
    return list(stack.tcp.connections.values())


def _unfinished(conn) -> bool:
    """Data or a FIN of ours not yet acknowledged (ESTABLISHED/CLOSE-WAIT with an empty queue are done)."""
    return conn.sending


class StackThread:
    """An asyncio loop in a daemon thread that runs one or more stacks (``stack.run()``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stacks: dict = {}
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="netstack-loop", daemon=True)
        self.thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                for task in self.stacks.values():
                    task.cancel()
                if self.stacks:
                    self.loop.run_until_complete(asyncio.gather(*self.stacks.values(), return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    @property
    def running(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def add(self, stack) -> None:
        """Run ``stack`` on this loop (its ``run()`` becomes a task here)."""
        async def start():
            if stack not in self.stacks:
                self.stacks[stack] = asyncio.ensure_future(stack.run())
                await asyncio.sleep(0)      # let run() call start()
        self.call(start())

    def call(self, coro, timeout: float | None = None):
        """Run ``coro`` on the loop and wait for its result (``timeout`` is a safety net)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("blocking netstack socket call from inside the stack's own loop; "
                               "use the asyncio stream API there")
        if not self.running:
            coro.close()
            raise OSError(errno.ENETDOWN, "the netstack loop is not running")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except _FutTimeout:
            if fut.done():
                raise       # the coroutine's own TimeoutError (same class since Python 3.11)
            fut.cancel()
            raise TimeoutError("timed out") from None

    def linger(self, timeout: float = LINGER_AT_EXIT) -> bool:
        """Wait (at most ``timeout`` s) until no connection on these stacks has
        unacknowledged data or an unacknowledged FIN; True if they all got there.

        Runs at interpreter exit: a script that ends with ``sendall(); close()``
        expects its bytes delivered, as the kernel would deliver them after
        the process is gone.  The loop thread is a daemon and dies with the
        process, so we give TCP a bounded moment first.
        """
        if not self.running or not self.stacks:
            return True

        async def quiet():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                busy = [c for st in self.stacks for c in _connections(st) if _unfinished(c)]
                if not busy:
                    return True
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.01)
        try:
            return bool(self.call(quiet(), timeout + 1))
        except (OSError, RuntimeError, TimeoutError):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every stack on this loop, then the loop; join the thread."""
        if not self.thread.is_alive():
            return

        async def stop_all():
            for stack in self.stacks:
                stack.stop()
            if self.stacks:
                await asyncio.wait(list(self.stacks.values()), timeout=timeout)
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(stop_all(), self.loop)
        self.thread.join(timeout + 1)
        with _threads_lock:
            for stack in list(self.stacks):
                if _threads.get(stack) is self:
                    del _threads[stack]


class _ExistingLoop(StackThread):
    """A stack already running on a loop in another thread: submit work to that loop."""

    def __init__(self, loop, thread) -> None:   # no new thread
        self.loop = loop
        self.thread = thread
        self.stacks = {}

    @property
    def running(self) -> bool:
        return self.loop.is_running() and not self.loop.is_closed()

    def call(self, coro, timeout: float | None = None):
        try:
            inside = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            inside = False
        if inside:
            coro.close()
            raise RuntimeError("blocking netstack socket call from inside the stack's own loop; "
                               "use the asyncio stream API there (or run the blocking code in a thread)")
        return super().call(coro, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        pass          # not ours to stop


_threads: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_threads_lock = threading.Lock()


@atexit.register
def _linger_at_exit() -> None:
    with _threads_lock:
        runners = {id(t): t for t in _threads.values() if not isinstance(t, _ExistingLoop)}
    for t in runners.values():
        t.linger()


def background(stack, *, share: StackThread | None = None, loop: asyncio.AbstractEventLoop | None = None,
               thread: threading.Thread | None = None) -> StackThread:
    """The loop thread that runs ``stack``, started on first use.

    ``share``: run the stack on that existing StackThread (two stacks over an
    in-memory link must share one loop).  ``loop``/``thread``: the stack
    already runs on ``loop`` in ``thread`` (e.g. ``netstack serve``); the
    facade then only submits work to it.
    """
    with _threads_lock:
        t = _threads.get(stack)
        if t is not None and t.running:
            return t
        if loop is None and getattr(stack, "started", False) and not getattr(stack, "closed", False):
            loop = getattr(stack, "_loop", None)      # already running (e.g. under `netstack serve`)
        if loop is not None:
            t = _ExistingLoop(loop, thread)
        else:
            t = share if share is not None else StackThread()
        _threads[stack] = t
    if not isinstance(t, _ExistingLoop):
        t.add(stack)
    return t


# --------------------------------------------------------------------------------------------
# The socket
# --------------------------------------------------------------------------------------------
def _addr_text(a: int) -> str:
    return str(ipaddress.IPv4Address(a))


class NetstackSocket:
    """A TCP socket on a netstack Stack with the blocking ``socket.socket`` API."""

    family = AF_INET
    type = SOCK_STREAM
    proto = IPPROTO_TCP

    def __init__(self, stack, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0, *,
                 _runner: StackThread | None = None) -> None:
        if family != AF_INET:
            raise OSError(errno.EAFNOSUPPORT, "netstack speaks IPv4 only (AF_INET)")
        if type != SOCK_STREAM:
            raise OSError(errno.EPROTONOSUPPORT, "netstack sockets are TCP only (SOCK_STREAM)")
        self._stack = stack
        self._runner = _runner or background(stack)
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._local_port: int | None = None
        self._opts = SocketOptions({"nodelay": 0})     # BSD default: Nagle on
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._server = None
        self._accepted: asyncio.Queue | None = None
        self._shut_rd = False
        self._shut_wr = False
        self._closed = False
        self._io_refs = 0
        self._peer: tuple[str, int] | None = None
        self._sockname: tuple[str, int] | None = None

    # ---- plumbing
    def _call(self, coro_fn, *, blocking_op: bool = True):
        """Run ``coro_fn()`` on the loop, honouring this socket's timeout."""
        t = self._timeout

        async def runner():
            if not blocking_op or t is None:
                return await coro_fn()
            if t == 0:
                # Non-blocking: give the operation one loop pass to complete.
                task = asyncio.ensure_future(coro_fn())
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                if task.done():
                    return task.result()
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                else:
                    return task.result()
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            try:
                return await asyncio.wait_for(coro_fn(), t)
            except asyncio.TimeoutError as exc:
                if exc.errno is not None:
                    raise       # the connection's own ETIMEDOUT (retransmissions, keep-alive)
                raise TimeoutError("timed out") from None

        return self._runner.call(runner())

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")

    def _check_connected(self) -> None:
        self._check_open()
        if self._writer is None:
            raise errors.not_connected()

    # ---- addresses and options
    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        if self._writer is not None:
            return self._writer.get_extra_info("sockname")
        if self._sockname is not None:
            return self._sockname
        return ("0.0.0.0", self._local_port or 0)

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        if self._peer is None:
            raise errors.not_connected()
        return self._peer

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def setsockopt(self, level: int, optname: int, value) -> None:
        """Options of :mod:`netstack.sockets.options`; kept for a connection made later."""
        self._check_open()
        changed = self._opts.set(level, optname, value)
        conn = self._connection()
        if conn is not None:
            self._apply(conn, changed)

    def _apply(self, conn, values: dict) -> None:
        async def apply():
            options.apply(conn, values)
            kick(self._stack)
        self._runner.call(apply())

    def getsockopt(self, level: int, optname: int, buflen: int = 0):
        self._check_open()
        return self._opts.get(level, optname, self._connection(), tcp_layer(self._stack).config, buflen)

    @property
    def _nodelay(self) -> bool:
        return bool(self._opts.values["nodelay"])

    def _connection(self):
        if self._writer is None:
            return None
        return self._writer.get_extra_info("netstack_connection")

    # ---- passive open
    def bind(self, address) -> None:
        self._check_open()
        host, port = address
        if host not in ("", "0.0.0.0") and int(ipaddress.IPv4Address(host)) != self._stack.addr:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if self._local_port is not None:
            raise OSError(errno.EINVAL, "Invalid argument (already bound)")
        port = int(port)
        if not 0 <= port < 65536:
            raise OverflowError("bind(): port must be 0-65535.")
        if port and port in tcp_layer(self._stack).listeners:
            raise errors.addr_in_use()
        self._local_port = port

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._server is not None:
            return
        port = self._local_port or 0

        async def start():
            q: asyncio.Queue = asyncio.Queue()

            def on_client(reader, writer):
                opts = self._opts.copy()      # inherited from the listening socket, as in BSD
                opts.apply(writer.get_extra_info("netstack_connection"))
                q.put_nowait((reader, writer, opts))

            def factory():
                reader = asyncio.StreamReader(limit=DEFAULT_LIMIT)
                return asyncio.StreamReaderProtocol(reader, on_client)

            server = await create_server(self._stack, factory, port=port, backlog=max(1, int(backlog)),
                                         nodelay=self._nodelay)      # BSD default: Nagle on
            return server, q

        self._server, self._accepted = self._call(start, blocking_op=False)
        self._local_port = self._server.port
        self._sockname = (_addr_text(self._stack.addr), self._local_port)

    def accept(self) -> tuple["NetstackSocket", tuple[str, int]]:
        self._check_open()
        if self._server is None:
            raise OSError(errno.EINVAL, "Invalid argument (socket is not listening)")
        q = self._accepted

        async def get():
            return await q.get()

        reader, writer, opts = self._call(get)
        conn = NetstackSocket(self._stack, _runner=self._runner)
        conn._opts = opts
        conn._attach(reader, writer)
        return conn, conn._peer

    def _attach(self, reader, writer) -> None:
        self._reader, self._writer = reader, writer
        self._peer = writer.get_extra_info("peername")
        self._sockname = writer.get_extra_info("sockname")
        self._local_port = self._sockname[1] if self._sockname else None

    # ---- active open
    def connect(self, address) -> None:
        self._check_open()
        if self._writer is not None:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        if self._server is not None:
            raise OSError(errno.EINVAL, "Invalid argument (socket is listening)")
        host, port = address
        kw = {"nodelay": self._nodelay}
        if self._local_port:
            kw["local_port"] = self._local_port

        async def conn():
            reader, writer = await open_connection(self._stack, host, port, **kw)
            self._opts.apply(writer.get_extra_info("netstack_connection"))
            kick(self._stack)
            return reader, writer

        reader, writer = self._call(conn)
        self._attach(reader, writer)

    def connect_ex(self, address) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    # ---- data
    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_connected()
        if flags:
            raise OSError(errno.EOPNOTSUPP, "recv flags are not supported")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if self._shut_rd or bufsize == 0:
            return b""
        reader = self._reader
        return self._call(lambda: reader.read(bufsize))

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        mv = memoryview(buffer).cast("B")
        n = nbytes or len(mv)
        data = self.recv(n, flags)
        mv[:len(data)] = data
        return len(data)

    def _check_writable(self) -> None:
        self._check_connected()
        if self._shut_wr or self._writer.is_closing():
            exc = self._reader.exception() if self._reader is not None else None
            if exc is not None:
                raise exc
            raise errors.broken_pipe()

    def sendall(self, data, flags: int = 0) -> None:
        self._check_writable()
        writer = self._writer
        data = bytes(data)

        async def send():
            if writer.is_closing():
                raise errors.broken_pipe()
            writer.write(data)
            await writer.drain()

        self._call(send)

    def send(self, data, flags: int = 0) -> int:
        """Queue all of ``data`` and wait until the buffer drains below its mark; returns len(data)."""
        self.sendall(data, flags)
        return len(data)

    # ---- shutdown / close
    def shutdown(self, how: int) -> None:
        self._check_connected()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise OSError(errno.EINVAL, "Invalid argument")
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True
        if how in (SHUT_WR, SHUT_RDWR) and not self._shut_wr:
            self._shut_wr = True
            writer = self._writer

            async def eof():
                if not writer.is_closing():
                    writer.write_eof()

            self._call(eof, blocking_op=False)

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        writer, self._writer = self._writer, None
        server, self._server = self._server, None
        if not self._runner.running:
            return
        if writer is None and server is None:
            return

        reader = self._reader

        async def close():
            if writer is not None:
                if reader is not None and len(reader._buffer) and not writer.is_closing():
                    # Unread data at close: reset, as the kernel does (RFC 2525 §2.17);
                    # the bytes sit in the stream buffer here rather than in TCP's.
                    writer.transport.abort()
                else:
                    writer.close()
            if server is not None:
                server.close()
                q = self._accepted
                while q is not None and not q.empty():   # connections never accepted: reset
                    _, w, _ = q.get_nowait()
                    w.transport.abort()

        try:
            self._runner.call(close())
        except RuntimeError:
            pass

    def detach(self):
        raise OSError(errno.EOPNOTSUPP, "netstack sockets have no file descriptor")

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    makefile = _socket.socket.makefile

    def __enter__(self) -> "NetstackSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [f"<netstack.socket {'closed' if self._closed else 'open'}"]
        try:
            if not self._closed:
                parts.append(f"laddr={self.getsockname()}")
                if self._peer:
                    parts.append(f"raddr={self._peer}")
        except OSError:
            pass
        return " ".join(parts) + ">"


def socket(stack, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0) -> NetstackSocket:
    """``socket.socket()`` for a netstack Stack (starts its loop thread on first use)."""
    return NetstackSocket(stack, family, type, proto)


def create_connection(stack, address, timeout=None) -> NetstackSocket:
    """``socket.create_connection`` on netstack."""
    s = NetstackSocket(stack)
    if timeout is not None:
        s.settimeout(timeout)
    try:
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s
