"""What `netstack ss` and `netstack stats` show: per-connection counters, the LISTEN
rows' real queues, the timer in ss's form, the MIB mapping and gauges, and the
control socket's answers (its request handling is pure: a line in, a reply out).
Two stacks over the in-memory link, a real loop."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from netstack import mib
from netstack.control import ControlServer, default_path
from netstack.services import echo
from netstack.sockets import open_connection, start_server
from netstack.sockets.table import format_ss, snapshot, ss_ms_timer, stack_table
from tests.support.sockets_fixtures import B_ADDR, fast_config, stack_pair

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _until(pred, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def _only(conns):
    (conn,) = list(conns.values())
    return conn


# -- per-connection counters ------------------------------------------------------------------------
def test_per_connection_counters_match_the_stack_counters():
    """segs_in/segs_out/bytes_acked/minrtt of the one connection on each side agree with
    what the stacks counted: every segment of A's TCP went to, or came from, it."""
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            payload = b"x" * 50_000
            writer.write(payload)
            await writer.drain()
            assert await reader.readexactly(len(payload)) == payload
            await asyncio.sleep(0.05)
            ca = _only(a.tcp.connections).info()
            cb = _only(b.tcp.connections).info()
            assert ca["segs_out"] == a.counters["tcp.out_segs"] > 10
            assert ca["segs_in"] == a.counters["tcp.in_segs"] > 10
            assert cb["segs_in"] == b.counters["tcp.in_segs"]
            assert ca["bytes_acked"] == len(payload) + 1           # the SYN counts one, as on Linux
            assert cb["bytes_acked"] == len(payload) + 1
            assert ca["minrtt"] is not None and 0 <= ca["minrtt"] <= ca["srtt"] + 1e-9
            writer.close()
            server.close()
    run(main())


# -- the table ----------------------------------------------------------------------------------------
def test_listen_rows_show_accept_queue_and_backlog():
    async def main():
        async with stack_pair() as (a, b):
            b.tcp.listen(7070, backlog=5)                  # nobody accepts
            writers = []
            for _ in range(2):
                _, w = await open_connection(a, B_ADDR, 7070)
                writers.append(w)
            await _until(lambda: b.tcp.listeners[7070].pending == 2)
            snap = snapshot(b)
            (row,) = snap["listeners"]
            assert (row["recv_q"], row["send_q"], row["syn_queue"]) == (2, 5, 0)
            text = format_ss(snap, states="listening", numeric=True)
            lines = text.splitlines()
            assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
            assert lines[1].split() == ["LISTEN", "2", "5", f"{B_ADDR}:7070", "0.0.0.0:*"]
            assert len(lines) == 2                          # -l: no connections
            assert mib.gauges(b)["tcp.accept_queue"] == 2
            for w in writers:
                w.close()
    run(main())


def test_state_filters_like_ss():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"hi\n")
            assert await reader.readline() == b"hi\n"
            snap = snapshot(b)
            default = format_ss(snap, numeric=True)
            assert "ESTAB" in default and "LISTEN" not in default          # ss: connected sockets
            listening = format_ss(snap, states="listening", numeric=True)
            assert "LISTEN" in listening and "ESTAB" not in listening
            everything = format_ss(snap, states="all", numeric=True)
            assert "LISTEN" in everything and "ESTAB" in everything
            assert json.loads(json.dumps(snap)) == snap                      # crosses the control socket
            writer.close()
            server.close()
    run(main())


def test_info_line_has_cwnd_in_segments_and_bytes_and_the_counters():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"hello\n")
            assert await reader.readline() == b"hello\n"
            info = _only(a.tcp.connections).info()
            text = format_ss(snapshot(a), info=True, numeric=True)
            row, detail = text.splitlines()[1:3]
            assert row.startswith("ESTAB")
            words = dict(w.split(":", 1) for w in detail.split() if ":" in w)
            assert int(words["cwnd"]) == info["cwnd"] // info["mss"]                # segments, as ss
            assert int(words["cwnd_bytes"]) == info["cwnd"]
            for key in ("bytes_acked", "segs_out", "segs_in", "minrtt", "rto", "rtt", "mss", "snd_una"):
                assert key in words, detail
            assert int(words["bytes_acked"]) == info["bytes_acked"] == 7
            writer.close()
            server.close()
    run(main())


@pytest.mark.parametrize("seconds, text", [
    (0.204, "204ms"), (0.045, "045ms"), (1.5, "1.500ms"), (12.3, "12sec"), (9.0, "9sec"),
    (125.0, "2min5sec"), (900.0, "15min"), (0.0, "0ms"), (-1.0, "0ms"),
])
def test_timer_left_in_ss_format(seconds, text):
    assert ss_ms_timer(seconds) == text


def test_retransmission_timer_shown_as_ss_does():
    """A peer that went silent: the retransmission timer fires; -o shows
    timer:(retrans,<left>,<retransmissions>)."""
    cfg = fast_config(rto_initial=0.2, rto_min=0.2, rto_max=5.0)

    async def main():
        async with stack_pair(config_a=cfg) as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            b.close()                                    # B stops reading: A's data goes unanswered
            conn = _only(a.tcp.connections)
            writer.write(b"lost\n")
            await _until(lambda: conn.recovery.retries >= 1)
            snap = snapshot(a)
            (c,) = snap["connections"]
            assert c["timer"]["name"] == "retransmit" and c["timer"]["fired"] == conn.recovery.retries
            assert 0 <= c["timer"]["left"] <= 5.0
            row = format_ss(snap, timers=True, numeric=True).splitlines()[1]
            word = row.split()[-1]
            assert word.startswith("timer:(retrans,") and word.endswith(f",{conn.recovery.retries})"), row
            assert "timer:(" not in format_ss(snap, numeric=True)                # only with -o
            writer.transport.abort()
            server.close()
    run(main())


