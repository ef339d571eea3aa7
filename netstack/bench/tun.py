"""Bulk TCP through a real TUN with the Linux kernel as the peer, against the raw read ceiling.

``netstack bench tun [--mb N] [--mtu N] [--repeat N] [--quick] [--json FILE] [--profile FILE [--profile-row ROW]]``
``netstack bench tun --loss 0,1,5 [--mb N] [--repeat N] ...``: goodput under loss instead
(netstack/bench/_loss.py: CUBIC+SACK+RACK, NewReno+SACK, NewReno without SACK, both directions)
``netstack bench tun --workers 1,2 [--flows 8] [--seconds 5]``: ``netstack serve --workers N``
under parallel kernel -> stack flows instead, aggregate goodput per worker count
(netstack/bench/workers.py)

Needs root (or CAP_NET_ADMIN) and /dev/net/tun.  The benchmark creates its
own lab (:class:`netstack.link.lab.Lab`): a namespace and a TUN device with
a name unique to this process (``nsb<pid>x<n>``), the kernel at 198.18.0.1,
the stack at 198.18.0.2, and removes both on every path (errors, Ctrl-C and
SIGTERM included).  The kernel side runs as ``ip netns exec NS python3 -c
...`` subprocesses, each bounded in bytes and time and killed (by its own
PID) if it overstays.  Nothing leaves the namespace.

Each run measures, one after another on the same TUN:

``read ceiling``
    the I/O ceiling: how fast Python merely reads packets off the same TUN.
    A kernel UDP sender in the namespace queues bursts of about 4000
    MTU-sized packets into the TUN (64000-byte datagrams that the kernel
    cuts into fragments; the TUN queue is raised to hold a burst meanwhile),
    and after each burst a tight loop of ``TunLink.recv_batch(64)`` reads
    the queue empty, counting packets and bytes.  Only the reading is timed,
    so the sender never competes with the reader for a CPU.  No stack runs
    meanwhile.  Bounded by ``--flood-packets`` and ``--flood-seconds``.
``ACK-only loop``
    the reference for the receive path: the same kernel client sends the
    same bytes to a plain Python loop on the same TUN that answers the
    handshake and then only unpacks headers and writes an ACK (with
    timestamps) for every second segment, as the stack does with MSS-sized
    ones (with super-segments the stack ACKs once per application read,
    netstack/tcp/delack.py): no checksum check, no buffering, no
    application.  What any Python TCP receiver pays at least, per packet,
    for reading and ACKing through a TUN.
``kernel -> stack``
    a kernel TCP client sends ``--mb`` MB to a sink listener on the stack
    (netstack's asyncio streams, reading and discarding like the discard
    service, counting bytes), then half-closes; timed on the stack from the
    accepted connection to the end of the stream.  A fresh
    :class:`~netstack.stack.Stack` with TCP (MSS from ``--mtu``) serves it.
``stack -> kernel``
    the stack connects to a kernel listener in the namespace, writes
    ``--mb`` MB through ``StreamWriter.write``/``drain`` and closes; the
    listener reads and discards, timed in the kernel from accept to EOF.

Columns: MB/s (10^6 bytes/s of payload; for the ceiling, of whole
packets); packets/s (data segments for the transfers, counted by the
stack's ``tcp.in_segs``/``tcp.out_segs``); ``of ceiling``, packets/s over
the read ceiling's packets/s of the same run; ``of ACK-only``, packets/s
over the ACK-only loop's (receive direction only); ACKs sent per data
segment received; CPU time of this process (user + system,
``time.process_time``) per packet; seconds.  Figures are medians over
``--repeat`` rounds (after ``--warmup`` discarded ones, default 0), the four
measurements interleaved within each round; the last column shows how the
rounds' packets/s spread around the median.

On a machine shared with other work the CPU figure is the steadier one:
wall-clock rates drop when another process takes the CPU, CPU time per
packet does not.  System time includes kernel work done inside our system
calls: a ``write`` of an ACK to the TUN runs the kernel's TCP input for it,
which sends the next segments (into the TUN) within the same call; the
ACK-only loop pays that too, so "CPU us/packet" minus the ACK-only loop's
is what the stack itself costs per segment.

With ``--offload`` (the default where the kernel offers TUN offloads;
``--no-offload`` leaves them out) a second lab, its TUN opened with the
virtio-net header and ``TUN_F_CSUM | TUN_F_TSO4``, runs four more rows in
the same rounds: ``ACK-only loop, offloads`` (the same loop, now handed
64 KB super-segments: the reference), ``kernel -> stack, offloads`` (the
same asyncio streams sink), ``kernel -> stack, BufferedProtocol, offloads``
(the same transfer into an ``asyncio.BufferedProtocol`` sink on
``create_server``, as a high-throughput application writes it: one 256 KB
bytearray reused, bytes counted; the transport copies TCP's receive buffer
straight into it, with no ``bytes`` object and no StreamReader buffer in
between) and ``stack -> kernel, offloads`` (TSO: the stack sends
super-segments, the kernel cuts them).  Their packets are super-segments,
so compare them in MB/s: ``of ACK-only`` is MB/s over the ACK-only loop's of
the same mode.

``--profile FILE`` adds one more transfer under cProfile (not part of the
figures) and prints where its time went per segment: kernel -> stack by
default, ``--profile-row`` picks one of the offload lab's receive rows.

Targets: kernel -> stack at least 60 MB/s at MTU 1500; with offloads,
kernel -> stack at least 5x the same run without and 0.6 of the offload
ACK-only loop (shown for both sinks), stack -> kernel at least 3x without.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import time

from netstack.bench import report
from netstack.bench.report import BenchError
from netstack.bench._args import bounded
from netstack.tcp.segment import pack_ts_header

KERNEL_ADDR = "198.18.0.1"
STACK_ADDR = "198.18.0.2"
SINK_PORT = 5001             # the stack's sink listener
SINKS = ("streams", "buffered")   # kernel_to_stack's sink applications
KERNEL_PORT = 5002           # the kernel's listener for stack -> kernel
FLOOD_PORT = 9               # UDP; nothing listens: no stack runs during the flood

DEFAULT_MB = 20
QUICK_MB = 5
DEFAULT_REPEAT = 3
QUICK_REPEAT = 1
DEFAULT_FLOOD_PACKETS = 200_000
QUICK_FLOOD_PACKETS = 50_000
DEFAULT_FLOOD_SECONDS = 5.0
FLOOD_DATAGRAM = 64000
BURST_PACKETS = 4000
TARGET_MBPS = 60.0
TARGET_OFFLOAD_K2S = 5.0            # kernel -> stack with offloads / without
TARGET_OFFLOAD_OF_ACK_ONLY = 0.6    # kernel -> stack with offloads / the offload ACK-only loop
TARGET_OFFLOAD_S2K = 3.0            # stack -> kernel with offloads / without

COLUMNS = [
    report.Column("path", "path", "{}", "<"),
    report.Column("mb_per_s", "MB/s", "{:.1f}"),
    report.Column("packets_per_s", "packets/s", "{:,.0f}"),
    report.Column("of_ceiling", "of ceiling", "{:.2f}"),
    report.Column("of_ack_only", "of ACK-only", "{:.2f}"),
    report.Column("acks_per_segment", "ACKs/segment", "{:.3f}"),
    report.Column("cpu_us_per_packet", "CPU us/packet", "{:.2f}"),
    report.Column("seconds", "seconds", "{:.2f}"),
    report.SPREAD,
]
KEY = ("path",)
FIGURE = ("packets_per_s", "higher")

# --- the kernel side (each runs as `ip netns exec NS python3 -c SCRIPT args...`) -----------------

KERNEL_CLIENT = r"""
import json, socket, sys, time
addr, port, total, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + limit
s = socket.create_connection((addr, port), timeout=limit)
block = memoryview(bytes(range(256)) * 256)
t0 = time.monotonic()
sent = 0
while sent < total:
    if time.monotonic() > deadline:
        sys.exit("kernel client: time limit reached after %d bytes" % sent)
    sent += s.send(block[:min(len(block), total - sent)])
