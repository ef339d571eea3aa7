"""TCPTransport's read side: pause_reading() leaves the bytes in TCP (the window closes),
resume_reading() delivers what arrived meanwhile, and the end of the stream after it; a
resume with nothing buffered waits for the next data (no empty delivery)."""
from __future__ import annotations

import asyncio

from netstack.link import MemoryLink
from netstack.sockets.streams import create_server, open_connection
from netstack.stack import Stack


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.chunks: list[bytes] = []
        self.eof = False
        self.transport = None
        self.made = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(None)

    def data_received(self, data):
        assert data                                       # never an empty delivery
        self.chunks.append(bytes(data))

    def eof_received(self):
        self.eof = True
        return True


async def _until(cond, limit=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end
        await asyncio.sleep(0.001)


def test_pause_keeps_the_bytes_in_tcp_and_resume_delivers_them_then_the_end():
    async def main():
        a, b = MemoryLink.pair()
        async with Stack(a, "10.0.0.1") as client, Stack(b, "10.0.0.2") as server:
            rec = Recorder()
            await create_server(server, lambda: rec, port=9)
            reader, writer = await open_connection(client, "10.0.0.2", 9)
            await rec.made
            conn = rec.transport.get_extra_info("netstack_connection")
            writer.write(b"one")
            await _until(lambda: rec.chunks)
            rec.transport.pause_reading()
            assert not rec.transport.is_reading()
            writer.write(b"two")
            await writer.drain()
            await _until(lambda: conn.readable == 3)       # held in TCP's receive buffer
            await asyncio.sleep(0.01)
            assert rec.chunks == [b"one"]
            writer.write_eof()
            await _until(lambda: conn.at_eof is False and conn.rcv.fin_received)
            assert not rec.eof                             # not past the unread bytes
            rec.transport.resume_reading()
            await _until(lambda: rec.eof)
            assert b"".join(rec.chunks) == b"onetwo"
            # a resume with nothing buffered: the next data comes with its own event
            rec2 = Recorder()
            await create_server(server, lambda: rec2, port=10)
            reader2, writer2 = await open_connection(client, "10.0.0.2", 10)
            await rec2.made
            rec2.transport.pause_reading()
            rec2.transport.resume_reading()
            writer2.write(b"three")
            await _until(lambda: rec2.chunks)
            assert rec2.chunks == [b"three"]
            writer.close()
            writer2.close()

    asyncio.run(asyncio.wait_for(main(), 10))
