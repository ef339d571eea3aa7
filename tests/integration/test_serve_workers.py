"""`netstack serve --workers 2`: a multi-queue TUN, one worker process per queue, the kernel as the peer.

- 32 concurrent kernel connections to echo, 1 MB each, come back intact, and the control socket's
  table shows connections in both workers;
- SMTP through both workers: every message delivered once, unique Maildir names and queue ids;
- a SYN-cookie round trip across workers: two worker stacks on the two queues of one TUN, the
  SYN-ACK written on the *other* queue, so the kernel's flow steering brings the ACK to the other
  worker, which accepts the cookie (shared secret and cookie clock);
- a segment on the wrong worker (its flow pinned to the other queue the same way): dropped and
  counted as tcp.in.drop.other_worker, no RST, and the connection goes on once the flow is back;
- tear-down on SIGTERM and SIGINT, and on a worker killed by SIGKILL: no namespace, device, process
  or control socket left behind.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.labkit import (OFFLOAD, PEER_ADDR, STACK_ADDR, _env, link_exists_in_root, netns_exists,
                                  remove_netns_we_created)
from tests.support.nstest import require_tun, unique_lab_name

pytestmark = pytest.mark.integration

_ECHO_CLIENT = r"""
import socket, sys, threading, hashlib
N, SIZE = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("198.18.0.2", 7), timeout=60) for _ in range(N)]
print("connected", flush=True)
sys.stdin.readline()                             # the test has looked at the table
results = [None] * N
def run(i):
    s = socks[i]
    data = hashlib.sha256(str(i).encode()).digest() * (SIZE // 32)
    got = bytearray()
    def reader():
        while True:
            b = s.recv(262144)
            if not b:
                return
            got.extend(b)
    t = threading.Thread(target=reader); t.start()
    s.sendall(data); s.shutdown(socket.SHUT_WR)
    t.join(90)
    results[i] = bytes(got) == data
threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
[t.start() for t in threads]; [t.join(120) for t in threads]
print("intact", sum(1 for r in results if r), flush=True)
"""


def _worker_pids(srv) -> list[int]:
    m = re.search(r"workers: pids ([\d ]+)\)", srv.stdout)
    assert m, srv.stdout
    return [int(p) for p in m.group(1).split()]


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def _assert_nothing_left(srv, pids) -> None:
    assert not netns_exists(srv.netns)
    assert not link_exists_in_root(srv.ifname)
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), pids
    assert not os.path.exists(f"/run/netstack/{srv.netns}.sock")


def test_32_connections_1mb_each_through_two_workers(serve_factory):
    srv = serve_factory("--workers", "2")
    assert "2 workers" in srv.stdout
    client = subprocess.Popen(["ip", "netns", "exec", srv.netns, sys.executable, "-c", _ECHO_CLIENT, "32",
                               str(1 << 20)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert client.stdout.readline().strip() == "connected"
        table = srv.netstack("ss", "-n", "--netns", srv.netns)
        assert table.returncode == 0, table.stderr
        rows = [line.split() for line in table.stdout.splitlines()[1:]]
        assert len(rows) == 32 and table.stdout.splitlines()[0].split()[-1] == "Worker"
        workers = {row[5] for row in rows}
        assert workers == {"0", "1"}, table.stdout                 # the kernel spread them over both
        client.stdin.write("go\n")
        client.stdin.flush()
        out, _ = client.communicate(timeout=180)
    finally:
        if client.poll() is None:
            client.kill()                                           # our own child, by PID
            client.wait()
    assert out.strip().endswith("intact 32"), out
    stats = srv.netstack("stats", "--json", "--netns", srv.netns)
    assert stats.returncode == 0
    assert '"TcpPassiveOpens": 32' in stats.stdout
    srv.send_signal(signal.SIGUSR1)                                 # the report, summed over the workers
    usr1 = srv.wait_stderr("workers: 2")
    assert re.search(r"^\s+32 passive_opens$", usr1, re.M), usr1
    assert srv.proc.poll() is None
    pids = _worker_pids(srv)
    assert srv.stop() == 0
    counters = srv.counters()
    assert counters["tcp.passive_opens"] == 32 and counters["serve.workers"] == 2
    assert re.search(r"workers: 2 \(0: pid \d+, (\d+) passive opens.*; 1: pid \d+, (\d+) passive opens", srv.stderr)
    for index in (0, 1):                                            # one pcap per worker, named so
        assert srv.pcap.with_name(f"{srv.pcap.stem}.w{index}.pcap").stat().st_size > 24
    _assert_nothing_left(srv, pids)


_SMTP_CLIENT = r"""
import re, smtplib, sys
ids = []
for i in range(int(sys.argv[1])):
    c = smtplib.SMTP("198.18.0.2", 25, timeout=30)
    c.ehlo("client.test")
    c.mail("a@remote.test")
    c.rcpt("bob@[198.18.0.2]")
    code, text = c.data(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
    ids.append(re.search(rb"queued as (\S+)", text).group(1).decode())
    c.quit()
print(" ".join(ids))
"""


def test_smtp_through_two_workers_unique_names_and_queue_ids(serve_factory):
    srv = serve_factory("--workers", "2", "--no-services")
    r = srv.run([sys.executable, "-c", _SMTP_CLIENT, "24"], timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    ids = r.stdout.split()
    assert len(ids) == 24 == len(set(ids))
    assert srv.stop() == 0
    files = [f for f in srv.maildir.rglob("*") if f.is_file() and f.parent.name == "new"]
    assert len(files) == 24 == len({f.name for f in files})
    m = re.search(r"smtp: (\d+) messages accepted.* in 2 workers", srv.stderr)
    assert m and m.group(1) == "24", srv.stderr
    per_worker = [int(n) for n in re.findall(r"\d: pid \d+, (\d+) passive opens", srv.stderr)]
    assert len(per_worker) == 2 and sum(per_worker) == 24 and min(per_worker) > 0, srv.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_every_worker_and_tears_down_once(serve_factory, sig):
    srv = serve_factory("--workers", "2")
    pids = _worker_pids(srv)
    assert all(not _gone(p) for p in pids) and os.path.exists(f"/run/netstack/{srv.netns}.sock")
    assert srv.stop(sig) == 0
    assert srv.stderr.count("removing namespace") <= 1
    assert "tun.in.drop.queue_full" in srv.stderr
    _assert_nothing_left(srv, pids)


def test_a_worker_killed_by_sigkill_stops_the_whole_service(serve_factory):
    srv = serve_factory("--workers", "2")
    pids = _worker_pids(srv)
    os.kill(pids[1], signal.SIGKILL)                                # our own grandchild, by PID
    srv.proc.wait(timeout=30)
    assert srv.stop() == 1
    assert re.search(rf"worker 1 \(pid {pids[1]}\) ended on its own: killed by SIGKILL; stopping every worker",
                     srv.stderr), srv.stderr
    assert "no final counters from worker(s) 1" in srv.stderr
    _assert_nothing_left(srv, pids)


# --- a SYN-cookie round trip across workers, on a real multi-queue TUN ------------------------------------------

class _CrossedSynAck:
    """A worker's link that writes its SYN-ACKs on the *other* queue, so that the kernel's flow table
    steers the rest of that flow (the ACK returning the cookie) to the other worker.

    The driver updates its flow table after the kernel has processed a written packet, and the
    kernel answers a SYN-ACK within that write: the ACK would still go by the old entry.  So a
    copy with a broken TCP checksum goes first (same flow hash; the kernel drops it silently),
    and the real SYN-ACK finds the flow already pinned to the other queue."""

    def __init__(self, own, other) -> None:
        self._own, self._other = own, other

    def __getattr__(self, name):
        return getattr(self._own, name)

    def send(self, data, meta=None) -> None:
        view = memoryview(data)
        ihl = (view[0] & 0x0F) * 4
        if view[9] == 6 and view[ihl + 13] & 0x12 == 0x12:
            bad = bytearray(view)
            bad[ihl + 16] ^= 0xFF                                    # the TCP checksum
            self._other.send(bad, None)
            self._other.send(data, meta)
        else:
            self._own.send(data, meta)


_HELLO_CLIENT = r"""
import socket
s = socket.create_connection(("198.18.0.2", 7), timeout=20)
s.sendall(b"hello across workers"); s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    got += b
print(got.decode())
"""


def test_syn_cookie_round_trip_across_workers_on_a_multiqueue_tun():
    require_tun()
    from netstack import services
    from netstack.cli.serve_workers import Shared
    from netstack.link.lab import Lab
    from netstack.stack import Stack
    from netstack.tcp import TCPConfig
    from netstack.tcp.syncookies import SynCookieMode

    name = unique_lab_name()
    lab = Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR, offload=OFFLOAD,
              queues=2)

    async def main():
        shared = Shared()
        q0, q1 = lab.links
        stacks = [Stack(_CrossedSynAck(q0, q1), STACK_ADDR, tcp=TCPConfig(syncookies=SynCookieMode.ALWAYS),
                        **shared.stack_options()),
                  Stack(_CrossedSynAck(q1, q0), STACK_ADDR, tcp=TCPConfig(syncookies=SynCookieMode.ALWAYS),
                        **shared.stack_options())]
        servers = []
        for st in stacks:
            st.start()
            servers += await services.install(st, echo_port=7, discard_port=0, chargen_port=0)
        try:
            proc = await asyncio.create_subprocess_exec(*lab.exec_prefix, sys.executable, "-c", _HELLO_CLIENT,
                                                        stdout=asyncio.subprocess.PIPE, env=_env())
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            for srv in servers:
                srv.close()
                srv.abort_clients()
            for st in stacks:
                st.close()
        return out.decode().strip(), [st.counters.snapshot() for st in stacks]

    try:
        lab.up()
        echoed, counters = asyncio.run(main())
    finally:
        lab.down()
        remove_netns_we_created(name)
    assert echoed == "hello across workers"
    sent = [c.get("tcp.syncookies.sent", 0) for c in counters]
    validated = [c.get("tcp.syncookies.validated", 0) for c in counters]
    assert sorted(sent) == [0, 1] and sorted(validated) == [0, 1], counters
    assert sent.index(1) != validated.index(1), counters                # made by one worker, taken by the other
    assert sum(c.get("tcp.out_rsts", 0) for c in counters) == 0, counters


# --- the benchmark's shape (never its timings) -----------------------------------------------------------------

def test_bench_tun_workers_runs_both_counts_and_cleans_up(tmp_path):
    import json
    require_tun()
    out = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-m", "netstack", "bench", "tun", "--workers", "1,2", "--flows", "4",
                             "--seconds", "0.5", "--repeat", "1", "--quiet-wait", "0", "--quiet", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()                                             # our own child, by PID
            proc.wait()
    assert proc.returncode == 0, stderr
    rows = {row["workers"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {1, 2} and rows[1]["ratio"] == 1.0 and rows[2]["mb_per_s"] > 0
    shares = [int(n) for n in rows[2]["share"].split("/")]
    assert len(shares) == 2 and sum(shares) > 0                     # the workers' segments, from the exit report
    assert "2 workers / 1 worker" in stdout
    left = [n for n in os.listdir("/run/netns") if n.startswith(f"nsw{proc.pid}x")]
    assert not left, left


class _Recording:
    """A worker's link that remembers the last packet it wrote."""

    def __init__(self, own) -> None:
        self._own = own
        self.last = None

    def __getattr__(self, name):
        return getattr(self._own, name)

    def send(self, data, meta=None) -> None:
        self.last = bytes(data)
        self._own.send(data, meta)


def _pin(queue, packet: bytes) -> None:
    """Pin ``packet``'s flow to ``queue`` in the driver's flow table: write a copy with a broken TCP
    checksum there (the kernel drops it; the table still notes the queue)."""
    bad = bytearray(packet)
    bad[(bad[0] & 0x0F) * 4 + 16] ^= 0xFF
    queue.send(bad, None)


_TWO_STEP_CLIENT = r"""
import socket, sys
s = socket.create_connection(("198.18.0.2", 7), timeout=20)
s.sendall(b"one")
print(s.recv(100).decode(), flush=True)
sys.stdin.readline()
s.sendall(b"two")
print(s.recv(100).decode(), flush=True)
"""


def test_a_segment_on_the_wrong_worker_is_dropped_and_counted_and_the_connection_survives():
    require_tun()
    from netstack import services
    from netstack.cli.serve_workers import Shared
    from netstack.link.lab import Lab
    from netstack.stack import Stack

    name = unique_lab_name()
    lab = Lab(netns=name, ifname=name, kernel_addr=f"{PEER_ADDR}/24", stack_addr=STACK_ADDR, offload=OFFLOAD,
              queues=2)

    async def main():
        shared = Shared()
        links = [_Recording(q) for q in lab.links]
        stacks = [Stack(link, STACK_ADDR, **shared.stack_options()) for link in links]
        servers = []
        for st in stacks:
            st.start()
            servers += await services.install(st, echo_port=7, discard_port=0, chargen_port=0)
        proc = await asyncio.create_subprocess_exec(*lab.exec_prefix, sys.executable, "-c", _TWO_STEP_CLIENT,
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                    env=_env())
        try:
            first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
            owner = next(i for i, st in enumerate(stacks) if st.tcp.connections)
            other = 1 - owner
            _pin(lab.links[other], links[owner].last)               # the kernel now sends this flow to `other`
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            deadline = time.monotonic() + 10
            while not stacks[other].counters.get("tcp.in.drop.other_worker") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            dropped = stacks[other].counters.get("tcp.in.drop.other_worker")
            _pin(lab.links[owner], links[owner].last)               # back to its worker: the retransmission lands
            second = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
            await asyncio.wait_for(proc.wait(), 10)
        finally:
            if proc.returncode is None:
                proc.kill()                                         # our own child, by PID
                await proc.wait()
            for srv in servers:
                srv.close()
                srv.abort_clients()
            for st in stacks:
                st.close()
        return first, second, dropped, owner, [st.counters.snapshot() for st in stacks]

    try:
        lab.up()
        first, second, dropped, owner, counters = asyncio.run(main())
    finally:
        lab.down()
        remove_netns_we_created(name)
    assert (first, second) == ("one", "two")
    assert dropped >= 1, counters
    assert counters[1 - owner].get("tcp.out_rsts", 0) == 0 and not counters[1 - owner].get("tcp.passive_opens")