s.shutdown(socket.SHUT_WR)
while s.recv(65536):          # until the stack's FIN: everything was read by the sink
    pass
t1 = time.monotonic()
s.close()
print(json.dumps({"sent": sent, "seconds": t1 - t0}), flush=True)
"""

KERNEL_LISTENER = r"""
import json, socket, sys, time
addr, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(1)
ls.settimeout(limit)
print("ready", flush=True)
c, _ = ls.accept()
c.settimeout(limit)
t0 = time.monotonic()
buf = bytearray(262144)
n = 0
while True:
    k = c.recv_into(buf)
    if not k:
        break
    n += k
t1 = time.monotonic()
c.close()
ls.close()
print(json.dumps({"received": n, "seconds": t1 - t0}), flush=True)
"""

KERNEL_FLOOD = r"""
import socket, sys, time
addr, port, size, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = bytes(size)
end = time.monotonic() + limit
for line in sys.stdin:              # "N": send N datagrams, answer "sent"; 0 or EOF: stop
    n = int(line)
    if n <= 0 or time.monotonic() > end:
        break
    for _ in range(n):
        try:
            s.sendto(data, (addr, port))
        except OSError:
            pass
    print("sent", flush=True)
"""


_names = itertools.count()


def unique_name() -> str:
    """A namespace/interface name unique to this process and not in use (<= 15 chars)."""
    while True:
        name = f"nsb{os.getpid() % 100000}x{next(_names)}"[:15]
        if not os.path.exists(f"/run/netns/{name}") and not os.path.exists(f"/sys/class/net/{name}"):
            return name


def _in_ns(lab, script: str, *args) -> list[str]:
    return lab.exec_prefix + [sys.executable, "-c", script, *map(str, args)]


async def _reap(proc) -> None:
    """Kill (if still running) and wait for one of our own asyncio subprocesses, bounded."""
    if proc is None:
        return
    _kill(proc)
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            pass


def _kill(proc) -> None:
    """Kill one of our own subprocesses (by its PID) and reap it."""
    if proc is None:
        return
    try:
        if proc.returncode is None:
            proc.kill()
    except ProcessLookupError:
        pass


# --- the read ceiling ------------------------------------------------------------------------------


def read_ceiling(lab, *, packets: int, seconds: float, datagram: int = FLOOD_DATAGRAM,
                 burst: int = BURST_PACKETS) -> dict:
    """How fast Python merely reads packets off the TUN (the I/O ceiling).

    In bursts: the kernel sender (one process for the whole measurement)
    queues about ``burst`` MTU-sized packets into the TUN (64000-byte UDP
    datagrams that the kernel fragments, so a burst is a few system calls),
    and only when it has finished does a tight loop of
    ``TunLink.recv_batch(64)`` read the queue empty; only the reading is
    timed, so the sender never competes for the CPU with the reader.  The
    TUN's queue is raised to hold a whole burst meanwhile (and restored).
    Bounded by ``packets`` packets read and by ``seconds`` of wall time.
    """
    link = lab.link
    per_datagram = -(-(datagram + 8) // ((lab.mtu - 20) & ~7))
    datagrams = max(1, burst // per_datagram)
    _drain(link)
    old_qlen = _set_txqlen(lab, burst + 1024)
    proc = subprocess.Popen(_in_ns(lab, KERNEL_FLOOD, STACK_ADDR, FLOOD_PORT, datagram, seconds + 5),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    recv_batch = link.recv_batch
    perf = time.perf_counter
    cpu = time.process_time
    n = nbytes = bursts = 0
    elapsed = cpu_s = 0.0
    end = time.monotonic() + seconds
    try:
        while n < packets and time.monotonic() < end:
            proc.stdin.write(f"{datagrams}\n")
            proc.stdin.flush()
            if not select.select([proc.stdout], [], [], 5)[0] or proc.stdout.readline().strip() != "sent":
                break
            time.sleep(0.002)             # let the qdisc hand the last fragments to the TUN
            t0 = perf()
            c0 = cpu()
            got = 0
            while True:
                batch = recv_batch(64)
                if not batch:
                    break
                got += len(batch)
                for view, _meta in batch:
                    nbytes += len(view)
            elapsed += perf() - t0
            cpu_s += cpu() - c0
            n += got
            bursts += 1
        err = ""
        try:
            _, err = proc.communicate("0\n", timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    finally:
        _kill(proc)
        if old_qlen is not None:
            _set_txqlen(lab, old_qlen)
    if n < 2 or elapsed <= 0:
        raise BenchError(f"the kernel flood reached the TUN with {n} packets only "
                         f"({(err or '').strip()[-200:]})")
    return {"packets": n, "bytes": nbytes, "seconds": elapsed, "packets_per_s": n / elapsed,
            "mb_per_s": nbytes / elapsed / 1e6, "bursts": bursts, "packets_per_burst": n / bursts,
            "cpu_seconds": cpu_s, "cpu_us_per_segment": cpu_s / n * 1e6}


def _set_txqlen(lab, qlen: int) -> int | None:
    """Set the TUN's transmit queue length inside the lab; returns the old one (None if not possible)."""
    try:
        from pyroute2 import NetNS
        with NetNS(lab.netns) as ns:
            idx = ns.link_lookup(ifname=lab.ifname)[0]
            old = ns.get_links(idx)[0].get_attr("IFLA_TXQLEN")
            ns.link("set", index=idx, txqlen=qlen)
            return old
    except Exception:
        return None


