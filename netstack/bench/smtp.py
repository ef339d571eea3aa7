"""SMTP messages/s: our SMTP session vs aiosmtpd, memory sink and Maildir (root FS, tmpfs).

``netstack bench smtp [--quick] [--repeat N] [--messages N] [--clients 1,8] [--json FILE]``
``netstack bench smtp --workers 1,2 [--clients 8] [--messages N]``: ``netstack serve --workers N``
under smtp-source instead (netstack/bench/workers.py)

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
- ``aiosmtpd``: aiosmtpd's SMTP protocol on kernel streams, the reference;
- ``aiosmtpd-mailbox``: aiosmtpd with its own Maildir handler
  (``aiosmtpd.handlers.Mailbox``: stdlib ``mailbox.Maildir``, written in the
  event loop, never fsync()ed), in the Maildir cells: what a user of
  aiosmtpd gets out of the box, and the reference of the SMTP targets
  (``vs aio Mailbox``).

Sinks: ``memory`` (count and drop), ``maildir rootfs`` (smtp.delivery's durable
Maildir, fsync()ed, under --rootfs-dir, default /var/tmp) and ``maildir
tmpfs`` (the same under /dev/shm).  aiosmtpd gets the very same sinks.  The
clients are lean asyncio stream clients in the same event loop (same cost
for every server), using the transport's opener.

Clients (``--client``, default ``python``; ``python,smtp-source`` for both):

- ``python``: the asyncio stream clients above;
- ``smtp-source``: Postfix's C load generator (``/usr/sbin/smtp-source``,
  Debian package ``postfix``, installed by scripts/setup.sh without running
  Postfix): ``-s C -m N -l SIZE``, plus ``-d`` to reuse connections.  It
  runs as a child process: for our server on netstack over the TUN it runs
  inside the lab namespace (``ip netns exec``), for the kernel servers on
  127.0.0.1.  With this client Postfix's ``smtp-sink`` (a C server that
  writes nothing) is a reference row in every cell, and ``vs smtp-sink``
  gives each row's rate against it.

Ratios (``vs aiosmtpd``) compare with aiosmtpd on kernel streams in the same
cell (client, sink, clients, connection mode) of the same run.  ``loop CPU/msg``
is the CPU time of this process's event-loop thread per message (median of
the runs): the server's (with netstack, the whole stack's, and the kernel's
work done inside its system calls, e.g. the client's TCP run inside a TUN
write) plus, with ``--client python``, the clients' own; delivery threads are
not in it.  None for smtp-sink (another process).  ``--conn new`` or ``reuse``
keeps to one connection mode.

``--idle-sessions N`` (default 1000; 0: off) adds one line per transport:
N sessions held open at once, idle after their greeting, and the Python heap
our server grows by per session (tracemalloc; kernel socket buffers are not
in it).

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
    report.Column("client", "client", "{}", "<"),
    report.Column("server", "server", "{}", "<"),
    report.Column("transport", "streams", "{}", "<"),
    report.Column("sink", "sink", "{}", "<"),
    report.Column("clients", "clients", "{}"),
    report.Column("conn", "conn", "{}", "<"),
    report.Column("msgs_per_s", "msgs/s", "{:.0f}"),
    report.Column("vs_aiosmtpd", "vs aiosmtpd", "{:.2f}x"),
    report.Column("vs_mailbox", "vs aio Mailbox", "{:.2f}x"),
    report.Column("vs_sink", "vs smtp-sink", "{:.2f}x"),
    report.Column("loop_cpu_us", "loop CPU/msg", "{:.0f} us"),
    report.SPREAD,
]
CONNS = ("new", "reuse")
KEY = ("client", "server", "transport", "sink", "clients", "conn")
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

    async def create(protocol_factory):
        srv = await asyncio.get_running_loop().create_server(protocol_factory, "127.0.0.1", 0, backlog=256)
        state["port"] = srv.sockets[0].getsockname()[1]
        return srv

    starter.protocol = create

    def opener():
        return asyncio.open_connection("127.0.0.1", state["port"])

    opener.endpoint = lambda: (None, "127.0.0.1", state["port"])     # for an external client (smtp-source)
    yield starter, opener


@contextlib.asynccontextmanager
async def netstack_memory_transport():
    """netstack's own TCP streams: two Stacks in this process over the in-memory link.

    The client's stack (10.9.0.1) and the server's (10.9.0.2) both run here, so
    this pays for two userspace TCP stacks per connection; the TUN variant
    (kernel client, netstack server) is for the integrating code to register.
    """
    from netstack.link.memory import MemoryLink
    from netstack.sockets.streams import create_server, open_connection, start_server
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

    starter.protocol = lambda factory: create_server(server, factory, port=25, backlog=256)

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
    from netstack.sockets.streams import create_server, start_server
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

        starter.protocol = lambda factory: create_server(stack, factory, port=25, backlog=256)

        async def opener():
            sock = await loop.run_in_executor(pool, new_socket)
            try:
                await loop.sock_connect(sock, ("198.18.0.2", 25))
            except BaseException:
                sock.close()
                raise
            return await asyncio.open_connection(sock=sock)

        opener.endpoint = lambda: (name, "198.18.0.2", 25)     # smtp-source runs in the lab namespace
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
    """Add a transport: ``factory()`` -> async context manager yielding ``(starter, opener)``.  An
    ``opener.endpoint()`` -> ``(netns or None, host, port)`` lets external clients (smtp-source) reach it;
    a ``starter.protocol(protocol_factory)`` (a ``create_server``) serves our SMTP as protocols on the
    transports, the way ``netstack serve`` does (without it, on the starter's stream pairs)."""
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


# ------------------------------------------------------------------ Postfix's smtp-source and smtp-sink

SMTP_SOURCE, SMTP_SINK = "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink"
CLIENTS = ("python", "smtp-source")


def postfix_tools_missing() -> str | None:
    """None when smtp-source and smtp-sink can run here, else why not."""
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not os.access(tool, os.X_OK):
            return f"{tool} not found (Debian package postfix; scripts/setup.sh installs it)"
    return None


async def drive_smtp_source(endpoint, *, clients: int, messages: int, reuse: bool, size: int,
                            timeout: float = 300.0) -> float:
    """Run smtp-source against ``endpoint`` = (netns or None, host, port); returns messages/s.
    Raises RuntimeError when it fails (any refused message makes it fail)."""
    netns, host, port = endpoint
    cmd = [SMTP_SOURCE, "-s", str(clients), "-m", str(messages), "-l", str(size), "-M", "bench.client",
           "-f", FROM, "-t", RCPT] + (["-d"] if reuse else []) + [f"{host}:{port}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or b"fatal:" in err or b"warning:" in err:
        raise RuntimeError(f"smtp-source failed ({proc.returncode}): {(err or out).decode(errors='replace')[-300:]}")
    return messages / elapsed


async def measure_smtp_sink(*, clients: int, messages: int, reuse: bool, size: int, client: str = "smtp-source") -> float:
    """Postfix's smtp-sink (accepts and discards) on 127.0.0.1, driven by smtp-source."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [SMTP_SINK] + (["-u", "nobody"] if os.geteuid() == 0 else []) + [f"127.0.0.1:{port}", "256"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:                       # wait until it listens
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start") from None
                await asyncio.sleep(0.02)
        return await drive_smtp_source((None, "127.0.0.1", port), clients=clients, messages=messages,
                                       reuse=reuse, size=size)
    finally:
        if proc.returncode is None:
            proc.terminate()              # by its PID: the one we started
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ------------------------------------------------------------------ servers


async def measure_ours(starter, opener, *, delivery, clients: int, messages: int, reuse: bool, size: int,
                       client: str = "python") -> float:
    """One cell for our SMTP server on the streams of ``starter``/``opener``. Returns messages/s."""
    from smtp.server import SmtpServer
    from smtp.session import SessionConfig

    server = SmtpServer(SessionConfig(hostname="bench"), delivery=delivery, max_connections=10_000)
    srv = await _start_ours(server, starter)
    return await _drive_then_close(srv, opener, lambda: server.accepted, "ours", client=client,
                                   clients=clients, messages=messages, reuse=reuse, size=size)


def _start_ours(server, starter):
    """Our server as it is served (conversations as protocols on the transports) where the
    transport offers ``starter.protocol``, else on the starter's stream pairs."""
    create = getattr(starter, "protocol", None)
    return server.start_protocol(create) if create is not None else server.start(starter)


async def _drive_then_close(srv, opener, accepted, name, *, messages, client="python", **kw) -> float:
    """Run the load against a started server, close it, check every message was accepted once."""
    try:
        if client == "smtp-source":
            rate = await drive_smtp_source(opener.endpoint(), messages=messages, **kw)
        else:
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


class _AioMailbox:
    """aiosmtpd's own Maildir handler (``aiosmtpd.handlers.Mailbox``), counting what it accepted."""

    def __init__(self, mail_dir: str):
        from aiosmtpd.handlers import Mailbox

        self.inner = Mailbox(os.path.join(mail_dir, "aiosmtpd"))
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        reply = await self.inner.handle_DATA(server, session, envelope)
        self.count += 1
        return reply


async def measure_aiosmtpd(*, delivery, clients: int, messages: int, reuse: bool, size: int,
                           client: str = "python", mailbox_dir: str | None = None) -> float:
    """aiosmtpd on 127.0.0.1 delivering to ``delivery`` (ours), or with ``mailbox_dir`` to its own
    Maildir handler there."""
    import logging

    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    handler = _AioMailbox(mailbox_dir) if mailbox_dir else _AioHandler(delivery)
    srv = await loop.create_server(lambda: SMTP(handler, hostname="bench", loop=loop), "127.0.0.1", 0, backlog=256)
    port = srv.sockets[0].getsockname()[1]

    def opener():
        return asyncio.open_connection("127.0.0.1", port)

    opener.endpoint = lambda: (None, "127.0.0.1", port)
    return await _drive_then_close(srv, opener, lambda: handler.count, "aiosmtpd", client=client,
                                   clients=clients, messages=messages, reuse=reuse, size=size)


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
    parser.add_argument("--conn", type=_names, default=CONNS, metavar="LIST",
                        help="connection modes: new (a connection per message), reuse (default both)")
    parser.add_argument("--sinks", type=_names, default=("memory", "maildir-rootfs", "maildir-tmpfs"),
                        metavar="LIST", help="memory, maildir-rootfs, maildir-tmpfs (default all)")
    parser.add_argument("--rootfs-dir", default="/var/tmp", help="directory on the root FS for maildir-rootfs")
    parser.add_argument("--tmpfs-dir", default="/dev/shm", help="directory on a tmpfs for maildir-tmpfs")
    parser.add_argument("--transports", type=_names, default=None, metavar="LIST",
                        help="streams for our server: " + ", ".join(TRANSPORTS) + " (default kernel,netstack-tun; "
                             "kernel,netstack-memory where no TUN lab can be made)")
    parser.add_argument("--no-aiosmtpd", action="store_true", help="leave the aiosmtpd reference out")
    parser.add_argument("--client", type=_names, default=("python",), metavar="LIST",
                        help="load generators: python (asyncio clients), smtp-source (Postfix's, with smtp-sink "
                             "as a reference row); default python")
    parser.add_argument("--workers", type=_worker_counts, metavar="N,N",
                        help="instead: `netstack serve --workers N` for each count, smtp-source with the last "
                             "--clients sessions, a new connection per message, Maildir on --tmpfs-dir; messages/s "
                             "and the ratio to the first count (netstack/bench/workers.py)")
    _add_quiet_wait(parser)
    parser.add_argument("--idle-sessions", type=int, default=1000, metavar="N",
                        help="hold N idle sessions open per transport and report the bytes per session "
                             "(default 1000; 0: off)")


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


def _add_quiet_wait(parser) -> None:
    from netstack.bench.workers import add_quiet_wait_argument
    add_quiet_wait_argument(parser)


def _worker_counts(text: str):
    from netstack.bench.workers import parse_counts
    return parse_counts(text)


def run(args) -> int:
    if args.workers:
        from netstack.bench import workers
        return workers.run_smtp(args)
    err = report.check_writable(args.json)
    if err:
        print(f"netstack bench smtp: {err}", file=sys.stderr)
        return 2
    for c in args.conn:
        if c not in CONNS:
            print(f"netstack bench smtp: unknown connection mode {c!r} (have: {', '.join(CONNS)})", file=sys.stderr)
            return 2
    for c in args.client:
        if c not in CLIENTS:
            print(f"netstack bench smtp: unknown client {c!r} (have: {', '.join(CLIENTS)})", file=sys.stderr)
            return 2
    if "smtp-source" in args.client:
        why = postfix_tools_missing()
        if why:
            print(f"netstack bench smtp: --client smtp-source: {why}", file=sys.stderr)
            return 2
    if args.idle_sessions < 0:
        print("netstack bench smtp: --idle-sessions must not be negative", file=sys.stderr)
        return 2
    if args.transports is None:
        args.transports = ("kernel", _default_netstack_transport())
    for name in args.transports:
        if name not in TRANSPORTS:
            print(f"netstack bench smtp: unknown transport {name!r} (have: {', '.join(TRANSPORTS)})", file=sys.stderr)
            return 2
    if "smtp-source" in args.client and "netstack-memory" in args.transports:
        print("netstack bench smtp: smtp-source cannot reach netstack over the in-memory link (use netstack-tun, "
              "as root)", file=sys.stderr)
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

    def servers_for(client, sink):
        out = [("ours", t) for t in args.transports]
        if not args.no_aiosmtpd:
            out.append(("aiosmtpd", "kernel"))
            if sink != "memory":
                out.append(("aiosmtpd-mailbox", "kernel"))
        return out + ([("smtp-sink", "kernel")] if client == "smtp-source" else [])

    cells = [(client, sink, c, conn) for client in args.client for sink in args.sinks for c in args.clients
             for conn in CONNS if conn in args.conn]
    warmup = report.warmup_setting(args)
    steps = sum(len(servers_for(*cell[:2])) for cell in cells) * (warmup + repeat)
    progress = report.Progress(steps + (len(args.transports) if args.idle_sessions else 0), "bench smtp",
                               quiet=args.quiet)
    results: dict = {}
    cpu: dict = {}
    idle: dict = {}

    async def one(server, transport, client, sink_kind, clients, conn):
        kw = dict(clients=clients, messages=messages, reuse=conn == "reuse", size=args.size, client=client)
        if server == "smtp-sink":
            return await measure_smtp_sink(**kw)
        sink = _Sink(sink_kind, sink_dirs[sink_kind])
        try:
            if server == "aiosmtpd":
                return await measure_aiosmtpd(delivery=sink.delivery, **kw)
            if server == "aiosmtpd-mailbox":
                return await measure_aiosmtpd(delivery=None, mailbox_dir=sink.dir, **kw)
            async with TRANSPORTS[transport]() as (starter, opener):
                return await measure_ours(starter, opener, delivery=sink.delivery, **kw)
        finally:
            sink.close()

    async def main():
        for r in range(warmup + repeat):
            for cell in cells:
                for server, transport in servers_for(*cell[:2]):
                    progress.step(f"{'warm-up: ' if r < warmup else ''}{cell[0]}: {server}/{transport} {cell[1]} "
                                  f"{cell[2]} clients {cell[3]}")
                    t0 = time.thread_time()
                    rate = await one(server, transport, *cell)
                    used = time.thread_time() - t0
                    if r >= warmup:
                        results.setdefault((server, transport) + cell, []).append(rate)
                        if server != "smtp-sink":
                            cpu.setdefault((server, transport) + cell, []).append(used / messages * 1e6)
        if args.idle_sessions:
            for transport in args.transports:
                progress.step(f"{args.idle_sessions} idle sessions on {transport}")
                async with TRANSPORTS[transport]() as (starter, opener):
                    idle[transport] = await measure_idle_sessions(starter, opener, args.idle_sessions)

    asyncio.run(main())
    progress.finish()
    rows = []
    for cell in cells:
        ref = results.get(("aiosmtpd", "kernel") + cell)
        ref_rate = report.median(ref) if ref else None
        sink_runs = results.get(("smtp-sink", "kernel") + cell)
        sink_rate = report.median(sink_runs) if sink_runs else None
        mbox_runs = results.get(("aiosmtpd-mailbox", "kernel") + cell)
        mbox_rate = report.median(mbox_runs) if mbox_runs else None
        for server, transport in servers_for(*cell[:2]):
            runs = results[(server, transport) + cell]
            rate = report.median(runs)
            cpu_runs = cpu.get((server, transport) + cell)
            rows.append({"client": cell[0], "server": server, "transport": transport,
                         "sink": "none (discards)" if server == "smtp-sink" else labels[cell[1]],
                         "clients": cell[2], "conn": cell[3], "msgs_per_s": rate, "runs_msgs_per_s": runs,
                         "vs_aiosmtpd": (rate / ref_rate) if ref_rate else None,
                         "vs_mailbox": (rate / mbox_rate) if mbox_rate else None,
                         "vs_sink": (rate / sink_rate) if sink_rate else None,
                         "loop_cpu_us": report.median(cpu_runs) if cpu_runs else None})
    report.add_spread(rows, "runs_msgs_per_s")
    print(f"SMTP, {messages} messages of {args.size} B per cell, median of {repeat} run(s) after {warmup} "
          f"warm-up; vs aiosmtpd = rate / aiosmtpd's rate in the same cell (same client, same durable sink); "
          f"vs aio Mailbox = rate / aiosmtpd's with its own Maildir handler (no fsync); vs smtp-sink = rate / "
          f"Postfix's smtp-sink's (writes nothing) in the same cell; loop CPU/msg = CPU time of this process's event-loop "
          f"thread per message (the server, netstack's stack, the kernel's work in its system calls, and the python "
          f"clients when they are the load)")
    print(report.format_table(COLUMNS, rows))
    warnings = report.spread_warnings(
        rows, lambda r: f"{r['client']}: {r['server']}/{r['transport']} {r['sink']} {r['clients']} clients "
                        f"{r['conn']}")
    if warnings:
        print("\n".join(warnings))
    for transport, (n, per, base) in idle.items():
        print(f"idle sessions: {n} held open on {transport}: {per:.0f} bytes of Python heap per session, "
              f"{abs(per - base):.0f} {'above' if per >= base else 'below'} a bare stream server's {base:.0f} "
              "(client streams in this process count in both)")
    targets = _targets(rows, args)
    if targets:
        print("\ntargets:")
        print(report.format_targets(targets))
    if args.json:
        report.write_json(args.json, "smtp", COLUMNS, rows, messages=messages, size=args.size, repeat=repeat,
                          warmup=warmup, targets=targets, key=KEY, figure=FIGURE, warnings=warnings,
                          idle_sessions={t: {"sessions": n, "bytes_per_session": per, "bare_stream_bytes": base}
                                         for t, (n, per, base) in idle.items()})
    return 0


def _row(rows, client, server, transport, sink, clients=8, conn="new"):
    return next((r for r in rows if r["client"] == client and r["server"] == server and r["transport"] == transport
                 and r["sink"].split(" ")[0] == sink and r["clients"] == clients and r["conn"] == conn), None)


def _targets(rows, args) -> list:
    """The targets, each from rows of this run: ratios in one cell (8 clients, a new connection per message)."""
    targets = []

    def add(name, goal, row, key, threshold):
        if row is None:
            return
        v = row[key]
        targets.append(report.Target(name, goal, v, None if v is None else v >= threshold,
                                     "n/a" if v is None else f"{v:.2f}x ({row['msgs_per_s']:.0f} msgs/s)"))

    for transport in args.transports:
        add(f"python: ours/{transport} 8 clients, memory, new conn", ">= 0.5x aiosmtpd/kernel",
            _row(rows, "python", "ours", transport, "memory"), "vs_aiosmtpd", 0.5)
    src = "smtp-source"
    add("smtp-source: ours/kernel 8 clients, maildir rootfs, new conn", ">= 2x aiosmtpd Mailbox/kernel (no fsync)",
        _row(rows, src, "ours", "kernel", "maildir-rootfs"), "vs_mailbox", 2.0)
    for sink in ("maildir-rootfs", "maildir-tmpfs"):
        add(f"smtp-source: ours/netstack-tun 8 clients, {sink}, new conn",
            ">= 1.0x aiosmtpd Mailbox/kernel (no fsync)", _row(rows, src, "ours", "netstack-tun", sink),
            "vs_mailbox", 1.0)
    for sink in args.sinks:
        add(f"smtp-source: ours/netstack-tun 8 clients, {sink}, new conn (stretch)", ">= 0.25x smtp-sink",
            _row(rows, src, "ours", "netstack-tun", sink), "vs_sink", 0.25)
    return targets


async def measure_idle_sessions(starter, opener, n: int) -> tuple[int, float, float]:
    """Hold ``n`` sessions open on our server, each idle after its greeting; returns (n, bytes of Python
    heap per session, the same for a bare stream server that only greets).  The clients' streams live
    in this process too and count in both; the difference is what an SMTP session costs beyond its
    connection."""
    from smtp.server import SmtpServer
    from smtp.session import SessionConfig

    server = SmtpServer(SessionConfig(hostname="bench"), max_connections=n + 10)
    ours = await _heap_per_connection(lambda h: _start_ours(server, starter), opener, n, lambda: server.active)
    bare_active = [0]

    async def bare(reader, writer):
        bare_active[0] += 1
        try:
            writer.write(b"220 bare\r\n")
            await reader.read()
        finally:
            bare_active[0] -= 1
            writer.close()

    base = await _heap_per_connection(lambda h: starter(bare), opener, n, lambda: bare_active[0])
    return n, ours, base


async def _heap_per_connection(start, opener, n: int, active) -> float:
    import gc
    import tracemalloc

    srv = await start(None)
    conns = []
    started = not tracemalloc.is_tracing()
    try:
        if started:
            tracemalloc.start()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(0, n, 50):
            batch = await asyncio.gather(*(opener() for _ in range(min(50, n - i))))
            conns += batch
            await asyncio.gather(*(r.readline() for r, _ in batch))       # the 220: the session is running
        deadline = time.monotonic() + 30
        while active() < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if active() < n:
            raise RuntimeError(f"only {active()} of {n} idle sessions open")
        gc.collect()
        during = tracemalloc.get_traced_memory()[0]
    finally:
        if started:
            tracemalloc.stop()
        for _, w in conns:
            w.close()
        srv.close()
        await srv.wait_closed()
    return (during - before) / n
