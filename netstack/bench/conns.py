"""Connections: how many per second (handshake, 100-byte echo, close), and the memory of an idle one.

``netstack bench conns [--seconds S] [--clients N] [--idle N] [--repeat N] [--quick] [--json FILE]``

Two measurements, each against a reference taken in the same run:

``connection rate`` (needs root and /dev/net/tun, like ``bench tun``)
    A lab of its own (a unique namespace and TUN, removed on every path).
    Kernel clients in the namespace (its ephemeral ports widened and TIME-WAIT
    reuse on, for the namespace only), ``--clients`` threads, each loop:
    connect, send 100 bytes, read the 100 echoed bytes, close, for
    ``--seconds``; once against an echo server on netstack (the stack at
    198.18.0.2, netstack's asyncio streams) and once against the *kernel's*
    own TCP in the same namespace (the same echo on asyncio's streams over
    kernel sockets, on 198.18.0.1: the reference).  Rows: connections/s, and netstack as a
    fraction of the kernel.
``idle connection memory`` (no root: two stacks on the in-memory link)
    ``--idle`` connections are opened from one stack to a listener on the
    other and left ESTABLISHED; the growth of the Python heap
    (``tracemalloc``) divided by the number of connection ends (each
    connection has one on each stack) is the memory of one idle
    established connection.  The reference is an empty ``dict`` per end,
    the least any Python object with state costs.  Buffers hold no data when idle
    (``bytearray()`` grows only with data).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import tracemalloc

from netstack.bench import report
from netstack.bench.report import BenchError

KERNEL_ADDR = "198.18.0.1"
STACK_ADDR = "198.18.0.2"
STACK_PORT = 7
KERNEL_PORT = 7007
DEFAULT_SECONDS, QUICK_SECONDS = 5.0, 1.5
DEFAULT_CLIENTS = 4
DEFAULT_IDLE, QUICK_IDLE = 10_000, 2_000
DEFAULT_REPEAT, QUICK_REPEAT = 3, 1

COLUMNS = [
    report.Column("what", "what", "{}", "<"),
    report.Column("value", "value", "{:,.0f}"),
    report.Column("unit", "unit", "{}", "<"),
    report.Column("reference", "reference", "{:,.0f}"),
    report.Column("ratio", "x reference", "{:.2f}"),
    report.SPREAD,
]

#: Kernel clients in the namespace: threads doing connect / echo 100 bytes / close for S seconds.
RATE_CLIENTS = r"""
import json, socket, sys, threading, time
addr, port, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
counts, errors = [0] * threads, [0] * threads
payload = bytes(range(100))
end = time.monotonic() + seconds
def run(i):
    while time.monotonic() < end:
        try:
            with socket.create_connection((addr, port), timeout=5) as s:
                s.sendall(payload)
                got = b""
                while len(got) < 100:
                    chunk = s.recv(100 - len(got))
                    if not chunk:
                        break
                    got += chunk
                if got != payload:
                    errors[i] += 1
                    continue
            counts[i] += 1
        except OSError:
            errors[i] += 1
t0 = time.monotonic()
ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
[t.start() for t in ts]
[t.join(seconds + 10) for t in ts]
print(json.dumps({"connections": sum(counts), "errors": sum(errors), "seconds": time.monotonic() - t0}), flush=True)
"""

#: The kernel's own echo server in the namespace (the reference), bounded in time.
KERNEL_ECHO = r"""
import asyncio, sys
addr, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(echo, addr, port, backlog=1024, reuse_address=True)
    print("ready", flush=True)
    await asyncio.sleep(limit)
    server.close()
