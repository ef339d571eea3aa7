"""echo / discard / chargen on netstack streams, their `netstack serve`
installer, and the ``ss -tin`` style connection table."""
from __future__ import annotations

import argparse
import asyncio
import os

import pytest

from netstack import services
from netstack.cli import serve_services
from netstack.sockets import open_connection
from netstack.sockets.table import format_ss, snapshot, stack_table
from tests.support.sockets_fixtures import A_ADDR, B_ADDR, stack_pair

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _until(pred, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_chargen_pattern_follows_rfc864():
    pat = services.chargen_pattern()
    lines = pat.split(b"\r\n")[:-1]
    assert len(lines) == 95 and all(len(line) == 72 for line in lines)
    printable = bytes(range(32, 127))
    ring = printable * 2
    for n, line in enumerate(lines):        # line N: characters N .. N+71 (mod 95)
        assert line == ring[n:n + 72]
    assert lines[0].startswith(b' !"#$%') and lines[1].startswith(b'!"#$%&')
    assert lines[94] == b"~" + printable[:71]
    s = services.chargen_stream(20000, offset=7030 + 5)
    assert s == (pat * 5)[5:20005]


def _args(argv):
    p = argparse.ArgumentParser()
    serve_services.add_arguments(p)
    return p.parse_args(argv)


def test_serve_options():
    a = _args([])
    assert (a.echo_port, a.discard_port, a.chargen_port, a.no_services) == (7, 9, 19, False)
    a = _args(["--echo-port", "7007", "--chargen-port", "0", "--no-services"])
    assert (a.echo_port, a.chargen_port, a.no_services) == (7007, 0, True)
    with pytest.raises(SystemExit):
        _args(["--echo-port", "70000"])


def test_installer_and_services_end_to_end():
    async def main():
        async with stack_pair() as (a, b):
            closer = await serve_services.install_from_args(b, _args(["--echo-port", "7007"]))
            assert sorted(b.tcp.listeners) == [9, 19, 7007]

            # echo on the moved port
            r, w = await open_connection(a, B_ADDR, 7007)
            w.write(b"ping\n")
            assert await r.readline() == b"ping\n"
            w.write_eof()
            assert await r.read() == b""
            w.close()

            # discard: takes everything, answers nothing, closes after our FIN
            r, w = await open_connection(a, B_ADDR, 9)
            w.write(os.urandom(300_000))
            await w.drain()
            w.write_eof()
            assert await r.read() == b""
            w.close()

            # chargen: the RFC 864 stream, from the first byte
            r, w = await open_connection(a, B_ADDR, 19)
            got = await r.readexactly(100_000)
            assert got == services.chargen_stream(100_000)
            conn_count = len(b.tcp.connections)
            w.transport.abort()                  # the "rude abort" RFC 864 asks us to survive
            await _until(lambda: len(b.tcp.connections) < conn_count)

            # the table shows listeners and live connections
            r, w = await open_connection(a, B_ADDR, 7007)
            w.write(b"x")
            await r.readexactly(1)
            text = serve_services.report(b)
            assert "LISTEN" in text and f"{B_ADDR}:7007" in text and f"{B_ADDR}:19" in text
            assert "ESTAB" in text and f"{A_ADDR}:" in text
            assert "rto:" in text and "mss:" in text and "snd_una:" in text and "rcv_nxt:" in text
            assert "ts" in text.split() and "sack" in text.split() and "wscale:7,7" in text

            # teardown as `netstack serve` does it: listeners gone, clients reset
            await closer()
            assert not b.tcp.listeners
            with pytest.raises(ConnectionResetError):
                await r.read()
            w.close()
    run(main())


def test_installed_discard_is_a_buffered_protocol_reading_into_one_buffer(monkeypatch):
    """On a stack, discard runs as DiscardProtocol: every byte lands in its one buffer (no
    StreamReader, no bytes per read), and it closes after the client's FIN."""
    made = []

    class Recording(services.DiscardProtocol):
        def __init__(self):
            super().__init__()
            made.append(self)
            self.buffers = set()

        def get_buffer(self, sizehint):
            buf = super().get_buffer(sizehint)
            self.buffers.add(id(buf))
            return buf

    monkeypatch.setattr(services, "DiscardProtocol", Recording)
    payload = os.urandom(1_000_000)

    async def main():
        async with stack_pair() as (a, b):
            servers = await services.install(b, echo_port=0, discard_port=9, chargen_port=0)
            r, w = await open_connection(a, B_ADDR, 9)
            w.write(payload)
            await w.drain()
            w.write_eof()
            assert await r.read() == b""          # our FIN after the client's
            w.close()
            for server in servers:
                server.close()
    run(main())
    assert len(made) == 1 and isinstance(made[0], asyncio.BufferedProtocol)
    assert made[0].received == len(payload) and len(made[0].buffers) == 1


def test_no_services_installs_nothing():
    async def main():
        async with stack_pair() as (a, b):
            assert await serve_services.install_from_args(b, _args(["--no-services"])) is None
            assert not b.tcp.listeners
    run(main())


def test_table_rows_from_info():
    snap = {"listeners": [{"state": "LISTEN", "local": "198.18.0.2:7", "remote": "0.0.0.0:*", "recv_q": 2,
                           "send_q": 128, "syn_queue": 0}],
            "connections": [{
                "state": "ESTABLISHED", "local": "198.18.0.2:7", "remote": "198.18.0.1:40000", "recv_q": 3,
                "send_q": 10, "timestamps": True, "sack_ok": False, "snd_wscale": 7, "rcv_wscale": 6,
                "wscale_ok": True, "rto": 0.204, "srtt": 0.0015, "rttvar": 0.00075, "mss": 1448, "cwnd": 14480,
                "ssthresh": 1 << 31, "snd_una": 100, "snd_nxt": 110, "rcv_nxt": 5000, "snd_wnd": 65535,
                "rcv_wnd": 1000, "retrans": 4, "retries": 1, "bytes_acked": 99, "segs_in": 5, "segs_out": 7,
                "minrtt": 0.001, "timer": {"name": "retransmit", "left": 0.204, "fired": 1}, "error": None,
            }, {"state": "TIME-WAIT", "local": "198.18.0.2:9", "remote": "198.18.0.1:40001",
                "timer": {"name": "timewait", "left": 59.5, "fired": 0}}]}
    text = format_ss(snap, states="all", info=True, timers=True, numeric=True)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
    assert lines[1].split() == ["LISTEN", "2", "128", "198.18.0.2:7", "0.0.0.0:*"]
    est = next(i for i, line in enumerate(lines) if line.startswith("ESTAB"))
    assert lines[est].split() == ["ESTAB", "3", "10", "198.18.0.2:7", "198.18.0.1:40000", "timer:(retrans,204ms,1)"]
    detail = lines[est + 1].split()
    assert "ts" in detail and "sack" not in detail and "wscale:7,6" in detail
    assert "rto:204" in detail and "rtt:1.5/0.75" in detail and "retrans:1/4" in detail
    assert "cwnd:10" in detail and "cwnd_bytes:14480" in detail and "minrtt:1" in detail
    assert "bytes_acked:99" in detail and "segs_out:7" in detail and "segs_in:5" in detail
    assert not any(w.startswith("ssthresh") for w in detail)     # "infinite" ssthresh is not shown
    tw = next(line for line in lines if line.startswith("TIME-WAIT"))
    assert tw.split()[-1] == "timer:(timewait,59sec,0)"             # ss drops the ms above 9 s


def test_stack_table_without_tcp_is_empty():
    class NoTcp:
        tcp = None
    assert stack_table(NoTcp()) == ""


def test_snapshot_survives_a_broken_connection():
    class Bad:
        def info(self):
            raise RuntimeError("boom")

    class Tcp:
        connections = {1: Bad()}
        listeners = {}

    class FakeStack:
        tcp = Tcp()
        addr = 0xC6120002
        clock = staticmethod(lambda: 0.0)
    (info,) = snapshot(FakeStack())["connections"]
    assert info["state"] == "?" and "boom" in info["error"]
