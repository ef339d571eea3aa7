"""The classic test services, written on netstack's asyncio streams.

- echo (RFC 862, port 7): sends back everything it receives; when the client
  half-closes, finishes echoing and closes.
- discard (RFC 863, port 9): reads and throws away everything.
- chargen (RFC 864, port 19): sends the rotating 72-character line pattern
  until the client goes away; anything received is discarded.

They are ordinary ``async def handler(reader, writer)`` functions: they run on
asyncio's kernel streams just as well (the tests use that as a reference).
``install(stack, ...)`` starts them on a stack and returns the servers
(``netstack serve`` does that through ``netstack.cli.serve_services``).
There, discard runs as :class:`DiscardProtocol`, an ``asyncio.BufferedProtocol``
reading into one reused buffer: what a bulk receiver on netstack should be
(one copy, receive buffer to that buffer; no ``bytes`` per read, no task, no
StreamReader pausing the transport every 128 KB), so a kernel client
measuring discard measures the stack.
"""
from __future__ import annotations

import asyncio
import logging

__all__ = ["echo", "discard", "DiscardProtocol", "chargen", "chargen_pattern", "chargen_stream", "install", "ECHO_PORT",
           "DISCARD_PORT", "CHARGEN_PORT"]

log = logging.getLogger("netstack.services")

ECHO_PORT = 7
DISCARD_PORT = 9
CHARGEN_PORT = 19

CHUNK = 64 * 1024

#: RFC 864: the 95 printable ASCII characters, space (32) through tilde (126).
_PRINTABLE = bytes(range(32, 127))
LINE_WIDTH = 72


def chargen_pattern() -> bytes:
    """One full period of the RFC 864 stream: 95 lines of 72 characters + CRLF.

    Line *n* (from 0) holds the 72 characters starting at printable character
    *n* mod 95, wrapping around; each line ends with CR LF.
    """
    doubled = _PRINTABLE + _PRINTABLE
    return b"".join(doubled[n:n + LINE_WIDTH] + b"\r\n" for n in range(len(_PRINTABLE)))


_PATTERN = chargen_pattern()                      # 95 * 74 = 7030 bytes
_BLOCK = _PATTERN * max(1, CHUNK // len(_PATTERN))  # whole periods, about 64 KiB


def chargen_stream(nbytes: int, offset: int = 0) -> bytes:
    """The first ``nbytes`` of the chargen stream starting at ``offset`` (for verifying)."""
    period = len(_PATTERN)
    start = offset % period
    reps = (start + nbytes) // period + 1
    return (_PATTERN * reps)[start:start + nbytes]


async def _close(writer) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, TimeoutError, OSError):
        pass


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 862 echo: what arrives goes back, until the client's FIN (then ours)."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, TimeoutError) as exc:
        log.debug("echo %s: %s", writer.get_extra_info("peername"), exc)
        writer.transport.abort()
        return
    await _close(writer)


async def discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 863 discard: read everything, send nothing, close after the client's FIN."""
    try:
        while await reader.read(CHUNK):
            pass
    except (ConnectionError, TimeoutError) as exc:
        log.debug("discard %s: %s", writer.get_extra_info("peername"), exc)
        writer.transport.abort()
        return
    await _close(writer)


class DiscardProtocol(asyncio.BufferedProtocol):
    """RFC 863 discard as an ``asyncio.BufferedProtocol``: every read lands in one buffer,
    reused, and is forgotten; after the client's FIN, ours (``eof_received`` returns False:
    the transport closes).  ``received`` counts the bytes taken."""

    def __init__(self, size: int = 4 * CHUNK) -> None:
        self._buf = bytearray(size)
        self.received = 0

    def get_buffer(self, sizehint: int) -> bytearray:
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc) -> None:
        if exc is not None:
            log.debug("discard: %s", exc)


async def chargen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """RFC 864 chargen: send the line pattern until the client goes away.

    "Data is sent until the calling user terminates the connection": a
    half-close (the client's FIN) does not stop the stream; the RST the
    client's stack sends once it has closed its socket, or the retransmission
    timeout, does.  Anything received is thrown away.
    """

    async def drain_input():
        try:
            while await reader.read(CHUNK):
                pass
        except (ConnectionError, TimeoutError):
            pass

    sink = asyncio.ensure_future(drain_input())
    block = _BLOCK
    try:
        while not writer.is_closing():
            writer.write(block)
            await writer.drain()
    except (ConnectionError, TimeoutError) as exc:
        log.debug("chargen %s: %s", writer.get_extra_info("peername"), exc)
    finally:
        sink.cancel()
        if not writer.is_closing():
            writer.transport.abort()


SERVICES = {"echo": (echo, ECHO_PORT), "discard": (discard, DISCARD_PORT), "chargen": (chargen, CHARGEN_PORT)}


async def install(stack, *, echo_port: int | None = ECHO_PORT, discard_port: int | None = DISCARD_PORT,
                  chargen_port: int | None = CHARGEN_PORT, backlog: int = 128) -> list:
    """Start the services on ``stack``; a port of ``None`` or 0 leaves one out.

    Returns the :class:`~netstack.sockets.streams.Server` objects.
    """
    from netstack.sockets.streams import create_server, start_server

    servers = []
    for name, port in (("echo", echo_port), ("discard", discard_port), ("chargen", chargen_port)):
        if not port:
            continue
        if name == "discard":
            servers.append(await create_server(stack, DiscardProtocol, port=port, backlog=backlog))
        else:
            servers.append(await start_server(stack, SERVICES[name][0], port=port, backlog=backlog))
        log.info("%s listening on port %d", name, port)
    return servers