def _drain(link) -> None:
    while link.recv_batch(64):
        pass


# --- the ACK-only reference -------------------------------------------------------------------------

_IP_HDR = struct.Struct("!BBHHHBBHII")
_TCP_HDR = struct.Struct("!HHIIHHHH")
_IP_ACK_HDR = struct.Struct("!BBHHHBBHII")                  # the IPv4 header of a 52-byte ACK
ACK_ONLY_PORT = 5003
ACK_ONLY_WSCALE = 7
ACK_ONLY_WINDOW = 256 * 1024                                 # what the stack offers too


def _fold(total: int) -> int:
    """RFC 1071 checksum from a plain integer sum of 16-bit words (32-bit fields count as their halves)."""
    s = total % 0xFFFF
    return 0xFFFF - s if s else 0


def _ack_packet(src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr, ident) -> bytes:
    """A 52-byte IPv4 + TCP (NOP,NOP,TS) packet, both checksums computed from the fields; the TCP
    part is the stack's own pure-ACK template (netstack.tcp.segment.pack_ts_header)."""
    buf = bytearray(52)
    _IP_ACK_HDR.pack_into(buf, 0, 0x45, 0, 52, ident, 0x4000, 64, 6,
                          _fold(0x4500 + 52 + ident + 0x4000 + (64 << 8 | 6) + src + dst), src, dst)
    pack_ts_header(buf, 20, src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr)
    return bytes(buf)


def ack_only(lab, nbytes: int, limit: float) -> dict:
    """The reference for kernel -> stack: a Python loop that only receives and ACKs, on the same TUN.

    No stack runs.  A plain loop reads with ``TunLink.recv_batch(64)`` (and
    ``select`` when the queue is empty), answers the kernel client's SYN
    with a SYN-ACK offering what the stack offers (MSS from the MTU, window
    scale 7, timestamps, a 256 KiB window), then for every data segment only
    unpacks the headers, advances RCV.NXT when in order, and writes an ACK
    (with timestamps) for every second segment, an immediate one for
    anything out of order; a FIN is answered with FIN-ACK.  No checksum
    verification, no buffering, no application: the least a Python TCP
    receiver can do per packet, through the same TUN, with the same ACK
    rate as the stack.
    """
    from netstack.wire.ipv4 import ip2int

    link = lab.link
    fd = link.fileno()
    me, peer = ip2int(STACK_ADDR), ip2int(KERNEL_ADDR)
    mss = lab.mtu - 40
    _drain(link)
    proc = subprocess.Popen(_in_ns(lab, KERNEL_CLIENT, STACK_ADDR, ACK_ONLY_PORT, nbytes, limit),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    send = link.send
    recv_batch = link.recv_batch
    unpack_ip = _IP_HDR.unpack_from
    unpack_tcp = _TCP_HDR.unpack_from
    iss = 0x10000000
    snd_nxt = iss
    rcv_nxt = None
    sport = 0
    tsecr = 0
    ident = 0
    window = ACK_ONLY_WINDOW >> ACK_ONLY_WSCALE
    segments = acks = received = pending = 0
    t_first = t_end = None
    cpu0 = None
    deadline = time.monotonic() + limit
    t0_clock = time.monotonic()
    done = False
    try:
        while not done and time.monotonic() < deadline:
            batch = recv_batch(64)
            if not batch:
                if proc.poll() is not None and proc.returncode != 0:
                    break
                select.select([fd], [], [], 0.05)
                continue
            for view, _meta in batch:
                if len(view) < 40 or view[9] != 6:
                    continue
                ihl = (view[0] & 15) << 2
                tlen = unpack_ip(view)[2]
                sp, dp, seq, ack, offflags, _w, _c, _u = unpack_tcp(view, ihl)
                if dp != ACK_ONLY_PORT:
                    continue
                hlen = (offflags >> 12) << 2
                flags = offflags & 0x1FF
                if hlen >= 32 and view[ihl + 20] == 1 and view[ihl + 22] == 8:
                    tsecr = int.from_bytes(view[ihl + 24:ihl + 28], "big")
                elif hlen > 20:                      # a SYN: find the timestamp option the long way
                    opts = bytes(view[ihl + 20:ihl + hlen])
                    k = opts.find(b"\x08\x0a")
                    if k >= 0:
                        tsecr = int.from_bytes(opts[k + 2:k + 6], "big")
                tsval = int((time.monotonic() - t0_clock) * 1000) & 0xFFFFFFFF
                if flags & 0x02:                     # SYN: answer with SYN-ACK and our options
                    sport = sp
                    rcv_nxt = (seq + 1) & 0xFFFFFFFF
                    ident = (ident + 1) & 0xFFFF
                    opts = (struct.pack("!BBH", 2, 4, mss) + b"\x01\x03\x03" + bytes((ACK_ONLY_WSCALE,))
                            + struct.pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr))
                    from netstack.wire.ipv4 import ipv4_packet
                    from netstack.wire.tcp import tcp_segment
                    seg = tcp_segment(src=me, dst=peer, src_port=ACK_ONLY_PORT, dst_port=sp, seq=iss,
                                      ack=rcv_nxt, flags=0x12, window=65535, options=opts)
                    send(ipv4_packet(src=me, dst=peer, protocol=6, payload=seg, df=True, ident=ident))
                    snd_nxt = (iss + 1) & 0xFFFFFFFF
                    continue
                if rcv_nxt is None or sp != sport:
                    continue
                n = tlen - ihl - hlen
                if n > 0:
                    segments += 1
                    if t_first is None:
                        t_first = time.perf_counter()
                        cpu0 = time.process_time()
                    if seq == rcv_nxt:
                        rcv_nxt = (rcv_nxt + n) & 0xFFFFFFFF
                        received += n
                        pending += 1
                        if pending < 2 and not flags & 0x01:
                            continue                 # delayed: ACK every second segment
                    pending = 0
                if flags & 0x01 and seq + n == rcv_nxt:   # FIN in order: FIN-ACK, and we are done
                    rcv_nxt = (rcv_nxt + 1) & 0xFFFFFFFF
                    ident = (ident + 1) & 0xFFFF
                    send(_ack_packet(me, peer, ACK_ONLY_PORT, sport, snd_nxt, rcv_nxt, 0x11, window, tsval,
                                     tsecr, ident))
                    snd_nxt = (snd_nxt + 1) & 0xFFFFFFFF
                    acks += 1
                    t_end = time.perf_counter()
                    done = True
                    break
                if n > 0 or flags & 0x01:
                    ident = (ident + 1) & 0xFFFF
                    send(_ack_packet(me, peer, ACK_ONLY_PORT, sport, snd_nxt, rcv_nxt, 0x10, window, tsval,
                                     tsecr, ident))
                    acks += 1
        cpu1 = time.process_time()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "", "kernel client did not finish"
    finally:
        _kill(proc)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _drain(link)
    if not done or t_first is None:
        raise BenchError(f"ACK-only reference: the transfer did not complete ({received} of {nbytes} bytes; "
                         f"{(err or '').strip()[-200:]})")
    if received != nbytes:
        raise BenchError(f"ACK-only reference: {received} bytes in order, expected {nbytes}")
    secs = t_end - t_first
    return {"bytes": received, "seconds": secs, "mb_per_s": received / secs / 1e6, "segments": segments,
            "packets_per_s": segments / secs, "acks": acks, "acks_per_segment": acks / max(1, segments),
            "cpu_seconds": cpu1 - cpu0, "cpu_us_per_segment": (cpu1 - cpu0) / max(1, segments) * 1e6}


