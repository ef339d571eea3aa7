"""SMTP messages/s: our SMTP session vs aiosmtpd, memory sink and Maildir (root FS, tmpfs).

``netstack bench smtp [--quick] [--repeat N] [--messages N] [--clients 1,8] [--json FILE]``

Each cell sends ``--messages`` messages of about 2 KB (``--size``) from
``C`` concurrent clients (default 1 and 8), either with a new TCP connection
per message (``new``: greeting, EHLO, MAIL/RCPT/DATA pipelined, QUIT) or one
connection per client reused for all its messages (``reuse``), and reports
messages/s (median of ``--repeat`` runs, after ``--warmup`` discarded
rounds, default 0; the variants run interleaved so that load from elsewhere
hits all of them alike) and how the runs spread around the median.

Servers:

- ``ours``: ``smtp.server.SmtpServer`` (the sans-I/O session) on the
  streams given by a *transport* (``kernel``: asyncio's kernel streams on
  127.0.0.1);
- ``aiosmtpd``: aiosmtpd's SMTP protocol on kernel streams, the reference.

Sinks: ``memory`` (count and drop), ``maildir rootfs`` (smtp.delivery's durable
Maildir, fsync()ed, under --rootfs-dir, default /var/tmp) and ``maildir
tmpfs`` (the same under /dev/shm).  aiosmtpd gets the very same sinks.  The
clients are lean asyncio stream clients in the same event loop (same cost
for every server), using the transport's opener.

Ratios (``vs aiosmtpd``) compare with aiosmtpd on kernel streams in the same
cell (sink, clients, connection mode) of the same run.

Hook for other streams (netstack's TCP): ``register_transport(name,
factory)`` where ``factory()`` is an async context manager yielding
``(starter, opener)``: ``await starter(handler)`` starts a listening stream
server and ``await opener()`` connects a client to it.  ``measure_ours(starter,
opener, ...)`` is the measurement for one cell.  The default is
``--transports kernel,netstack-tun``: our session on kernel streams and on
netstack's own TCP over a TUN lab (or the in-memory link without root).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time

from netstack.bench import report

COLUMNS = [
    report.Column("server", "server", "{}", "<"),
    report.Column("transport", "streams", "{}", "<"),
    report.Column("sink", "sink", "{}", "<"),
    report.Column("clients", "clients", "{}"),
    report.Column("conn", "conn", "{}", "<"),
    report.Column("msgs_per_s", "msgs/s", "{:.0f}"),
    report.Column("vs_aiosmtpd", "vs aiosmtpd", "{:.2f}x"),
    report.SPREAD,
]
KEY = ("server", "transport", "sink", "clients", "conn")
FIGURE = ("msgs_per_s", "higher")

FROM, RCPT = "bench@remote.test", "bob@example.test"


# ------------------------------------------------------------------ transports (the hook)


@contextlib.asynccontextmanager
async def kernel_transport():
    """asyncio kernel streams on 127.0.0.1 (a free port picked by the kernel)."""
    state = {}

    async def starter(handler):
        srv = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=256)
        state["port"] = srv.sockets[0].getsockname()[1]
        return srv

    def opener():
        return asyncio.open_connection("127.0.0.1", state["port"])

    yield starter, opener


@contextlib.asynccontextmanager
async def netstack_memory_transport():
    """netstack's own TCP streams: two Stacks in this process over the in-memory link.

    The client's stack (10.9.0.1) and the server's (10.9.0.2) both run here, so
    this pays for two userspace TCP stacks per connection; the TUN variant
    (kernel client, netstack server) is for the integrating code to register.
    """
    from netstack.link.memory import MemoryLink
    from netstack.sockets.streams import open_connection, start_server
    from netstack.stack import Stack

    la, lb = MemoryLink.pair(mtu=1500)
    stacks = []
    for link, addr in ((la, "10.9.0.1"), (lb, "10.9.0.2")):
        st = Stack(link, addr)
        st.start()
        stacks.append(st)
    client, server = stacks

    def starter(handler):
        return start_server(server, handler, port=25, backlog=256)

    def opener():
        return open_connection(client, "10.9.0.2", 25, nodelay=True)   # as asyncio does on kernel sockets

    try:
        yield starter, opener
    finally:
        for st in stacks:
            st.close()


@contextlib.asynccontextmanager
async def netstack_tun_transport():
    """The real thing: our server on netstack over a TUN in a lab namespace, kernel TCP clients in it.

    Needs root and /dev/net/tun.  The lab (namespace + TUN, unique names) is
    created here and removed on every path.  Client sockets are created
    inside the namespace by one helper thread (``setns`` is per thread) and
    then driven by this event loop like any kernel socket.
    """
    import concurrent.futures
    import ctypes
    import socket

    from netstack.link.lab import Lab
    from netstack.sockets.streams import start_server
    from netstack.stack import Stack

    name = f"nsb{os.getpid() % 100000}s{next(_lab_counter)}"[:15]
    lab = Lab(netns=name, ifname=name, kernel_addr="198.18.0.1/24", stack_addr="198.18.0.2", mtu=1500)
    await asyncio.to_thread(lab.up)      # pyroute2 will not run inside a running event loop
    stack = None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        stack = Stack(lab.link, "198.18.0.2")
        stack.start()
        libc = ctypes.CDLL(None, use_errno=True)

        def enter_namespace():
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:          # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)

        pool.submit(enter_namespace).result()
        loop = asyncio.get_running_loop()

        def new_socket():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            return sock

        def starter(handler):
            return start_server(stack, handler, port=25, backlog=256)

        async def opener():
            sock = await loop.run_in_executor(pool, new_socket)
            try:
                await loop.sock_connect(sock, ("198.18.0.2", 25))
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_connection(sock=sock)

        yield starter, opener
    finally:
        pool.shutdown(wait=True)
        if stack is not None:
            stack.close()
        await asyncio.to_thread(lab.down)


_lab_counter = __import__("itertools").count()

TRANSPORTS = {"kernel": kernel_transport, "netstack-memory": netstack_memory_transport,
              "netstack-tun": netstack_tun_transport}


def register_transport(name: str, factory) -> None:
    """Add a transport: ``factory()`` -> async context manager yielding ``(starter, opener)``."""
    TRANSPORTS[name] = factory


# ------------------------------------------------------------------ sinks


class _Sink:
    def __init__(self, kind: str, base: str | None):
        from smtp.delivery import MaildirDelivery, MemorySink

        self.kind, self.dir = kind, None
        if kind == "memory":
            self.delivery = MemorySink(keep=False)
        else:
            self.dir = tempfile.mkdtemp(prefix="nsbench-smtp-", dir=base)
            self.delivery = MaildirDelivery(self.dir, hostname="bench")

    def close(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ load generator


def make_message(size: int) -> bytes:
    head = (f"From: {FROM}\r\nTo: {RCPT}\r\nSubject: bench\r\nMessage-ID: <bench@remote.test>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return head + body + b"\r\n"


async def _replies(reader, n: int) -> None:
    """Read ``n`` complete replies; raise if one is not 2xx/3xx."""
    while n:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("server closed")
        if line[3:4] != b"-":
            if line[:1] not in (b"2", b"3"):
                raise RuntimeError(f"server refused: {line!r}")
            n -= 1


async def _client(opener, count: int, reuse: bool, txn: bytes, data: bytes) -> None:
    if count <= 0:
        return
    reader = writer = None
    for i in range(count):
        if writer is None:
            reader, writer = await opener()
            writer.write(b"EHLO bench.client\r\n")
            await _replies(reader, 2)                 # greeting + EHLO
        writer.write(txn)
        await _replies(reader, 3)                     # MAIL, RCPT, DATA (pipelined)
        writer.write(data)
        await _replies(reader, 1)                     # 250 queued
        if not reuse or i == count - 1:
            writer.write(b"QUIT\r\n")
            await _replies(reader, 1)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            reader = writer = None


async def drive(opener, *, clients: int, messages: int, reuse: bool, size: int) -> float:
    """Send ``messages`` messages from ``clients`` concurrent clients; returns messages/s."""
    from smtp.client import dot_stuff

    txn = f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode()
    data = dot_stuff(make_message(size)) + b".\r\n"
    per = [messages // clients + (1 if i < messages % clients else 0) for i in range(clients)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(opener, n, reuse, txn, data) for n in per))
    return messages / (time.perf_counter() - t0)


# ------------------------------------------------------------------ servers


async def measure_ours(starter, opener, *, delivery, clients: int, messages: int, reuse: bool, size: int) -> float:
    """One cell for our SMTP server on the streams of ``starter``/``opener``. Returns messages/s."""
    from smtp.server import SmtpServer
    from smtp.session import SessionConfig

    server = SmtpServer(SessionConfig(hostname="bench"), delivery=delivery, max_connections=10_000)
    srv = await server.start(starter)
    return await _drive_then_close(srv, opener, lambda: server.accepted, "ours",
                                   clients=clients, messages=messages, reuse=reuse, size=size)


async def _drive_then_close(srv, opener, accepted, name, *, messages, **kw) -> float:
    """Run the load against a started server, close it, check every message was accepted once."""
    try:
        rate = await drive(opener, messages=messages, **kw)
    finally:
        srv.close()
        await srv.wait_closed()
    if accepted() != messages:
        raise RuntimeError(f"{name} accepted {accepted()} of {messages}")
    return rate


class _AioHandler:
    def __init__(self, delivery):
        self.delivery = delivery
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        from smtp.server import new_queue_id
        from smtp.session import Envelope

        env = Envelope(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                       content=envelope.original_content or envelope.content, helo=session.host_name or "",
                       esmtp=True, peer=session.peer)
        qid = new_queue_id()
        if self.delivery.blocking:
            await asyncio.to_thread(self.delivery.deliver, env, qid)
        else:
            self.delivery.deliver(env, qid)
        self.count += 1
        return f"250 2.0.0 Ok: queued as {qid}"


async def measure_aiosmtpd(*, delivery, clients: int, messages: int, reuse: bool, size: int) -> float:
    import logging

    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    handler = _AioHandler(delivery)
    srv = await loop.create_server(lambda: SMTP(handler, hostname="bench", loop=loop), "127.0.0.1", 0, backlog=256)
    port = srv.sockets[0].getsockname()[1]
    return await _drive_then_close(srv, lambda: asyncio.open_connection("127.0.0.1", port), lambda: handler.count,
                                   "aiosmtpd", clients=clients, messages=messages, reuse=reuse, size=size)


# ------------------------------------------------------------------ CLI


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers like 1,8") from None
    if not vals or any(v < 1 or v > 256 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: each value must be 1..256")
    return vals


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    report.add_common_arguments(parser, warmup=0)       # a round takes seconds: no warm-up unless asked
    parser.add_argument("--messages", type=int, metavar="N", help="messages per cell (default 400, --quick 80)")
    parser.add_argument("--clients", type=_ints, default=(1, 8), metavar="N,N", help="concurrent clients (default 1,8)")
    parser.add_argument("--size", type=int, default=2048, metavar="BYTES", help="message size (default 2048)")
    parser.add_argument("--sinks", type=_names, default=("memory", "maildir-rootfs", "maildir-tmpfs"),
                        metavar="LIST", help="memory, maildir-rootfs, maildir-tmpfs (default all)")
    parser.add_argument("--rootfs-dir", default="/var/tmp", help="directory on the root FS for maildir-rootfs")
    parser.add_argument("--tmpfs-dir", default="/dev/shm", help="directory on a tmpfs for maildir-tmpfs")
    parser.add_argument("--transports", type=_names, default=None, metavar="LIST",
                        help="streams for our server: " + ", ".join(TRANSPORTS) + " (default kernel,netstack-tun; "
                             "kernel,netstack-memory where no TUN lab can be made)")
    parser.add_argument("--no-aiosmtpd", action="store_true", help="leave the aiosmtpd reference out")


def _default_netstack_transport() -> str:
    """Our SMTP on netstack over the real TUN when a lab can be made here (root, /dev/net/tun), else
    over the in-memory link (said on stderr: those figures leave out the TUN and the kernel)."""
    from netstack.link.lab import missing_dependencies

    missing = missing_dependencies()
    if not missing and os.geteuid() == 0 and os.path.exists("/dev/net/tun"):
        return "netstack-tun"
    why = f"needs {' and '.join(missing)}" if missing else "needs root and /dev/net/tun"
    print(f"netstack bench smtp: no TUN lab here ({why}): netstack runs over the in-memory link", file=sys.stderr)
    return "netstack-memory"


def _fs_type(path: str) -> str:
    best, fstype = "", "?"
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return fstype


def run(args) -> int:
    err = report.check_writable(args.json)
    if err:
        print(f"netstack bench smtp: {err}", file=sys.stderr)
        return 2
    if args.transports is None:
        args.transports = ("kernel", _default_netstack_transport())
    for name in args.transports:
        if name not in TRANSPORTS:
            print(f"netstack bench smtp: unknown transport {name!r} (have: {', '.join(TRANSPORTS)})", file=sys.stderr)
            return 2
    sink_dirs = {"memory": None, "maildir-rootfs": args.rootfs_dir, "maildir-tmpfs": args.tmpfs_dir}
    for s in args.sinks:
        if s not in sink_dirs:
            print(f"netstack bench smtp: unknown sink {s!r}", file=sys.stderr)
            return 2
        if sink_dirs[s] and not os.path.isdir(sink_dirs[s]):
            print(f"netstack bench smtp: {s}: {sink_dirs[s]} is not a directory", file=sys.stderr)
            return 2
    repeat, _ = report.timing_settings(args)
    if not args.repeat:
        repeat = 1 if args.quick else 3
    messages = args.messages or (80 if args.quick else 400)
    labels = {s: (s if d is None else f"{s} ({d}, {_fs_type(d)})") for s, d in sink_dirs.items()}
    servers = [("ours", t) for t in args.transports] + ([] if args.no_aiosmtpd else [("aiosmtpd", "kernel")])
    cells = [(sink, c, conn) for sink in args.sinks for c in args.clients for conn in ("new", "reuse")]
    warmup = report.warmup_setting(args)
    progress = report.Progress(len(cells) * len(servers) * (warmup + repeat), "bench smtp", quiet=args.quiet)
    results: dict = {}

    async def one(server, transport, sink_kind, clients, conn):
        sink = _Sink(sink_kind, sink_dirs[sink_kind])
        kw = dict(delivery=sink.delivery, clients=clients, messages=messages, reuse=conn == "reuse", size=args.size)
        try:
            if server == "aiosmtpd":
                return await measure_aiosmtpd(**kw)
            async with TRANSPORTS[transport]() as (starter, opener):
                return await measure_ours(starter, opener, **kw)
        finally:
            sink.close()

    async def main():
        for r in range(warmup + repeat):
            for cell in cells:
                for server, transport in servers:
                    progress.step(f"{'warm-up: ' if r < warmup else ''}{server}/{transport} {cell[0]} {cell[1]} "
                                  f"clients {cell[2]}")
                    rate = await one(server, transport, *cell)
                    if r >= warmup:
                        results.setdefault((server, transport) + cell, []).append(rate)

    asyncio.run(main())
    progress.finish()
    rows = []
    for cell in cells:
        ref = results.get(("aiosmtpd", "kernel") + cell)
        ref_rate = report.median(ref) if ref else None
        for server, transport in servers:
            runs = results[(server, transport) + cell]
            rate = report.median(runs)
            rows.append({"server": server, "transport": transport, "sink": labels[cell[0]], "clients": cell[1],
                         "conn": cell[2], "msgs_per_s": rate, "runs_msgs_per_s": runs,
                         "vs_aiosmtpd": (rate / ref_rate) if ref_rate else None})
    report.add_spread(rows, "runs_msgs_per_s")
    print(f"SMTP, {messages} messages of {args.size} B per cell, median of {repeat} run(s) after {warmup} "
          f"warm-up; vs aiosmtpd = rate / aiosmtpd's rate in the same cell")
    print(report.format_table(COLUMNS, rows))
    warnings = report.spread_warnings(
        rows, lambda r: f"{r['server']}/{r['transport']} {r['sink']} {r['clients']} clients {r['conn']}")
    if warnings:
        print("\n".join(warnings))
    targets = []
    for transport in args.transports:
        row = next((r for r in rows if r["server"] == "ours" and r["transport"] == transport and r["sink"] == "memory"
                    and r["clients"] == 8 and r["conn"] == "new"), None)
        if row is not None:
            v = row["vs_aiosmtpd"]
            targets.append(report.Target(f"ours/{transport} 8 clients, memory, new conn", ">= 0.5x aiosmtpd/kernel",
                                         v, None if v is None else v >= 0.5,
                                         "n/a" if v is None else f"{v:.2f}x ({row['msgs_per_s']:.0f} msgs/s)"))
    if targets:
        print("\ntargets:")
        print(report.format_targets(targets))
    if args.json:
        report.write_json(args.json, "smtp", COLUMNS, rows, messages=messages, size=args.size, repeat=repeat,
                          warmup=warmup, targets=targets, key=KEY, figure=FIGURE, warnings=warnings)
    return 0