def test_service_names_unless_numeric():
    try:
        name = socket.getservbyport(7, "tcp")
    except OSError:
        pytest.skip("no services database here")
    snap = {"listeners": [], "connections": [{"state": "ESTABLISHED", "local": "10.9.0.2:7",
                                              "remote": "10.9.0.1:50000", "recv_q": 0, "send_q": 0}]}
    assert f"10.9.0.2:{name}" in format_ss(snap)
    assert "10.9.0.1:50000" in format_ss(snap)                 # ephemeral ports stay numeric
    assert "10.9.0.2:7 " in format_ss(snap, numeric=True) + " "


def test_sigusr1_table_has_everything():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"x\n")
            await reader.readline()
            text = stack_table(b)
            assert text.startswith("TCP connections:\n")
            assert "LISTEN" in text and "ESTAB" in text and "cwnd_bytes:" in text
            writer.close()
            server.close()
    run(main())


# -- MIB names and gauges ---------------------------------------------------------------------------
def test_mib_mapping_sums_and_excludes():
    counters = {"tcp.active_opens": 3, "tcp.retrans_segs": 7, "tcp.in.drop.bad_checksum": 2,
                "tcp.in.drop.truncated": 1, "tcp.in.drop.paws": 5, "ip.in.drop.bad_checksum": 4,
                "ip.in.drop.not_for_us": 6, "ip.in.drop.reasm_timeout": 1, "icmp.out.port_unreach": 2,
                "icmp.out.proto_unreach": 1, "tcp.quickacks": 9}
    v = mib.mib_values(counters)
    assert v["TcpActiveOpens"] == 3 and v["TcpRetransSegs"] == 7
    assert v["TcpInErrs"] == 3 and v["TcpInCsumErrors"] == 2         # malformed only, not PAWS
    assert v["TcpExtPAWSEstab"] == 5
    assert v["IpInHdrErrors"] == 4 and v["IpInAddrErrors"] == 6      # reassembly drops are not header errors
    assert v["IcmpOutDestUnreachs"] == 3
    assert list(v) == [row.name for row in mib.MIB]
    assert mib.unmapped(counters) == {"ip.in.drop.reasm_timeout": 1, "tcp.quickacks": 9}


def test_mib_names_are_unique_and_documented():
    names = [row.name for row in mib.MIB]
    assert len(names) == len(set(names))
    for name in names:
        assert name in mib.__doc__, name


def test_gauges_count_established_as_rfc_4022():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            assert mib.gauges(b)["TcpCurrEstab"] == 0
            conns = [await open_connection(a, B_ADDR, 7) for _ in range(3)]
            await _until(lambda: mib.gauges(b)["TcpCurrEstab"] == 3)
            g = mib.gauges(b)
            assert g["tcp.connections"] == 3 and g["tcp.listeners"] == 1
            for _, w in conns:
                w.close()
            server.close()
    run(main())


# -- the control socket's requests ------------------------------------------------------------------
def test_control_requests_and_malformed_ones():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            ctl = ControlServer(b, "/nonexistent/never-bound.sock")
            for bad, why in ((b"not json", "not JSON"), (b"[1, 2]", "not a JSON object"),
                             (b'{"op": "reboot"}', "unknown op"), (b'{"nop": 1}', "unknown op"),
                             (b"\xff\xfe", "not JSON"), (b'{"op": "stats", "delta": "yes"}', "delta")):
                reply = ctl.handle(bad)
                assert reply["ok"] is False and why in reply["error"], (bad, reply)
            ss = ctl.handle(b'{"op": "ss"}')
            assert ss["ok"] and ss["ss"]["listeners"][0]["local"] == f"{B_ADDR}:7"
            ping = ctl.handle(b'{"op": "ping"}')
            assert ping["ok"] and ping["addr"] == B_ADDR
            # the stack still works after the bad requests
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"still here\n")
            assert await reader.readline() == b"still here\n"
            stats = ctl.handle(b'{"op": "stats"}')
            assert stats["ok"] and stats["mib"]["TcpPassiveOpens"] == 1
            assert stats["gauges"]["TcpCurrEstab"] == 1 and stats["delta"] is False
            assert stats["counters"]["tcp.passive_opens"] == 1
            writer.close()
            server.close()
    run(main())


def test_control_delta_is_the_change_since_the_previous_delta():
    async def main():
        async with stack_pair() as (a, b):
            server = await start_server(b, echo, port=7)
            ctl = ControlServer(b, "/nonexistent/x.sock", extra_counters=lambda: {"faults.rx.lost": 4})
            first = ctl.handle(b'{"op": "stats", "delta": true}')
            assert first["counters"]["faults.rx.lost"] == 4           # first delta: since start
            reader, writer = await open_connection(a, B_ADDR, 7)
            await _until(lambda: mib.gauges(b)["TcpCurrEstab"] == 1)
            second = ctl.handle(b'{"op": "stats", "delta": true}')
            assert second["mib"]["TcpPassiveOpens"] == 1 and second["counters"]["faults.rx.lost"] == 0
            assert second["interval"] is not None and second["interval"] >= 0
            third = ctl.handle(b'{"op": "stats", "delta": true}')
            assert third["mib"]["TcpPassiveOpens"] == 0
            assert ctl.handle(b'{"op": "stats"}')["mib"]["TcpPassiveOpens"] == 1   # absolute still
            writer.close()
            server.close()
    run(main())


def test_default_path_refuses_names_that_are_not_one_component():
    assert default_path("lab1") == "/run/netstack/lab1.sock"
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ValueError):
            default_path(bad)