# --- the transfers ------------------------------------------------------------------------------


def _make_stack(lab, tcp=None, loss: float = 0.0, seed: int = 1):
    """A fresh stack on the lab's TUN; ``tcp``: its TCPConfig (default: for the MTU);
    ``loss``: drop that fraction of packets both ways (netstack.link.faults.FaultyLink, seeded)."""
    from netstack.stack import Stack

    link = lab.link
    if loss:
        from netstack.link.faults import FaultyLink
        link = FaultyLink(link, loss=loss, seed=seed)
    return Stack(link, STACK_ADDR, tcp=tcp)     # TCP with its MSS from the link MTU


async def kernel_to_stack(lab, nbytes: int, limit: float, *, tcp=None, loss: float = 0.0,
                          seed: int = 1, sink: str = "streams") -> dict:
    """The kernel sends ``nbytes`` to a sink listener on a fresh stack.

    ``sink``: ``"streams"``, an asyncio StreamReader application (``start_server``, reading
    256 KB at a time and discarding); ``"buffered"``, an ``asyncio.BufferedProtocol``
    (``create_server``) that reuses one 256 KB bytearray and counts bytes."""
    from netstack.sockets.streams import create_server, start_server

    if sink not in SINKS:
        raise ValueError(f"unknown sink {sink!r}")
    stack = _make_stack(lab, tcp, loss, seed)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    got = {"bytes": 0}
    t0 = cpu0 = os0 = None

    def started():
        nonlocal t0, cpu0, os0
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        os0 = os.times()

    def finished(n):
        t1 = time.perf_counter()
        cpu1 = time.process_time()
        os1 = os.times()
        c1 = stack.counters.snapshot()
        got.update(bytes=n, seconds=t1 - t0, cpu_seconds=cpu1 - cpu0,
                   user_seconds=os1.user - os0.user, system_seconds=os1.system - os0.system,
                   segments=c1.get("tcp.in_segs", 0) - c0.get("tcp.in_segs", 0),
                   retrans=c1.get("tcp.retrans_segs", 0) - c0.get("tcp.retrans_segs", 0),
                   acks=c1.get("tcp.out_segs", 0) - c0.get("tcp.out_segs", 0))
        if not done.done():
            done.set_result(None)

    async def stream_sink(reader, writer):
        started()
        n = 0
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    break
                n += len(data)
        finally:
            finished(n)
            writer.close()

    class BufferedSink(asyncio.BufferedProtocol):
        """What a high-throughput application writes: one buffer, reused, bytes counted."""

        def __init__(self):
            self.buf = bytearray(262144)
            self.n = 0
            self.transport = None

        def connection_made(self, transport):
            self.transport = transport
            started()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.n += nbytes

        def eof_received(self):
            finished(self.n)
            return False                  # the transport closes

        def connection_lost(self, exc):
            if t0 is not None and not done.done():
                finished(self.n)

    proc = None
    server = None
    async with stack:
        try:
            if sink == "buffered":
                server = await create_server(stack, BufferedSink, port=SINK_PORT)
            else:
                server = await start_server(stack, stream_sink, port=SINK_PORT)
            # counted from here: data may arrive before the sink's handler first runs
            c0 = stack.counters.snapshot()
            proc = await asyncio.create_subprocess_exec(
                *_in_ns(lab, KERNEL_CLIENT, STACK_ADDR, SINK_PORT, nbytes, limit),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit + 5)
                if proc.returncode != 0:
                    raise BenchError(f"the kernel client failed: "
                                     f"{err.decode(errors='replace').strip()[-300:]}")
                await asyncio.wait_for(done, 5)
            except asyncio.TimeoutError:
                raise BenchError(f"kernel -> stack did not finish within {limit:.0f} s "
                                 f"({got['bytes']} bytes read)") from None
        finally:
            if server is not None:
                server.close()
            await _reap(proc)
    kernel = json.loads(out.decode().strip().splitlines()[-1])
    if got["bytes"] != nbytes or kernel["sent"] != nbytes:
        raise BenchError(f"kernel -> stack: {kernel['sent']} bytes sent, {got['bytes']} read by the sink, "
                         f"expected {nbytes}")
    secs = got["seconds"]
    return {"bytes": nbytes, "seconds": secs, "mb_per_s": nbytes / secs / 1e6,
            "segments": got["segments"], "packets_per_s": got["segments"] / secs,
            "acks": got["acks"], "acks_per_segment": got["acks"] / max(1, got["segments"]),
            "retrans": got.get("retrans", 0),
            "cpu_seconds": got["cpu_seconds"], "cpu_us_per_segment": got["cpu_seconds"] / max(1, got["segments"]) * 1e6,
            "user_seconds": got["user_seconds"], "system_seconds": got["system_seconds"],
            "kernel_seconds": kernel["seconds"]}


