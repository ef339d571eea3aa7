"""asyncio streams on netstack: two Stacks over the in-memory link, a real loop.

open_connection/start_server give asyncio's own StreamReader/StreamWriter;
every test here would read the same against asyncio's kernel sockets.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import os

import pytest

from netstack.sockets import Server, create_server, open_connection, start_server
from netstack.sockets.transport import TCPTransport
from netstack.services import echo
from netstack.tcp.state import State
from tests.support.sockets_fixtures import A_ADDR, B_ADDR, fast_config, stack_pair

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _until(pred, timeout=5.0, step=0.005):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


def test_echo_roundtrip_and_stream_methods():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            assert isinstance(reader, asyncio.StreamReader)
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(b"hello\nworld\n")
            await writer.drain()
            assert await reader.readline() == b"hello\n"
            assert await reader.readexactly(6) == b"world\n"
            writer.writelines([b"abc", b"--END--", b"tail"])
            assert await reader.readuntil(b"--END--") == b"abc--END--"
            assert await reader.readexactly(4) == b"tail"
            # half-close: echo finishes and closes; we see EOF after the data
            writer.write(b"last")
            writer.write_eof()
            assert await reader.read() == b"last"
            assert reader.at_eof()
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
    run(main())


def test_extra_info():
    async def main():
        async with stack_pair() as (a, b):
            seen = {}

            async def handler(r, w):
                seen["peer"] = w.get_extra_info("peername")
                seen["sock"] = w.get_extra_info("sockname")
                w.close()

            server = await start_server(b, handler, port=8000)
            reader, writer = await open_connection(a, B_ADDR, 8000)
            assert writer.get_extra_info("peername") == (B_ADDR, 8000)
            host, port = writer.get_extra_info("sockname")
            assert host == A_ADDR and 1024 <= port < 65536
            sock = writer.get_extra_info("socket")
            assert sock.getpeername() == (B_ADDR, 8000) and sock.getsockname() == (host, port)
            conn = writer.get_extra_info("netstack_connection")
            assert conn is not None and conn.remote_port == 8000
            assert writer.get_extra_info("nonexistent", "dflt") == "dflt"
            assert isinstance(writer.transport, TCPTransport)
            assert await reader.read() == b""
            await _until(lambda: "peer" in seen)
            assert seen["peer"] == (A_ADDR, port)
            assert seen["sock"] == (B_ADDR, 8000)
            writer.close()
            await writer.wait_closed()
            server.close()
    run(main())


def test_bulk_both_ways_sha256():
    size = 2 * 1024 * 1024

    async def main():
        async with stack_pair() as (a, b):
            result = {}
            payload_b = os.urandom(size)

            async def handler(r, w):
                h = hashlib.sha256()
                while chunk := await r.read(65536):
                    h.update(chunk)
                result["b_got"] = h.hexdigest()
                w.write(payload_b)
                await w.drain()
                w.close()

            server = await start_server(b, handler, port=5001)
            reader, writer = await open_connection(a, B_ADDR, 5001)
            payload_a = os.urandom(size)
            writer.write(payload_a)
            await writer.drain()
            writer.write_eof()
            got = await reader.read()
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload_b).hexdigest()
            assert result["b_got"] == hashlib.sha256(payload_a).hexdigest()
            writer.close()
            server.close()
    run(main())


def test_write_backpressure_pause_and_resume_writing():
    """A peer that does not read: our write buffer passes the high-water mark,
    drain() blocks; when the peer reads, drain() completes."""
    async def main():
        cfg = fast_config(rcvbuf=64 * 1024, sndbuf=64 * 1024)
        async with stack_pair(config_a=cfg, config_b=cfg) as (a, b):
            release = asyncio.Event()
            received = []

            async def handler(r, w):
                await release.wait()
                while chunk := await r.read(65536):
                    received.append(len(chunk))
                w.close()

            server = await start_server(b, handler, port=5002)
            reader, writer = await open_connection(a, B_ADDR, 5002)
            transport = writer.transport
            transport.set_write_buffer_limits(high=32 * 1024)
            assert transport.get_write_buffer_limits() == (8 * 1024, 32 * 1024)
            total = 1024 * 1024
            writer.write(b"x" * total)
            # TCP send buffer (64K) + peer receive buffer (64K) hold at most ~128K + stream buffers
            assert transport.get_write_buffer_size() > 32 * 1024
            drain = asyncio.ensure_future(writer.drain())
            await asyncio.sleep(0.3)
            assert not drain.done(), "drain() must block while the peer does not read"
            assert writer._protocol._paused       # pause_writing() was called
            release.set()
            await asyncio.wait_for(drain, 10)
            assert transport.get_write_buffer_size() <= 8 * 1024
            writer.write_eof()
            assert await reader.read() == b""
            await _until(lambda: sum(received) == total)
            writer.close()
            server.close()
    run(main())


def test_pause_reading_closes_the_tcp_window():
    """A StreamReader that is not read pauses the transport: the bytes stay in
    TCP's receive buffer and the advertised window drops to zero, so the
    sender is flow-controlled by TCP itself (not by an unbounded buffer)."""
    async def main():
        cfg = fast_config(rcvbuf=64 * 1024, sndbuf=64 * 1024)
        async with stack_pair(config_a=cfg, config_b=cfg) as (a, b):
            conns = {}
            go = asyncio.Event()

            async def handler(r, w):
                conns["server"] = w.get_extra_info("netstack_connection")
                conns["reader"] = r
                await go.wait()
                n = 0
                while chunk := await r.read(65536):
                    n += len(chunk)
                conns["n"] = n
                w.close()

            server = await start_server(b, handler, port=5003, limit=16 * 1024)
            reader, writer = await open_connection(a, B_ADDR, 5003)
            client_conn = writer.get_extra_info("netstack_connection")
            total = 1024 * 1024
            writer.write(os.urandom(total))
            mss = client_conn.info()["mss"]
            # The window closes (to less than one segment: SWS avoidance keeps the
            # last crumbs; the right edge never moves left, RFC 9293 §3.8.6).
            await _until(lambda: "server" in conns and client_conn.info()["snd_wnd"] < mss
                         and conns["server"].info()["recv_q"] > conns["server"].info()["rcvbuf"] - mss)
            srv = conns["server"].info()
            assert srv["rcv_wnd"] < mss
            await asyncio.sleep(0.2)
            info = conns["server"].info()           # never more than the buffer (autotuned: as the
            assert info["recv_q"] <= info["rcvbuf"]  # transport read before pausing, within rcvbuf_max)
            assert info["rcvbuf"] <= cfg.rcvbuf_max
            assert len(conns["reader"]._buffer) <= 2 * 16 * 1024 + 256 * 1024
            assert writer.transport.get_write_buffer_size() > 0
            go.set()                                     # reading resumes: the window reopens
            await asyncio.wait_for(writer.drain(), 10)
            writer.write_eof()
            await reader.read()
            await _until(lambda: conns.get("n") == total)
            writer.close()
            server.close()
    run(main())


def test_connection_refused():
    async def main():
        async with stack_pair() as (a, b):
            with pytest.raises(ConnectionRefusedError) as ei:
                await open_connection(a, B_ADDR, 4444)
            assert ei.value.errno == errno.ECONNREFUSED
    run(main())


def test_syn_timeout():
    """Nobody answers: SYN retransmissions run out -> TimeoutError (ETIMEDOUT)."""
    async def main():
        cfg = fast_config(syn_retries=2, rto_initial=0.05)
        async with stack_pair(config_a=cfg) as (a, b):
            with pytest.raises(TimeoutError):
                await open_connection(a, "10.9.0.77", 80)   # B drops: not its address
    run(main())


def test_connect_timeout_argument_aborts():
    async def main():
        async with stack_pair() as (a, b):
            with pytest.raises(TimeoutError):
                await open_connection(a, "10.9.0.77", 80, timeout=0.2)
            assert not a.tcp.connections          # the attempt was aborted
    run(main())


def test_peer_abort_gives_connection_reset():
    async def main():
        async with stack_pair() as (a, b):
            async def handler(r, w):
                await r.readexactly(5)
                w.transport.abort()                 # RST

            server = await start_server(b, handler, port=5004)
            reader, writer = await open_connection(a, B_ADDR, 5004)
            writer.write(b"hello")
            with pytest.raises(ConnectionResetError):
                await reader.read(100)
            with pytest.raises(ConnectionResetError):
                writer.write(b"more")
                await writer.drain()
            with pytest.raises(ConnectionResetError):
                await writer.wait_closed()
            server.close()
    run(main())


def test_data_retransmission_timeout():
    """The peer vanishes mid-connection: retransmissions run out -> TimeoutError."""
    async def main():
        cfg = fast_config(data_retries=3, rto_max=0.2)
        async with stack_pair(config_a=cfg) as (a, b):
            server = await start_server(b, echo, port=5005)
            reader, writer = await open_connection(a, B_ADDR, 5005)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            b.close()                                # B stops answering
            writer.write(b"are you there?")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(100), 15)
            server.close()
    run(main())


def test_eaddrinuse():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            with pytest.raises(OSError) as ei:
                await start_server(b, echo, port=7)
            assert ei.value.errno == errno.EADDRINUSE
            server.close()
            await server.wait_closed()
            again = await start_server(b, echo, port=7)   # free again after close()
            again.close()
    run(main())


def test_server_object_mirrors_asyncio_server():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=0)
            assert isinstance(server, Server)
            assert server.is_serving()
            (sock,) = server.sockets
            host, port = sock.getsockname()
            assert host == B_ADDR and port > 0
            async with server:
                task = asyncio.ensure_future(server.serve_forever())
                await asyncio.sleep(0)
                reader, writer = await open_connection(a, B_ADDR, port)
                writer.write(b"x\n")
                assert await reader.readline() == b"x\n"
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert not server.is_serving()
                # the listener is gone: a new SYN is refused
                with pytest.raises(ConnectionRefusedError):
                    await open_connection(a, B_ADDR, port)
                # the established connection still works until it closes
                writer.write(b"y\n")
                assert await reader.readline() == b"y\n"
                writer.close()
                await writer.wait_closed()
            assert server.sockets == ()
    run(main())


def test_start_serving_false_and_host_check():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, host=B_ADDR, port=7007, start_serving=False)
            assert not server.is_serving()
            await server.start_serving()
            r, w = await open_connection(a, B_ADDR, 7007)
            w.write(b"ok\n")
            assert await r.readline() == b"ok\n"
            w.close()
            server.close()
            with pytest.raises(OSError) as ei:
                await start_server(b, echo, host="10.9.9.9", port=7008)
            assert ei.value.errno == errno.EADDRNOTAVAIL
    run(main())


def test_write_after_write_eof_and_close():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write_eof()
            assert writer.can_write_eof()
            with pytest.raises(RuntimeError):
                writer.write(b"x")
            assert await reader.read() == b""
            writer.close()
            assert writer.is_closing()
            await writer.wait_closed()
            server.close()
    run(main())


def test_close_flushes_buffered_data_then_fin():
    """close() right after a large write(): every byte still arrives, then EOF."""
    size = 1024 * 1024

    async def main():
        cfg = fast_config(sndbuf=32 * 1024)
        async with stack_pair(config_a=cfg) as (a, b):
            done = asyncio.get_running_loop().create_future()

            async def handler(r, w):
                data = await r.read()
                done.set_result(data)
                w.close()

            server = await start_server(b, handler, port=5006)
            reader, writer = await open_connection(a, B_ADDR, 5006)
            payload = os.urandom(size)
            writer.write(payload)
            assert writer.transport.get_write_buffer_size() > 0
            writer.close()
            await writer.wait_closed()
            got = await asyncio.wait_for(done, 10)
            assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
            server.close()
    run(main())


def test_abort_sends_rst_to_peer():
    async def main():
        async with stack_pair() as (a, b):
            outcome = asyncio.get_running_loop().create_future()

            async def handler(r, w):
                try:
                    await r.read()
                except ConnectionResetError as exc:
                    outcome.set_result(exc)
                else:
                    outcome.set_result(None)

            server = await start_server(b, handler, port=5007)
            reader, writer = await open_connection(a, B_ADDR, 5007)
            writer.write(b"abc")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()
            await writer.wait_closed()              # abort: connection_lost(None)
            assert isinstance(await asyncio.wait_for(outcome, 5), ConnectionResetError)
            server.close()
    run(main())


def test_start_serving_later_accepts_queued_connections():
    """Like asyncio: with start_serving=False the port listens and handshakes
    complete; the handler runs for them once serving starts."""
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7010, start_serving=False)
            reader, writer = await open_connection(a, B_ADDR, 7010)     # handshake completes
            writer.write(b"queued\n")
            await asyncio.sleep(0.1)
            assert b.tcp.listeners[7010].pending == 1
            await server.start_serving()
            assert await asyncio.wait_for(reader.readline(), 5) == b"queued\n"
            writer.close()
            server.close()
    run(main())


def test_data_left_in_tcp_when_connection_closes_is_not_lost():
    """The peer sends more than the reader's limit and closes; we half-close
    before reading: TCP reaches CLOSED (LAST-ACK acked) with bytes still in its
    receive buffer; every byte must still reach the StreamReader, then EOF."""
    size = 200_000

    async def main():
        async with stack_pair() as (a, b):
            payload = os.urandom(size)

            async def handler(r, w):
                w.write(payload)
                await w.drain()
                w.write_eof()
                await r.read()
                w.close()

            server = await start_server(b, handler, port=5010)
            reader, writer = await open_connection(a, B_ADDR, 5010, limit=1024)   # pauses reading early
            conn = writer.get_extra_info("netstack_connection")
            await _until(lambda: conn.rcv.fin_received)
            writer.write_eof()
            await _until(lambda: conn.state is State.CLOSED)
            assert await reader.read() == payload
            server.close()
    run(main())


def test_tcp_nodelay_defaults_like_asyncio():
    """asyncio sets TCP_NODELAY on its TCP transports; so do ours (both ends), unless asked not to."""
    async def main():
        async with stack_pair() as (a, b):
            seen = []

            async def handler(r, w):
                seen.append(w.get_extra_info("netstack_connection").nodelay)
                w.close()

            s1 = await start_server(b, handler, port=7020)
            s2 = await start_server(b, handler, port=7021, nodelay=False)
            r1, w1 = await open_connection(a, B_ADDR, 7020)
            r2, w2 = await open_connection(a, B_ADDR, 7021, nodelay=False)
            assert w1.get_extra_info("netstack_connection").nodelay is True
            assert w2.get_extra_info("netstack_connection").nodelay is False
            await r1.read()
            await r2.read()
            assert seen == [True, False]
            for w in (w1, w2):
                w.close()
            s1.close()
            s2.close()
    run(main())


def test_stack_methods_delegate_to_the_stream_api():
    """`await stack.start_server(...)` / `await stack.open_connection(...)`: the issue's spelling, asyncio's shape."""
    async def main():
        async with stack_pair() as (a, b):
            server = await b.start_server(echo, port=7)
            assert isinstance(server, Server)
            reader, writer = await a.open_connection(B_ADDR, 7)
            assert isinstance(reader, asyncio.StreamReader) and isinstance(writer, asyncio.StreamWriter)
            assert writer.get_extra_info("peername") == (B_ADDR, 7)
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
            with pytest.raises(ConnectionRefusedError):
                await a.open_connection(B_ADDR, 9999)
            server.close()
            await server.wait_closed()
    run(main())


def test_default_tcp_layer_takes_its_mss_from_the_link_mtu():
    """A Stack's own TCP, the one the streams use, announces MSS = MTU - 40 by default (RFC 9293 §3.7.1)."""
    from netstack.link.memory import MemoryLink
    from netstack.sockets.streams import tcp_layer
    from netstack.stack import Stack

    a, _b = MemoryLink.pair(mtu=9000)
    stack = Stack(a, A_ADDR)
    tcp = tcp_layer(stack)
    assert tcp is stack.tcp
    assert tcp.config.mss == 8960


def test_data_and_new_connections_reach_the_application_in_the_stacks_own_loop_turn():
    """A segment's data reaches protocol.data_received, and a completed handshake the server's
    protocol factory, at the end of the stack's round that took the segment in (as asyncio's
    selector transports call their protocols from the reader callback), not a loop turn later."""
    import inspect

    seen = []

    def caller():
        return [f.function for f in inspect.stack()[2:8]]

    class Recorder(asyncio.Protocol):
        def __init__(self):
            seen.append(("made", caller()))

        def data_received(self, data):
            seen.append(("data", caller()))

    async def main():
        async with stack_pair() as (a, b):
            server = await create_server(b, Recorder, port=9)
            reader, writer = await open_connection(a, B_ADDR, 9)
            writer.write(b"hello")
            await _until(lambda: any(kind == "data" for kind, _ in seen))
            writer.close()
            server.close()
            await server.wait_closed()

    run(main())
    made = next(stack for kind, stack in seen if kind == "made")
    data = next(stack for kind, stack in seen if kind == "data")
    assert "_run_after_round" in made and "_on_readable" in made
    assert "_run_after_round" in data and "_on_readable" in data
