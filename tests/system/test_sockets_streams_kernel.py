"""netstack's asyncio streams beside asyncio's own kernel streams on 127.0.0.1: the same
handler and client code give the same answers on both (the API is asyncio's).

The streams on netstack alone (two Stacks over the in-memory link) are tested in
tests/unit/test_sockets_streams.py.
"""
from __future__ import annotations

import asyncio

import pytest

from netstack.services import echo
from netstack.sockets import open_connection, start_server
from tests.support.sockets_fixtures import B_ADDR, stack_pair

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_same_handler_code_runs_on_kernel_asyncio():
    """The reference: the very same handler and client code on asyncio's own
    loopback sockets behave as on netstack (the API is asyncio's)."""
    async def client(open_conn, host, port):
        reader, writer = await open_conn(host, port)
        writer.write(b"one\ntwo\n")
        await writer.drain()
        lines = [await reader.readline(), await reader.readline()]
        writer.write_eof()
        rest = await reader.read()
        writer.close()
        await writer.wait_closed()
        return lines, rest

    async def main():
        kernel_server = await asyncio.start_server(echo, "127.0.0.1", 0)
        kport = kernel_server.sockets[0].getsockname()[1]
        ref = await client(asyncio.open_connection, "127.0.0.1", kport)
        kernel_server.close()
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            ours = await client(lambda h, p: open_connection(a, h, p), B_ADDR, 7)
            server.close()
        assert ours == ref == ([b"one\n", b"two\n"], b"")
    run(main())