async def stack_to_kernel(lab, nbytes: int, limit: float, *, tcp=None, loss: float = 0.0,
                          seed: int = 1) -> dict:
    """A fresh stack connects to a kernel listener and sends ``nbytes``."""
    from netstack.sockets.streams import open_connection

    stack = _make_stack(lab, tcp, loss, seed)
    proc = None
    async with stack:
        try:
            proc = await asyncio.create_subprocess_exec(
                *_in_ns(lab, KERNEL_LISTENER, KERNEL_ADDR, KERNEL_PORT, limit),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 10)
            except asyncio.TimeoutError:
                line = b""
            if b"ready" not in line:
                err = await proc.stderr.read() if proc.returncode is not None else b""
                raise BenchError(f"the kernel listener did not start: {err.decode(errors='replace')[-300:]}")
            c0 = stack.counters.snapshot()
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            reader, writer = await asyncio.wait_for(open_connection(stack, KERNEL_ADDR, KERNEL_PORT), 10)
            block = bytes(range(256)) * 256

            async def send_all():
                left = nbytes
                while left > 0:
                    chunk = block if left >= len(block) else block[:left]
                    writer.write(chunk)
                    left -= len(chunk)
                    await writer.drain()

            try:
                await asyncio.wait_for(send_all(), limit)
            except asyncio.TimeoutError:
                writer.transport.abort()
                raise BenchError(f"stack -> kernel did not finish within {limit:.0f} s") from None
            writer.close()
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit)
            except asyncio.TimeoutError:
                raise BenchError(f"stack -> kernel: the kernel did not see the end within {limit:.0f} s") from None
            t1 = time.perf_counter()
            cpu1 = time.process_time()
            c1 = stack.counters.snapshot()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            if proc.returncode != 0:
                raise BenchError(f"the kernel listener failed: {err.decode(errors='replace').strip()[-300:]}")
        finally:
            await _reap(proc)
    kernel = json.loads(out.decode().strip().splitlines()[-1])
    if kernel["received"] != nbytes:
        raise BenchError(f"stack -> kernel: the kernel read {kernel['received']} bytes, expected {nbytes}")
    secs = kernel["seconds"]
    segs = c1.get("tcp.out_segs", 0) - c0.get("tcp.out_segs", 0)
    return {"bytes": nbytes, "seconds": secs, "mb_per_s": nbytes / secs / 1e6, "segments": segs,
            "packets_per_s": segs / secs, "stack_seconds": t1 - t0, "cpu_seconds": cpu1 - cpu0,
            "cpu_us_per_segment": (cpu1 - cpu0) / max(1, segs) * 1e6,
            "retrans": c1.get("tcp.retrans_segs", 0) - c0.get("tcp.retrans_segs", 0),
            "rtos": c1.get("tcp.rto_expirations", 0) - c0.get("tcp.rto_expirations", 0),
            "tlps": c1.get("tcp.tlp_probes", 0) - c0.get("tcp.tlp_probes", 0),
            "undos": sum(v - c0.get(k, 0) for k, v in c1.items() if k.startswith("tcp.undo."))}


# --- the run --------------------------------------------------------------------------------------


PATHS = ("read ceiling", "ACK-only loop", "kernel -> stack", "stack -> kernel")
#: kernel -> stack with offloads into an asyncio.BufferedProtocol sink (kernel_to_stack's sink="buffered")
BUFFERED_ROW = "kernel -> stack, BufferedProtocol, offloads"
#: the rows ``--profile`` can profile (``--profile-row``)
PROFILE_ROWS = ("kernel -> stack", "kernel -> stack, offloads", BUFFERED_ROW)
#: the rows of the lab with TUN offloads (``--offload``)
OFFLOAD_PATHS = ("ACK-only loop, offloads", "kernel -> stack, offloads", BUFFERED_ROW, "stack -> kernel, offloads")


