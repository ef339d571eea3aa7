"""The blocking BSD-shaped facade: two stacks on one background loop thread,
driven from plain threads exactly as a teaching script would."""
from __future__ import annotations

import errno
import hashlib
import os
import socket as std_socket
import threading
import time

import pytest

from netstack.link.memory import MemoryLink
from netstack.sockets import blocking
from netstack.sockets.blocking import (IPPROTO_TCP, SHUT_RD, SHUT_WR, TCP_NODELAY, NetstackSocket, StackThread,
                                       background)
from tests.support.sockets_fixtures import A_ADDR, B_ADDR, blocking_pair, fast_config, make_stack

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stacks():
    with blocking_pair(config_b=fast_config(syn_retries=2, rto_initial=0.05)) as pair:
        yield pair


def _serve_once(server_sock, fn):
    out = {}

    def run():
        try:
            conn, addr = server_sock.accept()
            with conn:
                out["addr"] = addr
                out["result"] = fn(conn)
        except BaseException as exc:     # surfaced in the test thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _connected(a, b, port):
    """A listener on B, a client on A connected to it, and the accepted socket."""
    srv = blocking.socket(b)
    srv.bind(("", port))
    srv.listen()
    c = blocking.socket(a)
    c.connect((B_ADDR, port))
    conn, _ = srv.accept()
    return srv, c, conn


def test_bind_listen_accept_echo(stacks):
    a, b = stacks
    srv = NetstackSocket(b)
    srv.bind(("", 7007))
    srv.listen()
    assert srv.getsockname() == (B_ADDR, 7007)

    def echo_line(conn):
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(100)
            if not chunk:
                break
            data += chunk
        conn.sendall(data.upper())
        return data

    t, out = _serve_once(srv, echo_line)
    with blocking.socket(a) as c:
        c.connect((B_ADDR, 7007))
        assert c.getpeername() == (B_ADDR, 7007)
        host, port = c.getsockname()
        assert host == A_ADDR
        c.sendall(b"hello netstack\n")
        got = b""
        while len(got) < 15:
            got += c.recv(100)
        assert got == b"HELLO NETSTACK\n"
        assert c.recv(100) == b""            # the server closed: EOF
    t.join(5)
    assert "error" not in out, out.get("error")
    assert out["result"] == b"hello netstack\n"
    assert out["addr"] == (A_ADDR, port)
    srv.close()


def test_bulk_sendall_recv_into_and_half_close(stacks):
    a, b = stacks
    payload = os.urandom(512 * 1024)
    srv = blocking.socket(b)
    srv.bind((B_ADDR, 0))
    srv.listen(5)
    port = srv.getsockname()[1]

    def sink(conn):
        h = hashlib.sha256()
        buf = bytearray(65536)
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            h.update(buf[:n])
        conn.sendall(b"digest:" + h.hexdigest().encode())
        conn.shutdown(SHUT_WR)
        return True

    t, out = _serve_once(srv, sink)
    c = blocking.create_connection(a, (B_ADDR, port), timeout=10)
    c.sendall(payload)
    c.shutdown(SHUT_WR)                      # half-close: we still receive
    with pytest.raises(BrokenPipeError):
        c.sendall(b"late")
    reply = b""
    while chunk := c.recv(4096):
        reply += chunk
    assert reply == b"digest:" + hashlib.sha256(payload).hexdigest().encode()
    c.close()
    t.join(5)
    assert out.get("result") is True, out
    srv.close()


def test_connect_refused_and_connect_ex(stacks):
    a, b = stacks
    c = blocking.socket(a)
    with pytest.raises(ConnectionRefusedError):
        c.connect((B_ADDR, 9999))
    c.close()
    c2 = blocking.socket(a)
    assert c2.connect_ex((B_ADDR, 9999)) == errno.ECONNREFUSED
    c2.close()