asyncio.run(main())
"""


# --- connection rate ---------------------------------------------------------------------------------

def _clients(lab, addr: str, port: int, threads: int, seconds: float) -> dict:
    r = subprocess.run(lab.exec_prefix + [sys.executable, "-c", RATE_CLIENTS, addr, str(port), str(threads),
                                          str(seconds)], capture_output=True, text=True, timeout=seconds + 30)
    if r.returncode != 0:
        raise BenchError(f"the kernel clients failed: {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


async def _netstack_rate(lab, threads: int, seconds: float) -> dict:
    from netstack.services import echo
    from netstack.stack import Stack

    async with Stack(lab.link, STACK_ADDR) as stack:
        server = await stack.start_server(echo, port=STACK_PORT, backlog=1024)
        try:
            return await asyncio.to_thread(_clients, lab, STACK_ADDR, STACK_PORT, threads, seconds)
        finally:
            server.close()


def _kernel_rate(lab, threads: int, seconds: float) -> dict:
    srv = subprocess.Popen(lab.exec_prefix + [sys.executable, "-c", KERNEL_ECHO, KERNEL_ADDR, str(KERNEL_PORT),
                                              str(seconds + 20)], stdout=subprocess.PIPE, text=True)
    try:
        if srv.stdout.readline().strip() != "ready":
            raise BenchError("the kernel echo server did not start")
        return _clients(lab, KERNEL_ADDR, KERNEL_PORT, threads, seconds)
    finally:
        srv.kill()                                   # our own child, by PID
        srv.wait(5)


def connection_rate(*, seconds: float, threads: int, repeat: int, progress, warmup: int = 0) -> dict:
    from netstack.bench.tun import unique_name
    from netstack.link.lab import Lab, LabError

    name = unique_name()
    lab = Lab(netns=name, ifname=name, kernel_addr=f"{KERNEL_ADDR}/24", stack_addr=STACK_ADDR, mtu=1500)
    try:
        lab.up()
    except LabError as exc:
        raise BenchError(f"cannot set up the lab: {exc}") from None
    ours, kernel = [], []
    try:
        # Thousands of connections a second from the kernel clients: widen their ephemeral ports
        # and let them reuse TIME-WAIT (both per namespace: only the lab's kernel changes).
        subprocess.run(lab.exec_prefix + ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000",
                                          "net.ipv4.tcp_tw_reuse=1"], check=False, timeout=10,
                       capture_output=True)
        for i in range(warmup + repeat):             # the first `warmup` rounds are discarded
            progress.step("netstack echo")
            r = asyncio.run(_netstack_rate(lab, threads, seconds))
            progress.step("kernel echo")
            k = _kernel_rate(lab, threads, seconds)
            if r["errors"] or k["errors"]:
                raise BenchError(f"failed connections: netstack {r['errors']}, kernel {k['errors']}")
            if i >= warmup:
                ours.append(r["connections"] / r["seconds"])
                kernel.append(k["connections"] / k["seconds"])
    finally:
        lab.down()
    return {"ours": statistics.median(ours), "kernel": statistics.median(kernel), "runs": ours, "lab": name}


# --- idle connection memory ----------------------------------------------------------------------------

async def _open_idle(n: int) -> int:
    """Open ``n`` connections between two in-memory stacks; return the heap growth in bytes."""
    from netstack.link.memory import MemoryLink
    from netstack.stack import Stack
    from netstack.tcp import TCPConfig

    a_link, b_link = MemoryLink.pair()
    cfg = TCPConfig(max_connections=4 * n)
    async with Stack(a_link, "10.0.0.1", tcp=cfg) as a, Stack(b_link, "10.0.0.2", tcp=cfg) as b:
        lst = b.tcp.listen(80, backlog=n)
        await asyncio.sleep(0)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conns = []
        for i in range(n):
            conns.append(a.tcp.connect(b.addr, 80, a.clock()))
            a.kick()
            if i % 200 == 199:
                await asyncio.sleep(0.01)
        deadline = time.monotonic() + 60
        while (sum(c.established for c in conns) < n or lst.pending < n) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        accepted = [lst.accept() for _ in range(lst.pending)]
        await asyncio.sleep(0.3)                      # let the last ACKs and timers settle
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        if sum(c.established for c in conns) < n or len(accepted) < n:
            raise BenchError(f"only {sum(c.established for c in conns)} of {n} connections opened")
        for c in conns:
            c.abort()
        return grown


def _reference_bytes(n: int) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [{} for _ in range(2 * n)]
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del keep
    return grown


def idle_memory(n: int) -> dict:
    grown = asyncio.run(_open_idle(n))
    return {"per_connection": grown / (2 * n), "reference": _reference_bytes(n) / (2 * n)}


# --- command line -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=report._positive_float, metavar="S",
                        help=f"seconds of connections per measurement (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--clients", type=report._positive_int, default=DEFAULT_CLIENTS, metavar="N",
                        help=f"kernel client threads (default {DEFAULT_CLIENTS})")
    parser.add_argument("--idle", type=report._positive_int, metavar="N",
                        help=f"idle connections for the memory figure (default {DEFAULT_IDLE})")
    parser.add_argument("--repeat", type=report._positive_int, metavar="N",
                        help=f"rounds of the rate measurement, median shown (default {DEFAULT_REPEAT})")
    report.add_warmup_argument(parser, default=0)
    parser.add_argument("--no-rate", action="store_true", help="only the memory figure (no root needed)")
    parser.add_argument("--quick", action="store_true", help="short runs: a rough picture")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE ('-' for stdout)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    problem = report.check_writable(args.json)
    if problem:
        print(f"netstack bench conns: {problem}", file=sys.stderr)
        return 2
    seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    idle = args.idle or (QUICK_IDLE if args.quick else DEFAULT_IDLE)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if idle > 16000:
        print("netstack bench conns: --idle is at most 16000 (the ephemeral port range)", file=sys.stderr)
        return 2
    rows = []
    progress = report.Progress(0, "bench conns", quiet=args.quiet)
    try:
        if not args.no_rate:
            from netstack.link.lab import LabError, check_privileges
            try:
                check_privileges()
            except LabError as exc:
                print(f"netstack bench conns: {exc} (--no-rate measures the memory alone)", file=sys.stderr)
                return 2
            rate = connection_rate(seconds=seconds, threads=args.clients, repeat=repeat, progress=progress,
                                   warmup=args.warmup)
            rows.append({"what": "connection rate (connect, echo 100 B, close)", "value": rate["ours"],
                         "runs": rate["runs"],
                         "unit": "conn/s", "reference": rate["kernel"],
                         "ratio": rate["ours"] / rate["kernel"] if rate["kernel"] else None})
        progress.step("idle connections")
        mem = idle_memory(idle)
        rows.append({"what": f"idle established connection ({idle:,} open)", "value": mem["per_connection"],
                     "unit": "bytes", "reference": mem["reference"],
                     "ratio": mem["per_connection"] / mem["reference"] if mem["reference"] else None})
    except BenchError as exc:
        print(f"netstack bench conns: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netstack bench conns: interrupted", file=sys.stderr)
        return 130
    progress.finish()
    report.add_spread(rows, "runs", "value")
    warnings = report.spread_warnings(rows, lambda r: r["what"])
    env = report.environment()
    print(f"conns: {env['python']}; {env['cpu']}; {env['cpus']} CPUs")
    print(f"rate: {args.clients} kernel client threads, {seconds:g} s per measurement, median of {repeat} "
          f"after {args.warmup} warm-up; "
          f"reference: the kernel's own TCP echo in the same namespace")
    print(f"memory: Python heap growth (tracemalloc) per connection end; reference: an empty dict per end")
    print()
    print(report.format_table(COLUMNS, rows))
    for w in warnings:
        print(w)
    if args.json:
        try:
            report.write_json(args.json, "conns", COLUMNS, rows, key=["what"],
                              warnings=warnings, settings={"seconds": seconds, "clients": args.clients, "idle": idle,
                                                           "repeat": repeat, "warmup": args.warmup})
        except OSError as exc:
            print(f"netstack bench conns: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0