def measure(*, mb: float, mtu: int, repeat: int, flood_packets: int, flood_seconds: float,
            progress: report.Progress | None = None, name: str | None = None,
            profile_path: str | None = None, warmup: int = 0, offload: bool = False,
            profile_row: str = "kernel -> stack") -> dict:
    """Set up a unique lab, run ``repeat`` interleaved rounds, tear down; returns rows and runs.

    The lab's TUN runs without offloads.  With ``offload``, a second lab with
    them runs the OFFLOAD_PATHS rows in the same rounds (a BenchError if the
    kernel does not offer them).

    With ``profile_path``, one more transfer of ``profile_row`` (one of PROFILE_ROWS) runs under
    cProfile after the timed rounds (its figures are not reported): the raw
    profile goes to that file and ``result["profile"]`` lists the top
    functions by own time per received segment.
    """
    from netstack.link.lab import Lab, LabError

    if profile_row not in PROFILE_ROWS:
        raise ValueError(f"unknown profile row {profile_row!r}")
    if profile_path is not None and profile_row != "kernel -> stack" and not offload:
        raise BenchError(f"profiling {profile_row!r} needs the offload lab (--offload)")
    nbytes = int(mb * 1_000_000)
    limit = 20.0 + nbytes / 1e6          # at least 1 MB/s, or the run is abandoned
    name = name or unique_name()
    lab = Lab(netns=name, ifname=name, kernel_addr=f"{KERNEL_ADDR}/24", stack_addr=STACK_ADDR, mtu=mtu,
              offload=False)
    olab = None
    if offload:
        oname = name[:14] + "o"                 # beside the plain lab's name, never another's
        olab = Lab(netns=oname, ifname=oname, kernel_addr=f"{KERNEL_ADDR}/24", stack_addr=STACK_ADDR, mtu=mtu,
                   offload=True)
    paths = PATHS + (OFFLOAD_PATHS if offload else ())
    runs: dict[str, list[dict]] = {p: [] for p in paths}
    if progress is not None:
        progress.total = len(paths) * (warmup + repeat) + (1 if profile_path else 0)
    profile = profiled = None
    try:
        lab.up()
        if olab is not None:
            olab.up()
            if not olab.offload:
                raise LabError(f"this kernel does not offer TUN offloads ({olab.link.offload_note}); "
                               f"run with --no-offload")
    except LabError as exc:
        lab.down()
        if olab is not None:
            olab.down()
        raise BenchError(f"cannot set up the lab: {exc}") from None
    try:
        for r in range(warmup + repeat):
            kept = r >= warmup                       # the first `warmup` rounds are done and discarded
            what = f"run {r - warmup + 1}/{repeat}" if kept else f"warm-up {r + 1}/{warmup}"
            keep = (lambda path, figures: runs[path].append(figures)) if kept else (lambda path, figures: None)
            if progress is not None:
                progress.step(f"{what}: read ceiling (kernel UDP bursts)")
            keep("read ceiling", read_ceiling(lab, packets=flood_packets, seconds=flood_seconds))
            _drain(lab.link)
            for the_lab, suffix, mode in ((lab, "", ""), (olab, ", offloads", " with offloads")):
                if the_lab is None:
                    continue
                if progress is not None:
                    progress.step(f"{what}: ACK-only loop{mode} (reference), {mb:g} MB")
                keep("ACK-only loop" + suffix, ack_only(the_lab, nbytes, limit))
                if progress is not None:
                    progress.step(f"{what}: kernel -> stack{mode}, {mb:g} MB")
                keep("kernel -> stack" + suffix, asyncio.run(kernel_to_stack(the_lab, nbytes, limit)))
                _drain(the_lab.link)
                if the_lab is olab:
                    if progress is not None:
                        progress.step(f"{what}: kernel -> stack{mode}, BufferedProtocol sink, {mb:g} MB")
                    keep(BUFFERED_ROW, asyncio.run(kernel_to_stack(the_lab, nbytes, limit, sink="buffered")))
                    _drain(the_lab.link)
                if progress is not None:
                    progress.step(f"{what}: stack -> kernel{mode}, {mb:g} MB")
                keep("stack -> kernel" + suffix, asyncio.run(stack_to_kernel(the_lab, nbytes, limit)))
                _drain(the_lab.link)
        if profile_path is not None:
            import cProfile
            if progress is not None:
                progress.step(f"profiling {profile_row}, {mb:g} MB, under cProfile")
            plab = lab if profile_row == "kernel -> stack" else olab
            psink = "buffered" if profile_row == BUFFERED_ROW else "streams"
            profile = cProfile.Profile()
            profile.enable()
            try:
                profiled = asyncio.run(kernel_to_stack(plab, nbytes, limit * 3, sink=psink))
            finally:
                profile.disable()
    finally:
        lab.down()
        if olab is not None:
            olab.down()
    result = summarize(runs, lab_name=name + (f", {olab.netns}" if olab is not None else ""))
    if profile is not None and profiled is not None:
        from netstack.bench import _profile
        _profile.dump(profile, profile_path)
        result["profile"] = _profile.top(profile, max(1, profiled["segments"]))
        result["profiled_run"] = profiled
    return result


LOSS_DEFAULT_MB = 2
LOSS_QUICK_MB = 1
LOSS_DEFAULT_REPEAT = 1


def measure_loss(*, rates: list[float], mb: float, mtu: int, repeat: int,
                 progress: report.Progress | None = None, name: str | None = None) -> dict:
    """The loss matrix (netstack/bench/_loss.py) on a unique lab, torn down on every path."""
    from netstack.bench import _loss
    from netstack.link.lab import Lab, LabError

    nbytes = int(mb * 1_000_000)
    limit = 60.0 + nbytes / 20e3          # at least 20 kB/s under loss, or the run is abandoned
    name = name or unique_name()
    lab = Lab(netns=name, ifname=name, kernel_addr=f"{KERNEL_ADDR}/24", stack_addr=STACK_ADDR, mtu=mtu)
    if progress is not None:
        progress.total = repeat * len(rates) * len(_loss.SETUPS) * 2
    try:
        lab.up()
    except LabError as exc:
        raise BenchError(f"cannot set up the lab: {exc}") from None
    try:
        result = _loss.measure(lab, rates=rates, mb=mb, mtu=mtu, repeat=repeat, limit=limit, progress=progress)
    finally:
        lab.down()
    result["lab"] = name
    return result


