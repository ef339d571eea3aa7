"""netstack's TCP against the real Linux kernel, over the TUN in a lab namespace.

The kernel side is plain Python sockets run inside the namespace
(_tcp_kernel_peer.py).  Our side is `netstack serve` (services echo 7,
discard 9, chargen 19) as a subprocess, or, where the test must drive our
side (active open, our close), a Stack on the lab's TUN in this process.
Every namespace is uniquely named and removed afterwards (conftest fixtures).
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.labkit import PEER_ADDR, STACK_ADDR
from tests.support.tcp_fixtures import (PEER, LabStack, kernel_peer, kernel_peer_async, nft_drop_count, nft_random_drop,
                          ss_tan, tshark_fields, tshark_problems, tun_drops)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MB = 1024 * 1024


def _rate(result) -> str:
    return f"{result['bytes'] / result['seconds'] / 1e6:.1f} MB/s"


def _usr1_report(srv, timeout: float = 10.0) -> str:
    """Send SIGUSR1 to `netstack serve` and return the report it prints (on stderr)."""
    before = len(srv.stderr_so_far)
    srv.send_signal(signal.SIGUSR1)
    srv.wait_stderr("TCP connections:", since=before, timeout=timeout)
    time.sleep(0.3)                      # the rest of the report follows at once
    return srv.stderr_so_far[before:]


def test_kernel_connects_to_echo_options_negotiated_1mb(serve):
    result = kernel_peer(serve.netns, "echo", STACK_ADDR, 7, 1 * MB, 1)
    assert result["ok"], result
    assert result["bytes"] == 1 * MB
    drops = tun_drops(serve.netns, serve.ifname)
    serve.stop()

    fields = ("tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.timestamp.tsval",
              "tcp.options.timestamp.tsecr", "tcp.options.sack_perm", "tcp.window_size_value")
    syn = tshark_fields(serve.pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 7", *fields)
    synack = tshark_fields(serve.pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.srcport == 7", *fields)
    assert syn and synack, (syn, synack)
    k_mss, k_ws, k_tsval, _, k_sack, _ = syn[0]
    assert k_mss and k_ws and k_tsval and k_sack           # Linux offers all four
    mss, ws, tsval, tsecr, sack, win = synack[0]
    assert int(mss) == 1460                                 # MTU 1500 - 40
    assert ws != "" and 0 <= int(ws) <= 14                  # RFC 7323 window scale, offered back
    assert tsval != "" and int(tsecr) in {int(s[2]) for s in syn}   # TSecr echoes the SYN's TSval
    assert sack != ""                                        # SACK-permitted
    assert int(win) > 0
    for again in synack[1:]:                                 # a retransmitted SYN-ACK carries the same offer
        assert (again[0], again[1], again[4]) == (mss, ws, sack)

    # the session reads clean in tshark (no gap either, when nothing was dropped)
    assert tshark_problems(serve.pcap, gaps=(drops == 0)) == []


def test_kernel_discard_50mb_and_chargen_50mb(serve):
    d = kernel_peer(serve.netns, "discard", STACK_ADDR, 9, 50 * MB)
    assert d["ok"] and d["bytes"] == 50 * MB, d
    c = kernel_peer(serve.netns, "chargen", STACK_ADDR, 19, 50 * MB)
    assert c["ok"] and c["bytes"] == 50 * MB, c
    print(f"\nkernel -> stack (discard): {_rate(d)}; stack -> kernel (chargen): {_rate(c)}")
    assert serve.proc.poll() is None                  # the chargen reset did not hurt the server
    drops = tun_drops(serve.netns, serve.ifname)
    serve.stop()
    counters = serve.counters()
    assert counters.get("tcp.passive_opens", 0) >= 2
    assert tshark_problems(serve.pcap, gaps=(drops == 0)) == []


def test_rst_to_closed_port_gives_econnrefused(serve):
    r = kernel_peer(serve.netns, "refused", STACK_ADDR, 4444)
    assert r == {"errno": "ECONNREFUSED", "type": "ConnectionRefusedError"}


def test_close_by_kernel_first_kernel_in_time_wait(serve):
    r = kernel_peer(serve.netns, "close-first", STACK_ADDR, 7)
    assert r["ok"], r
    port = r["port"]
    rows = [row for row in ss_tan(serve.netns) if row[1] == f"{PEER_ADDR}:{port}"]
    assert rows and rows[0][0] == "TIME-WAIT", rows       # the active closer holds TIME-WAIT
    # our side went CLOSE-WAIT -> LAST-ACK -> CLOSED: gone from the connection table
    report = _usr1_report(serve)
    table = report.split("TCP connections:", 1)[1]
    assert f"{PEER_ADDR}:{port}" not in table, table
    assert "LISTEN" in table and f"{STACK_ADDR}:7" in table


def test_sigusr1_prints_connection_table_and_counters(serve):
    argv = ["ip", "netns", "exec", serve.netns, sys.executable, PEER, "hold", STACK_ADDR, "7"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        port = int(re.search(r'"port": (\d+)', first).group(1))
        report = _usr1_report(serve)
        assert "tcp:" in report and "in_segs" in report            # the counters
        table = report.split("TCP connections:", 1)[1]
        row = [line for line in table.splitlines() if f"{PEER_ADDR}:{port}" in line]
        assert row and row[0].startswith("ESTAB"), table
        detail = table.splitlines()[table.splitlines().index(row[0]) + 1]
        # mss: 1460 announced, 1448 per segment once 12 bytes of timestamps ride along
        for word in ("ts", "sack", "wscale:", "rto:", "rtt:", "mss:1448", "cwnd:", "snd_una:", "rcv_nxt:"):
            assert word in detail, detail
    finally:
        try:
            proc.communicate("\n", timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_stack_active_open_10mb_each_way_and_stack_closes_first(lab, tmp_path):
    """Our stack connects out to a kernel listener, 10 MB each way; then our
    side closes first in a second connection and ends in TIME-WAIT."""
    from netstack.sockets import open_connection, start_server
    from netstack.sockets.table import stack_table
    size = 10 * MB
    pcap = tmp_path / "active.pcap"
    ours = random.Random(8).randbytes(size)
    theirs = hashlib.sha256(random.Random(7).randbytes(size)).hexdigest()
    found = {}

    async def main():
        async with LabStack(lab, pcap) as stack:
            loop = asyncio.get_running_loop()
            listening = loop.create_future()

            def on_line(obj):
                if "listening" in obj and not listening.done():
                    listening.set_result(obj["listening"])

            peer = asyncio.ensure_future(kernel_peer_async(lab.netns, "listen", PEER_ADDR, 5201, size, 7,
                                                           on_line=on_line))
            port = await asyncio.wait_for(asyncio.shield(listening), 30)
            t0 = time.monotonic()
            reader, writer = await open_connection(stack, PEER_ADDR, port)

            async def send():
                writer.write(ours)
                await writer.drain()
                writer.write_eof()
            sending = asyncio.ensure_future(send())
            h, n = hashlib.sha256(), 0
            while chunk := await reader.read(1 << 16):
                h.update(chunk)
                n += len(chunk)
            await sending
            result = await peer
            found["seconds"] = time.monotonic() - t0
            found["got"] = (n, h.hexdigest())
            found["peer"] = result
            writer.close()
            await writer.wait_closed()

            # our side closes first: we must hold TIME-WAIT, the kernel must not
            async def bye(r, w):
                w.write(b"bye\n")
                await w.drain()
                w.close()
            server = await start_server(stack, bye, port=7070)
            res = await kernel_peer_async(lab.netns, "wait-close", STACK_ADDR, 7070)
            key = next(k for k in stack.tcp.connections if k[1] == res["port"])   # (raddr, rport, lport)
            found["our_state"] = str(stack.tcp.connections[key].state)
            found["table"] = stack_table(stack)
            found["kernel_rows"] = [row for row in ss_tan(lab.netns) if row[1] == f"{PEER_ADDR}:{res['port']}"]
            found["bye_port"] = res["port"]
            found["drops"] = tun_drops(lab.netns, lab.ifname)
            server.close()

    asyncio.run(asyncio.wait_for(main(), 200))
    assert found["got"] == (size, theirs)
    assert found["peer"]["bytes"] == size and found["peer"]["sha256"] == hashlib.sha256(ours).hexdigest()
    print(f"\nactive open, 10 MB each way at once: {2 * size / found['seconds'] / 1e6:.1f} MB/s total")
    assert found["our_state"] == "TIME-WAIT"
    assert any(line.startswith("TIME-WAIT") and f":{found['bye_port']}" in line
               for line in found["table"].splitlines())
    assert not any(row[0] == "TIME-WAIT" for row in found["kernel_rows"]), found["kernel_rows"]
    assert tshark_problems(pcap, gaps=(found["drops"] == 0)) == []


def test_impaired_10mb_each_way(serve_factory):
    """Faults on our link both ways (5% loss, 25% reordering, 5 ms delay, seeded)
    plus 5% random drops by nftables on the kernel's output: 10 MB each way intact."""
    srv = serve_factory("--faults", "loss=5%,reorder=25%,delay=5ms,seed=1")
    nft_random_drop(srv.netns, 5, STACK_ADDR)
    r = kernel_peer(srv.netns, "echo", STACK_ADDR, 7, 10 * MB, 3, timeout=200)
    assert r["ok"] and r["bytes"] == 10 * MB, r
    drops = nft_drop_count(srv.netns)
    print(f"\nimpaired echo, 10 MB each way: {_rate(r)} each way; nft dropped {drops}")
    assert drops > 0
    srv.stop()
    c = srv.counters()
    assert c.get("faults.tx.lost", 0) > 0 and c.get("faults.rx.lost", 0) > 0
    assert c.get("tcp.retrans_segs", 0) > 0


def test_serve_service_options_move_and_disable(serve_factory):
    srv = serve_factory("--echo-port", "7007", "--chargen-port", "0")
    r = kernel_peer(srv.netns, "echo", STACK_ADDR, 7007, 64 * 1024, 5)
    assert r["ok"], r
    for port in (7, 19):                       # moved away / turned off: nothing listens
        assert kernel_peer(srv.netns, "refused", STACK_ADDR, port)["errno"] == "ECONNREFUSED"
    assert kernel_peer(srv.netns, "discard", STACK_ADDR, 9, 1024)["ok"]
    srv2 = serve_factory("--no-services")
    for port in (7, 9, 19):
        assert kernel_peer(srv2.netns, "refused", STACK_ADDR, port)["errno"] == "ECONNREFUSED"
