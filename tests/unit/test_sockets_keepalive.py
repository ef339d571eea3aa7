"""Keep-alive from the socket APIs: SO_KEEPALIVE and TCP_KEEPIDLE/KEEPINTVL/KEEPCNT
on the blocking facade and on the asyncio transport's ``get_extra_info('socket')``.

A silent peer is A's link turned to 100 % loss (FaultyLink) once the
connections are up: with keep-alive on (idle 1 s, interval 1 s, 2 probes) the
idle connection ends with ETIMEDOUT after about 3 s; with it off, the same
idle connection over the same dead link stays open.
"""
from __future__ import annotations

import asyncio
import errno
import socket as std_socket
import time

import pytest

from netstack.link.faults import FaultyLink
from netstack.sockets import blocking, open_connection, start_server
from netstack.tcp.state import State
from tests.support.sockets_fixtures import B_ADDR, blocking_pair, stack_pair

SOL_SOCKET, SO_KEEPALIVE = std_socket.SOL_SOCKET, std_socket.SO_KEEPALIVE
IPPROTO_TCP, TCP_NODELAY = std_socket.IPPROTO_TCP, std_socket.TCP_NODELAY
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = std_socket.TCP_KEEPIDLE, std_socket.TCP_KEEPINTVL, std_socket.TCP_KEEPCNT

#: idle 1 s + 2 probes 1 s apart: the connection times out about 3 s after it goes quiet.
FAST_KEEPALIVE = ((SOL_SOCKET, SO_KEEPALIVE, 1), (IPPROTO_TCP, TCP_KEEPIDLE, 1),
                  (IPPROTO_TCP, TCP_KEEPINTVL, 1), (IPPROTO_TCP, TCP_KEEPCNT, 2))
DEAD_BY = 5.0      # seconds: generous bound on the ~3 s expected

INVALID = ((IPPROTO_TCP, TCP_KEEPIDLE, 0), (IPPROTO_TCP, TCP_KEEPIDLE, 32768),
           (IPPROTO_TCP, TCP_KEEPINTVL, 0), (IPPROTO_TCP, TCP_KEEPINTVL, -1),
           (IPPROTO_TCP, TCP_KEEPCNT, 0), (IPPROTO_TCP, TCP_KEEPCNT, 128))


def _set_all(sock, opts=FAST_KEEPALIVE):
    for level, name, value in opts:
        sock.setsockopt(level, name, value)


def _assert_invalid_rejected(sock):
    for level, name, value in INVALID:
        with pytest.raises(OSError) as info:
            sock.setsockopt(level, name, value)
        assert info.value.errno == errno.EINVAL, (name, value)
    with pytest.raises(OSError) as info:
        sock.setsockopt(SOL_SOCKET, std_socket.SO_BROADCAST, 1)
    assert info.value.errno == errno.ENOPROTOOPT


# --------------------------------------------------------------------------------------------
# Blocking facade
# --------------------------------------------------------------------------------------------
@pytest.fixture
def stacks():
    with blocking_pair(wrap_a=FaultyLink) as pair:      # no impairment until a test sets loss
        yield pair


@pytest.mark.timeout(10)
def test_blocking_keepalive_options_round_trip_and_apply(stacks):
    a, b = stacks
    c = blocking.socket(a)
    # Before connect: the TCP defaults (Linux's), keep-alive off.
    assert c.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 0
    assert (c.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE), c.getsockopt(IPPROTO_TCP, TCP_KEEPINTVL),
            c.getsockopt(IPPROTO_TCP, TCP_KEEPCNT)) == (7200, 75, 9)
    c.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    c.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, 30)
    c.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, 5)
    c.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, 3)
    assert c.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE) == 30

    srv = blocking.socket(b)
    srv.bind(("", 7101))
    srv.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)       # before listen(): inherited by accepted sockets
    srv.setsockopt(IPPROTO_TCP, TCP_KEEPCNT, 4)
    srv.listen()
    c.connect((B_ADDR, 7101))
    conn, _ = srv.accept()
    try:
        # Applied to the connection once it exists, and read back from it.
        tc = c._connection()
        assert (tc.keepalive, tc.keepalive_idle, tc.keepalive_interval, tc.keepalive_count) == (True, 30, 5, 3)
        assert [c.getsockopt(*o) for o in ((SOL_SOCKET, SO_KEEPALIVE), (IPPROTO_TCP, TCP_KEEPIDLE),
                                           (IPPROTO_TCP, TCP_KEEPINTVL), (IPPROTO_TCP, TCP_KEEPCNT))] == [1, 30, 5, 3]
        assert conn.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 1
        assert conn.getsockopt(IPPROTO_TCP, TCP_KEEPCNT) == 4
        assert conn._connection().keepalive and conn._connection().keepalive_count == 4
        # Changed on a connected socket: the connection follows.
        c.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 0)
        c.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, 60)
        assert not tc.keepalive and tc.keepalive_idle == 60
        assert c.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 0
        assert c.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 0
        _assert_invalid_rejected(c)
        assert c.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE) == 60       # unchanged by the rejected calls
    finally:
        conn.close()
        c.close()
        srv.close()


