"""netstack's socket API: asyncio streams first, plus a blocking BSD facade.

Entry points (each takes the :class:`~netstack.stack.Stack` first; the Stack
methods of the same names delegate here)::

    reader, writer = await open_connection(stack, "198.18.0.1", 7)
    server = await start_server(stack, handler, port=7)
    s = socket(stack)          # blocking: bind/listen/accept/connect/recv/sendall...

Modules: ``transport`` (an ``asyncio.Transport`` over a TCP connection, with
flow control both ways), ``streams`` (open_connection/start_server and the
Server object), ``blocking`` (the BSD-shaped facade), ``errors`` (the standard
exceptions), ``table`` (the ``ss -tin`` style connection table).
"""
from __future__ import annotations

from netstack.sockets.streams import (DEFAULT_LIMIT, Server, create_connection, create_server, open_connection,
                                      start_server)
from netstack.sockets.transport import TCPTransport

__all__ = ["open_connection", "start_server", "create_connection", "create_server", "Server", "TCPTransport",
           "socket", "DEFAULT_LIMIT"]


def socket(stack, family: int = 2, type: int = 1, proto: int = 0):
    """A blocking ``socket.socket``-like TCP socket on ``stack`` (see :mod:`netstack.sockets.blocking`)."""
    from netstack.sockets.blocking import socket as _socket
    return _socket(stack, family, type, proto)