def test_settimeout_recv_and_accept(stacks):
    a, b = stacks
    srv = blocking.socket(b)
    srv.bind(("", 7100))
    srv.listen()
    srv.settimeout(0.2)
    assert srv.gettimeout() == 0.2
    t0 = time.monotonic()
    with pytest.raises(std_socket.timeout):
        srv.accept()
    assert time.monotonic() - t0 >= 0.15
    srv.settimeout(5)
    c = blocking.socket(a)
    c.connect((B_ADDR, 7100))
    conn, _ = srv.accept()
    c.settimeout(0.1)
    with pytest.raises(TimeoutError):
        c.recv(10)                        # nothing sent yet
    conn.sendall(b"late data")
    c.settimeout(5)
    assert c.recv(100) == b"late data"    # the timed-out recv lost nothing
    c.setblocking(False)
    with pytest.raises(BlockingIOError):
        c.recv(10)
    c.close()
    conn.close()
    srv.close()


def test_setsockopt_nodelay_and_options(stacks):
    a, b = stacks
    srv = blocking.socket(b)
    srv.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_REUSEADDR, 1)
    srv.bind(("", 7200))
    srv.listen()
    c = blocking.socket(a)
    c.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
    assert c.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 1
    c.connect((B_ADDR, 7200))
    conn = c._connection()
    assert conn.nodelay is True                        # reached the TCP connection
    c.setsockopt(IPPROTO_TCP, TCP_NODELAY, 0)
    assert conn.nodelay is False
    assert c.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 0
    with pytest.raises(OSError):
        c.setsockopt(IPPROTO_TCP, 9999, 1)
    c.close()
    srv.close()


def test_eaddrinuse_and_errors(stacks):
    a, b = stacks
    s1 = blocking.socket(b)
    s1.bind(("", 7300))
    s1.listen()
    s2 = blocking.socket(b)
    with pytest.raises(OSError) as ei:
        s2.bind(("", 7300))
    assert ei.value.errno == errno.EADDRINUSE
    s3 = blocking.socket(b)
    with pytest.raises(OSError) as ei:
        s3.bind(("10.1.1.1", 7301))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    c = blocking.socket(a)
    with pytest.raises(OSError) as ei:
        c.recv(1)
    assert ei.value.errno == errno.ENOTCONN
    with pytest.raises(OSError):
        c.getpeername()
    c.close()
    with pytest.raises(OSError) as ei:
        c.connect((B_ADDR, 7300))
    assert ei.value.errno == errno.EBADF
    for s in (s1, s2, s3):
        s.close()


def test_peer_reset_raises_connection_reset(stacks):
    a, b = stacks
    srv, c, conn = _connected(a, b, 7400)
    c.sendall(b"unread")
    time.sleep(0.05)
    conn.close()                 # closing with unread data resets (RFC 2525 §2.17)
    c.settimeout(5)
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    c.close()
    srv.close()


def test_shutdown_rd_and_makefile(stacks):
    a, b = stacks
    srv, c, conn = _connected(a, b, 7500)
    f = conn.makefile("rwb")
    c.sendall(b"line one\nline two\n")
    assert f.readline() == b"line one\n"
    assert f.readline() == b"line two\n"
    f.write(b"reply\n")
    f.flush()
    assert c.recv(100) == b"reply\n"
    c.shutdown(SHUT_RD)
    assert c.recv(100) == b""
    f.close()
    conn.close()
    c.close()
    srv.close()


def test_stack_socket_entry_point(stacks):
    """``netstack.sockets.socket(stack)`` (what Stack.socket delegates to)."""
    from netstack import sockets
    a, b = stacks
    srv = sockets.socket(b)
    assert isinstance(srv, NetstackSocket)
    srv.bind(("", 7600))
    srv.listen()
    with sockets.socket(a) as c:
        c.connect((B_ADDR, 7600))
        conn, addr = srv.accept()
        conn.sendall(b"hi")
        assert c.recv(2) == b"hi"
        conn.close()
    srv.close()


