"""Fake streams and clock for driving ``smtp.server.SmtpServer.handle`` in the unit tier."""
from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeWriter:
    def __init__(self, peer) -> None:
        self.peer = peer
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.out += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default


class FakeTransport(FakeWriter):
    """A transport for ``SmtpServer.protocol()`` conversations: what they write, whether they
    closed, whether reading is paused."""

    def __init__(self, peer) -> None:
        super().__init__(peer)
        self.paused = False
        self.protocol = None              # set by set_protocol (STARTTLS moves onto streams)
        self.buffered = 0                 # what get_write_buffer_size() says

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        """Closed; a protocol installed by set_protocol gets connection_lost soon (as asyncio's)."""
        if not self.closed and self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
        super().close()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed


async def _settle():
    for _ in range(20):
        await asyncio.sleep(0)


def _open(server, port, ip="192.0.2.9"):
    """Start ``server.handle`` on a fake connection from ``ip:port``: (reader, writer, task)."""
    reader, writer = asyncio.StreamReader(), FakeWriter((ip, port))
    task = asyncio.ensure_future(server.handle(reader, writer))
    return reader, writer, task
