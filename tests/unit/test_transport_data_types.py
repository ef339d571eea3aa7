"""What the socket transport hands a protocol's data_received: an asyncio StreamReader may take
the connection's receive buffer itself (no copy); any other protocol gets bytes, as from asyncio."""
from __future__ import annotations

import asyncio

from netstack.sockets import open_connection, start_server
from netstack.sockets.streams import create_connection

from tests.support.sockets_fixtures import B_ADDR, stack_pair


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.chunks: list = []
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data) -> None:
        self.chunks.append(data)

    def eof_received(self):
        self.done.set_result(None)


def test_a_plain_protocol_gets_bytes_and_a_stream_reader_all_the_data():
    payload = bytes(range(256)) * 800                     # 200 KB: several reads

    async def main():
        async with stack_pair() as (a, b):
            async def send_all(reader, writer):
                writer.write(payload)
                await writer.drain()
                writer.close()

            server = await start_server(b, send_all, port=7001)
            proto = Collect()
            transport, _ = await create_connection(a, lambda: proto, B_ADDR, 7001)
            await asyncio.wait_for(proto.done, 10)
            transport.close()
            assert proto.chunks and all(type(c) is bytes for c in proto.chunks)
            assert b"".join(proto.chunks) == payload

            reader, writer = await open_connection(a, B_ADDR, 7001)
            got = await asyncio.wait_for(reader.read(), 10)
            assert got == payload                          # StreamReader: recv_owned's bytearrays
            writer.close()
            server.close()

    asyncio.run(main())