@pytest.mark.timeout(15)
def test_blocking_keepalive_times_out_a_silent_peer_and_off_stays_open(stacks):
    a, b = stacks
    srv = blocking.socket(b)
    srv.bind(("", 7102))
    srv.listen()
    on = blocking.socket(a)
    _set_all(on)                          # before connect()
    on.connect((B_ADDR, 7102))
    on_peer, _ = srv.accept()
    off = blocking.socket(a)
    off.connect((B_ADDR, 7102))
    off_peer, _ = srv.accept()
    try:
        a.link.loss = 1.0                 # the peer goes silent
        on.settimeout(DEAD_BY + 2)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            on.recv(10)
        elapsed = time.monotonic() - t0
        assert info.value.errno == errno.ETIMEDOUT       # keep-alive, not settimeout
        assert elapsed < DEAD_BY
        assert a.counters["tcp.keepalive_probes"] == 2
        assert a.counters["tcp.keepalive_timeouts"] == 1
        # Keep-alive off: the same idle connection over the same dead link is still open.
        off.settimeout(0)
        with pytest.raises(BlockingIOError):
            off.recv(10)
        assert off._connection().state is State.ESTABLISHED
    finally:
        for s in (on, on_peer, off, off_peer, srv):
            s.close()


# --------------------------------------------------------------------------------------------
# asyncio streams: get_extra_info('socket')
# --------------------------------------------------------------------------------------------
def run(coro, timeout=10):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.timeout(10)
def test_transport_socket_options_round_trip():
    async def main():
        async with stack_pair() as (a, b):
            accepted = asyncio.get_running_loop().create_future()

            async def handler(r, w):
                accepted.set_result(w)

            server = await start_server(b, handler, port=7103)
            reader, writer = await open_connection(a, B_ADDR, 7103)
            sock = writer.get_extra_info("socket")
            conn = writer.get_extra_info("netstack_connection")
            assert sock.getsockname() == writer.get_extra_info("sockname")
            assert sock.getpeername() == (B_ADDR, 7103)
            assert sock.getsockopt(IPPROTO_TCP, TCP_NODELAY) == 1         # asyncio's default
            assert sock.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 0
            assert sock.getsockopt(IPPROTO_TCP, TCP_KEEPIDLE) == 7200
            sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 0)
            _set_all(sock, ((SOL_SOCKET, SO_KEEPALIVE, 1), (IPPROTO_TCP, TCP_KEEPIDLE, 20),
                            (IPPROTO_TCP, TCP_KEEPINTVL, 7), (IPPROTO_TCP, TCP_KEEPCNT, 5)))
            assert [sock.getsockopt(*o) for o in ((IPPROTO_TCP, TCP_NODELAY), (SOL_SOCKET, SO_KEEPALIVE),
                                                  (IPPROTO_TCP, TCP_KEEPIDLE), (IPPROTO_TCP, TCP_KEEPINTVL),
                                                  (IPPROTO_TCP, TCP_KEEPCNT))] == [0, 1, 20, 7, 5]
            assert (conn.nodelay, conn.keepalive, conn.keepalive_idle, conn.keepalive_interval,
                    conn.keepalive_count) == (False, True, 20, 7, 5)
            _assert_invalid_rejected(sock)
            # The server side has its own socket object.
            w = await asyncio.wait_for(accepted, 2)
            ssock = w.get_extra_info("socket")
            assert ssock.getpeername() == writer.get_extra_info("sockname")
            assert ssock.getsockopt(SOL_SOCKET, SO_KEEPALIVE) == 0
            writer.close()
            w.close()
            server.close()
    run(main())


@pytest.mark.timeout(15)
def test_stream_keepalive_times_out_a_silent_peer_and_off_stays_open():
    async def main():
        async with stack_pair(faults={"loss": 0.0}) as (a, b):
            server = await start_server(b, lambda r, w: None, port=7104)
            r_on, w_on = await open_connection(a, B_ADDR, 7104)
            r_off, w_off = await open_connection(a, B_ADDR, 7104)
            _set_all(w_on.get_extra_info("socket"))
            a.link.loss = 1.0                 # the peer goes silent
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError) as info:
                await asyncio.wait_for(r_on.read(10), DEAD_BY + 2)
            assert info.value.errno == errno.ETIMEDOUT      # keep-alive, not wait_for
            assert loop.time() - t0 < DEAD_BY
            assert a.counters["tcp.keepalive_probes"] == 2
            assert a.counters["tcp.keepalive_timeouts"] == 1
            # Keep-alive off: still open, nothing read, no error.
            assert not w_off.is_closing() and not r_off.at_eof() and r_off.exception() is None
            assert w_off.get_extra_info("netstack_connection").state is State.ESTABLISHED
            w_off.transport.abort()
            server.close()
    run(main())