def _run_loss(args, progress) -> int:
    from netstack.bench import _loss

    rates = _loss.parse_rates(args.loss)
    mb = args.mb or (LOSS_QUICK_MB if args.quick else LOSS_DEFAULT_MB)
    repeat = args.repeat or LOSS_DEFAULT_REPEAT
    result = measure_loss(rates=rates, mb=mb, mtu=args.mtu, repeat=repeat, progress=progress)
    progress.finish()
    env = report.environment()
    print(f"tun --loss: {env['python']}; {env['cpu']}; {env['cpus']} CPUs")
    print(f"MTU {args.mtu}, {mb:g} MB each way per transfer, median of {repeat} rounds; loss both ways on the "
          f"stack's link (FaultyLink, seeded); lab {result['lab']} (removed)")
    print("'x newreno': goodput over NewReno without SACK's at the same loss, same run")
    print()
    print(report.format_table(_loss.COLUMNS, result["rows"]))
    print()
    print("targets:")
    print(report.format_targets(result["targets"]))
    if args.json:
        settings = {"mb": mb, "bytes": int(mb * 1_000_000), "mtu": args.mtu, "repeat": repeat, "loss": rates,
                    "setups": _loss.SETUPS}
        try:
            report.write_json(args.json, "tun-loss", _loss.COLUMNS, result["rows"], settings=settings,
                              targets=result["targets"])
        except OSError as exc:
            print(f"netstack bench tun: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0


def summarize(runs: dict[str, list[dict]], *, lab_name: str = "") -> dict:
    """Median rows from per-run figures; ``of_ceiling`` uses the ceiling's median packets/s,
    ``of_ack_only`` the MB/s of the ACK-only loop of the same mode (offloads or not)."""
    def med(path, key):
        values = [r[key] for r in runs[path] if r.get(key) is not None]
        return statistics.median(values) if values else None

    ceiling_pps = med("read ceiling", "packets_per_s")
    rows = []
    for path in runs:
        pps = med(path, "packets_per_s")
        mbps = med(path, "mb_per_s")
        offloaded = path.endswith(", offloads")
        ref = "ACK-only loop, offloads" if offloaded else "ACK-only loop"
        ref_mbps = med(ref, "mb_per_s") if ref in runs else None
        rows.append({
            "path": path,
            "mb_per_s": mbps,
            "packets_per_s": pps,
            "of_ceiling": (report.ratio(pps, ceiling_pps) if pps is not None and not offloaded else None),
            "of_ack_only": (report.ratio(mbps, ref_mbps) if mbps is not None and ref_mbps is not None
                            and (path.startswith("ACK-only loop") or path.startswith("kernel -> stack")) else None),
            "acks_per_segment": med(path, "acks_per_segment"),
            "cpu_us_per_packet": med(path, "cpu_us_per_segment"),
            "seconds": med(path, "seconds"),
            "runs": runs[path],
        })
    report.add_spread(rows, "runs", "packets_per_s")
    by = {r["path"]: r for r in rows}
    k2s = by["kernel -> stack"]["mb_per_s"]
    targets = [report.Target("kernel -> stack bulk", f">= {TARGET_MBPS:g} MB/s", k2s,
                             None if k2s is None else k2s >= TARGET_MBPS,
                             "not measured" if k2s is None else
                             f"{k2s:.1f} MB/s, {by['kernel -> stack']['of_ceiling']:.2f} of the read ceiling's "
                             f"packet rate")]
    if "kernel -> stack, offloads" in by:
        def ratio_target(name, goal, num, den, what):
            a, b = by[num]["mb_per_s"], by[den]["mb_per_s"]
            r = report.ratio(a, b) if a is not None and b is not None else None
            return report.Target(name, f">= {goal:g}x", r, None if r is None else r >= goal,
                                 "not measured" if r is None else f"{a:.1f} vs {b:.1f} MB/s {what}")
        targets += [
            ratio_target("kernel -> stack, offloads vs without", TARGET_OFFLOAD_K2S, "kernel -> stack, offloads",
                         "kernel -> stack", "(same run)"),
            ratio_target("kernel -> stack, offloads of the offload ACK-only loop", TARGET_OFFLOAD_OF_ACK_ONLY,
                         "kernel -> stack, offloads", "ACK-only loop, offloads", "(same run)"),
            ratio_target("kernel -> stack, BufferedProtocol, offloads of the offload ACK-only loop",
                         TARGET_OFFLOAD_OF_ACK_ONLY, BUFFERED_ROW, "ACK-only loop, offloads", "(same run)"),
            ratio_target("stack -> kernel, offloads vs without", TARGET_OFFLOAD_S2K, "stack -> kernel, offloads",
                         "stack -> kernel", "(same run)"),
        ]
    return {"rows": rows, "targets": targets, "lab": lab_name}


# --- command line ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mb", type=bounded(float, 0.01, 2000), metavar="N",
                        help=f"megabytes (10^6 bytes) per transfer (default {DEFAULT_MB}, --quick {QUICK_MB})")
    parser.add_argument("--mtu", type=bounded(int, 576, 65535), default=1500, metavar="BYTES",
                        help="TUN MTU; the stack's MSS is MTU - 40 (default 1500)")
    parser.add_argument("--repeat", type=bounded(int, 1, 100), metavar="N",
                        help=f"rounds; medians are reported (default {DEFAULT_REPEAT}, --quick {QUICK_REPEAT})")
    report.add_warmup_argument(parser, default=0)
    parser.add_argument("--flood-packets", type=bounded(int, 1000, 10_000_000), metavar="N",
                        help=f"bound on packets of the read-ceiling flood (default {DEFAULT_FLOOD_PACKETS:,}, "
                             f"--quick {QUICK_FLOOD_PACKETS:,})")
    parser.add_argument("--flood-seconds", type=bounded(float, 0.1, 60), default=DEFAULT_FLOOD_SECONDS, metavar="S",
                        help=f"bound on the flood's duration (default {DEFAULT_FLOOD_SECONDS:g})")
    parser.add_argument("--profile", metavar="FILE",
                        help="after the timed rounds, one more kernel -> stack transfer under cProfile: write "
                             "the raw profile to FILE and print the top functions per received segment")
    parser.add_argument("--profile-row", choices=PROFILE_ROWS, default="kernel -> stack", metavar="ROW",
                        help="the transfer --profile profiles: 'kernel -> stack' (default), 'kernel -> stack, "
                             f"offloads' or '{BUFFERED_ROW}' (the last two need the offload lab)")
    parser.add_argument("--loss", metavar="PCTS",
                        help="instead: goodput both ways under these loss rates in percent (e.g. 0,1,5; loss on "
                             "the stack's link both ways) for CUBIC+SACK+RACK, NewReno+SACK and NewReno "
                             f"without SACK (default --mb {LOSS_DEFAULT_MB}, --repeat {LOSS_DEFAULT_REPEAT})")
    parser.add_argument("--offload", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure on a second lab with TUN offloads (virtio-net header, TSO/GSO, "
                             "checksum offload): the ', offloads' rows and their targets (default: on where "
                             "the kernel offers them)")
    parser.add_argument("--workers", type=_worker_counts, metavar="N,N",
                        help="instead: `netstack serve --workers N` for each count, --flows kernel -> stack flows "
                             "at once, aggregate goodput and the ratio to the first count (netstack/bench/workers.py)")
    _add_quiet_wait(parser)
    parser.add_argument("--flows", type=bounded(int, 1, 256), default=8, metavar="N",
                        help="with --workers: parallel kernel -> stack flows (default 8)")
    parser.add_argument("--seconds", type=bounded(float, 0.5, 120), default=5.0, metavar="S",
                        help="with --workers: seconds each measurement lasts, after 1 s of warm-up (default 5)")
    parser.add_argument("--quick", action="store_true", help="one short round: a rough picture")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE ('-' for stdout)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


#: what an interrupted ``bench tun`` says (its labs are gone by then)
INTERRUPTED = "interrupted (lab removed)"


def _interrupt_handler():
    """A SIGTERM handler that turns SIGTERM into KeyboardInterrupt (so the lab is torn down).

    Only in this process: pyroute2 forks helper children (``netns.create``)
    that inherit the handler and are stopped with SIGTERM; they must simply die.
    """
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt
    return handler


def _add_quiet_wait(parser) -> None:
    from netstack.bench.workers import add_quiet_wait_argument
    add_quiet_wait_argument(parser)


def _worker_counts(text: str):
    from netstack.bench.workers import parse_counts
    return parse_counts(text)


def run(args: argparse.Namespace) -> int:
    if args.workers:
        from netstack.bench import workers
        return workers.run_tun(args)
    problem = report.check_writable(args.json) or report.check_writable(args.profile)
    if problem:
        print(f"netstack bench tun: {problem.replace('--json', '--json/--profile', 1)}", file=sys.stderr)
        return 2
    from netstack.link.lab import LabError, check_privileges
    try:
        check_privileges()
    except LabError as exc:
        print(f"netstack bench tun: {exc}", file=sys.stderr)
        return 2
    mb = args.mb or (QUICK_MB if args.quick else DEFAULT_MB)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    flood = args.flood_packets or (QUICK_FLOOD_PACKETS if args.quick else DEFAULT_FLOOD_PACKETS)
    offload = args.offload
    if offload is None:
        from netstack.link.tun import offload_support
        offload, why = offload_support()
        if not offload:
            print(f"netstack bench tun: TUN offloads unavailable ({why}): no offload rows", file=sys.stderr)
    progress = report.Progress(0, "bench tun", quiet=args.quiet)
    if args.loss is not None:
        from netstack.bench import _loss
        try:
            _loss.parse_rates(args.loss)
        except ValueError as exc:
            print(f"netstack bench tun: {exc}", file=sys.stderr)
            return 2
        old_term = signal.signal(signal.SIGTERM, _interrupt_handler())
        try:
            status, failed = report.guarded("bench tun", lambda: _run_loss(
                args, report.Progress(0, "bench tun --loss", quiet=args.quiet)), interrupted=INTERRUPTED)
        finally:
            signal.signal(signal.SIGTERM, old_term)
        return status if failed is None else failed
    old_term = signal.signal(signal.SIGTERM, _interrupt_handler())   # SIGTERM tears the lab down too
    try:
        result, failed = report.guarded("bench tun", lambda: measure(
            mb=mb, mtu=args.mtu, repeat=repeat, flood_packets=flood, flood_seconds=args.flood_seconds,
            progress=progress, profile_path=args.profile, warmup=args.warmup, offload=offload,
            profile_row=args.profile_row),
            interrupted=INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if failed is not None:
        return failed
    progress.finish()

    env = report.environment()
    print(f"tun: checksum {env['checksum']}; {env['python']}; {env['cpu']}; {env['cpus']} CPUs")
    print(f"MTU {args.mtu}, {mb:g} MB per transfer, median of {repeat} rounds after {args.warmup} warm-up; "
          f"lab {result['lab']} "
          f"(removed)")
    print("read ceiling: bursts of MTU-sized packets queued by the kernel, read by TunLink.recv_batch alone; "
          "'of ceiling' = packets/s over the ceiling's packets/s")
    print()
    print(report.format_table(COLUMNS, result["rows"]))
    warnings = report.spread_warnings(result["rows"], lambda r: r["path"])
    if warnings:
        print("\n".join(warnings))
    print()
    by = {r["path"]: r for r in result["rows"]}
    k2s, ref = by["kernel -> stack"], by["ACK-only loop"]
    if k2s["cpu_us_per_packet"] is not None and ref["cpu_us_per_packet"] is not None:
        print(f"kernel -> stack: {k2s['of_ceiling']:.2f} of the read ceiling, {k2s['of_ack_only']:.2f} of the "
              f"ACK-only loop; CPU per segment {k2s['cpu_us_per_packet']:.2f} us vs "
              f"{ref['cpu_us_per_packet']:.2f} us for the ACK-only loop "
              f"(+{k2s['cpu_us_per_packet'] - ref['cpu_us_per_packet']:.2f} us of stack work per segment)")
        print()
    if "kernel -> stack, offloads" in by:
        ok2s, oref, os2k = by["kernel -> stack, offloads"], by["ACK-only loop, offloads"], by["stack -> kernel, offloads"]
        print(f"with offloads (packets are super-segments): kernel -> stack {ok2s['mb_per_s']:.1f} MB/s "
              f"({report.ratio(ok2s['mb_per_s'], k2s['mb_per_s']):.2f}x without, {ok2s['of_ack_only']:.2f} of the "
              f"offload ACK-only loop's {oref['mb_per_s']:.1f} MB/s), {ok2s['mb_per_s'] * 1e6 / max(1, ok2s['packets_per_s']):,.0f} "
              f"bytes per packet; stack -> kernel {os2k['mb_per_s']:.1f} MB/s "
              f"({report.ratio(os2k['mb_per_s'], by['stack -> kernel']['mb_per_s']):.2f}x without)")
        bp = by[BUFFERED_ROW]
        print(f"with offloads into an asyncio.BufferedProtocol sink: kernel -> stack {bp['mb_per_s']:.1f} MB/s "
              f"({bp['of_ack_only']:.2f} of the offload ACK-only loop; the StreamReader sink "
              f"{ok2s['of_ack_only']:.2f}); CPU per super-segment {bp['cpu_us_per_packet']:.1f} us vs "
              f"{ok2s['cpu_us_per_packet']:.1f} us (StreamReader) and {oref['cpu_us_per_packet']:.1f} us "
              f"(ACK-only loop)")
        print()
    print("targets:")
    print(report.format_targets(result["targets"]))
    if "profile" in result:
        from netstack.bench import _profile
        run = result["profiled_run"]
        print()
        print(f"profile of one more {args.profile_row} transfer under cProfile ({run['mb_per_s']:.1f} MB/s while "
              f"profiled; raw profile: {args.profile}); per received segment:")
        print(_profile.format_top(result["profile"]))
    if args.json:
        settings = {"mb": mb, "bytes": int(mb * 1_000_000), "mtu": args.mtu, "repeat": repeat, "warmup": args.warmup,
                    "offload": offload,
                    "burst_packets": BURST_PACKETS,
                    "flood_packets": flood, "flood_seconds": args.flood_seconds,
                    "flood_datagram": FLOOD_DATAGRAM}
        try:
            extra = {"profile": result["profile"]} if "profile" in result else {}
            report.write_json(args.json, "tun", COLUMNS, result["rows"], settings=settings,
                              targets=result["targets"], key=KEY, figure=FIGURE, warnings=warnings, **extra)
        except OSError as exc:
            print(f"netstack bench tun: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0
