"""``netstack send``: send one message with the SMTP client (smtp.client), from the stack.

    netstack send --from me@example.test --to you@example.test [--server HOST:PORT] FILE|-

By default the connection is made by netstack's own TCP: the command brings
up a lab (TUN ``--ifname`` in namespace ``--netns``, created if missing and
reused if it exists; kernel side ``--peer``, stack ``--addr``), runs a stack
for the duration of the send and connects from the stack's address to
``--server`` (default 198.18.0.1:25, the kernel side of the lab: run the
receiving server inside the namespace, e.g. ``ip netns exec NS swaks``-style
tools or ``python -m netstack.cli.smtp_server --host 0.0.0.0``).  ``--kernel`` uses the
kernel's TCP instead (default server 127.0.0.1:25).

The client only sees an *opener* (``async opener(host, port) -> (reader,
writer)``): ``asyncio.open_connection`` or netstack's
``streams.open_connection`` bound to the stack.

Exit status: 0 sent, 1 refused by the server or connection failure,
2 bad usage, unreadable FILE or a lab that cannot be set up (one line on stderr).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import sys

from netstack.cli import UsageError


@contextlib.asynccontextmanager
async def kernel_opener(args):
    yield asyncio.open_connection


@contextlib.asynccontextmanager
async def netstack_opener(args):
    """A stack on the lab's TUN for the duration of the send; yields its open_connection."""
    from netstack.link.lab import Lab, LabError
    from netstack.sockets.streams import open_connection
    from netstack.stack import Stack

    try:
        lab = Lab(netns=args.netns, ifname=args.ifname, kernel_addr=args.peer, stack_addr=args.addr, mtu=args.mtu)
        await asyncio.to_thread(lab.up)     # pyroute2 will not run inside a running event loop
    except LabError as exc:
        raise UsageError(str(exc)) from None
    stack = None
    try:
        stack = Stack(lab.link, args.addr)
        stack.start()
        yield functools.partial(open_connection, stack)
    finally:
        if stack is not None:
            stack.close()
        await asyncio.to_thread(lab.down)


def make_opener(args):
    """An async context manager yielding the opener: the kernel's TCP with --kernel, else netstack's."""
    return kernel_opener(args) if args.kernel else netstack_opener(args)


def add_parser(sub) -> None:
    p = sub.add_parser("send", help="send a message to an SMTP server",
                       description="Send FILE (or stdin with -) as one message. Line ends are normalised to CRLF "
                                   "and dot-stuffed. EHLO (HELO fallback), STARTTLS when offered, PIPELINING "
                                   "when offered, SIZE honoured.")
    p.add_argument("file", metavar="FILE|-", help="the message (headers and body); - reads stdin")
    p.add_argument("--from", dest="mail_from", required=True, metavar="ADDRESS", help="envelope sender ('' for <>)")
    p.add_argument("--to", action="append", required=True, metavar="ADDRESS",
                   help="envelope recipient (repeatable, or comma-separated)")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="default 198.18.0.1:25 (the lab's kernel side), or 127.0.0.1:25 with --kernel")
    p.add_argument("--helo", default="localhost", metavar="NAME", help="our name in EHLO/HELO")
    p.add_argument("--starttls", choices=["auto", "require", "never"], default="auto",
                   help="use STARTTLS when offered (auto, default), insist on it, or never")
    p.add_argument("--cafile", help="CA certificates to verify the server with")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    p.add_argument("--auth-user", help="AUTH as this user (after STARTTLS)")
    p.add_argument("--password-file", help="file whose first line is the AUTH password")
    p.add_argument("--no-pipelining", action="store_true", help="one command at a time even if PIPELINING is offered")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each reply (default 60)")
    p.add_argument("--kernel", action="store_true", help="use the kernel's TCP instead of netstack's")
    lab = p.add_argument_group("the lab (without --kernel)")
    lab.add_argument("--netns", default="netstack", help="lab namespace (created if missing; default netstack)")
    lab.add_argument("--ifname", default="nstks0", help="TUN device name (default nstks0)")
    lab.add_argument("--addr", default="198.18.0.2", help="the stack's address (default 198.18.0.2)")
    lab.add_argument("--peer", default="198.18.0.1/24", help="kernel side address/prefix (default 198.18.0.1/24)")
    lab.add_argument("--mtu", type=int, default=1500, help="link MTU (default 1500)")
    p.set_defaults(func=run)


def parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _read_message(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def run(args) -> int:
    from smtp.client import SmtpError, send_message

    host, port = parse_server(args.server or ("127.0.0.1:25" if args.kernel else "198.18.0.1:25"))
    rcpts = [r.strip() for item in args.to for r in item.split(",") if r.strip()]
    if not rcpts:
        raise UsageError("--to: no recipient given")
    message = _read_message(args.file)
    auth = None
    if args.auth_user:
        if not args.password_file:
            raise UsageError("--auth-user needs --password-file")
        try:
            with open(args.password_file, encoding="utf-8") as f:
                auth = (args.auth_user, f.readline().rstrip("\r\n"))
        except OSError as exc:
            raise UsageError(f"{args.password_file}: {exc.strerror or exc}") from None
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    async def send():
        async with make_opener(args) as opener:
            return await send_message(
                opener, host, port, args.mail_from, rcpts, message, local_hostname=args.helo,
                starttls=args.starttls, tls_context=ctx, auth=auth, pipelining=not args.no_pipelining,
                timeout=args.timeout)

    try:
        result = asyncio.run(send())
    except SmtpError as exc:
        print(f"netstack send: refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        print(f"netstack send: {host}:{port}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for rcpt, (code, text) in result.refused.items():
        print(f"refused <{rcpt}>: {code} {text}", file=sys.stderr)
    print(f"{result.code} {result.text}")
    return 0