def test_facade_on_a_stack_already_running_in_an_asyncio_loop():
    """A stack started by asyncio code (as under `netstack serve`) in another thread:
    the facade submits work to that loop; calling it from inside the loop is refused."""
    import asyncio
    from netstack.sockets import start_server
    from netstack.services import echo

    la, lb = MemoryLink.pair()
    a = make_stack(la, A_ADDR)
    b = make_stack(lb, B_ADDR)
    ready = threading.Event()
    box = {}

    async def main():
        a.start()
        b.start()
        box["loop"] = asyncio.get_running_loop()
        box["server"] = await start_server(b, echo, port=7)
        try:
            blocking.socket(a).connect((B_ADDR, 7))
        except RuntimeError as exc:
            box["inside"] = exc
        ready.set()
        await asyncio.gather(a.run(), b.run())

    t = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(5)
    try:
        assert isinstance(box.get("inside"), RuntimeError)     # would deadlock: refused instead
        with blocking.socket(a) as c:
            c.connect((B_ADDR, 7))
            c.sendall(b"over the running loop\n")
            assert c.recv(100) == b"over the running loop\n"
    finally:
        box["loop"].call_soon_threadsafe(a.stop)
        box["loop"].call_soon_threadsafe(b.stop)
        t.join(5)
    assert not t.is_alive()


def test_linger_waits_until_sent_data_is_acknowledged():
    """What runs at interpreter exit: sendall(); close(); exit must not lose the
    bytes.  A 50 ms link delay keeps data and FIN in flight when close() returns."""
    from netstack.link.faults import FaultyLink
    from netstack.sockets.blocking import _connections, _unfinished
    la, lb = MemoryLink.pair()
    a = make_stack(FaultyLink(la, delay=0.05, seed=1), A_ADDR)
    b = make_stack(lb, B_ADDR)
    runner = StackThread()
    background(a, share=runner)
    background(b, share=runner)
    try:
        srv = blocking.socket(b)
        srv.bind(("", 7700))
        srv.listen()
        c = blocking.socket(a)
        c.connect((B_ADDR, 7700))
        conn, _ = srv.accept()
        c.sendall(os.urandom(100_000))
        c.close()
        assert any(_unfinished(x) for x in _connections(a))      # still in flight
        t0 = time.monotonic()
        assert runner.linger(5) is True
        assert time.monotonic() - t0 >= 0.05
        assert not any(_unfinished(x) for x in _connections(a))
        got = 0
        conn.settimeout(5)
        while chunk := conn.recv(65536):
            got += len(chunk)
        assert got == 100_000
        conn.close()
        srv.close()
    finally:
        runner.stop()


def test_blocking_sockets_keep_nagle_by_default_and_inherit_nodelay(stacks):
    """BSD semantics: Nagle on unless TCP_NODELAY is set; accepted sockets inherit it."""
    a, b = stacks
    srv, c, conn = _connected(a, b, 7800)
    assert c._connection().nodelay is False and conn._connection().nodelay is False
    assert conn.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 0
    for s in (c, conn, srv):
        s.close()
    srv = blocking.socket(b)
    srv.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
    srv.bind(("", 7801))
    srv.listen()
    c = blocking.socket(a)
    c.connect((B_ADDR, 7801))
    conn, _ = srv.accept()
    assert conn._connection().nodelay is True
    assert conn.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 1
    for s in (c, conn, srv):
        s.close()


def test_stack_socket_method_is_the_facade(stacks):
    """`stack.socket()` (the issue's spelling) gives the blocking facade: bind/listen/accept/recv/sendall."""
    a, b = stacks
    srv = b.socket()
    assert isinstance(srv, NetstackSocket)
    srv.bind(("", 7017))
    srv.listen()
    t, out = _serve_once(srv, lambda conn: conn.sendall(conn.recv(100)[::-1]))
    with a.socket() as c:
        c.connect((B_ADDR, 7017))
        c.sendall(b"abc")
        assert c.recv(100) == b"cba"
    t.join(5)
    assert "error" not in out, out.get("error")
    srv.close()
