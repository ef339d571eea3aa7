"""SO_RCVBUF from the socket APIs: the receive buffer fixed per connection, as on Linux
(autotuning stops), on the blocking facade (set before connect()) and on the asyncio
transport's ``get_extra_info('socket')``."""
from __future__ import annotations

import asyncio
import errno
import socket as std_socket

import pytest

from netstack.sockets import blocking, open_connection, start_server
from netstack.tcp import TCPConfig
from tests.support.sockets_fixtures import B_ADDR, blocking_pair, stack_pair

SOL_SOCKET, SO_RCVBUF = std_socket.SOL_SOCKET, std_socket.SO_RCVBUF


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.mark.timeout(10)
def test_transport_socket_so_rcvbuf_fixes_the_buffer_and_stops_autotuning():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, lambda r, w: None, port=7111)
            reader, writer = await open_connection(a, B_ADDR, 7111)
            sock = writer.get_extra_info("socket")
            conn = writer.get_extra_info("netstack_connection")
            assert sock.getsockopt(SOL_SOCKET, SO_RCVBUF) == TCPConfig().rcvbuf
            assert conn.info()["rcvbuf_autotune"] is True
            sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 1 << 20)
            assert sock.getsockopt(SOL_SOCKET, SO_RCVBUF) == conn.rcvbuf == 1 << 20
            assert conn.info()["rcvbuf_autotune"] is False
            for bad in (0, -1):
                with pytest.raises(OSError) as exc:
                    sock.setsockopt(SOL_SOCKET, SO_RCVBUF, bad)
                assert exc.value.errno == errno.EINVAL
            assert conn.rcvbuf == 1 << 20                   # unchanged by the rejected calls
            # Smaller than the window already promised: the buffer keeps what was promised.
            sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 1000)
            assert 1000 < conn.rcvbuf <= 1 << 20
            writer.close()
            server.close()
    run(main())


@pytest.mark.timeout(10)
def test_blocking_so_rcvbuf_set_before_connect_applies_to_the_connection():
    with blocking_pair() as (a, b):
        srv = blocking.socket(b)
        srv.bind(("", 7112))
        srv.listen()
        c = blocking.socket(a)
        assert c.getsockopt(SOL_SOCKET, SO_RCVBUF) == TCPConfig().rcvbuf     # the default, before connect
        c.setsockopt(SOL_SOCKET, SO_RCVBUF, 512 * 1024)
        c.connect((B_ADDR, 7112))
        conn, _ = srv.accept()
        try:
            tc = c._connection()
            assert tc.rcvbuf == 512 * 1024 and tc.info()["rcvbuf_autotune"] is False
            assert c.getsockopt(SOL_SOCKET, SO_RCVBUF) == 512 * 1024
            assert conn._connection().info()["rcvbuf_autotune"] is True      # the other side untouched
        finally:
            conn.close()
            c.close()
            srv.close()
