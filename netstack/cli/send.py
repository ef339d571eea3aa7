"""``netstack send``: send one message with the SMTP client (smtp.client).

    netstack send --from me@example.test --to you@example.test [--server HOST:PORT] FILE|-

The TCP connection comes from an *opener* (``async opener(host, port) ->
(reader, writer)``).  ``make_opener(args)`` picks it: ``--kernel`` uses the
kernel's TCP (``asyncio.open_connection``); the default is
``DEFAULT_OPENER_FACTORY``, which is the kernel as well until netstack's
stack is wired in (replace that one name with a factory returning
``stack.open_connection``).

Exit status: 0 sent, 1 refused by the server or connection failure,
2 bad usage or unreadable FILE (one line on stderr).
"""
from __future__ import annotations

import asyncio
import ssl
import sys

from netstack.cli import UsageError


def kernel_opener_factory(args):
    return asyncio.open_connection


#: the opener used without --kernel (the integrating dev points this at netstack's stack)
DEFAULT_OPENER_FACTORY = kernel_opener_factory


def add_parser(sub) -> None:
    p = sub.add_parser("send", help="send a message to an SMTP server",
                       description="Send FILE (or stdin with -) as one message. Line ends are normalised to CRLF "
                                   "and dot-stuffed. EHLO (HELO fallback), STARTTLS when offered, PIPELINING "
                                   "when offered, SIZE honoured.")
    p.add_argument("file", metavar="FILE|-", help="the message (headers and body); - reads stdin")
    p.add_argument("--from", dest="mail_from", required=True, metavar="ADDRESS", help="envelope sender ('' for <>)")
    p.add_argument("--to", action="append", required=True, metavar="ADDRESS",
                   help="envelope recipient (repeatable, or comma-separated)")
    p.add_argument("--server", default="127.0.0.1:25", metavar="HOST:PORT", help="default 127.0.0.1:25")
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
    p.set_defaults(func=run)


def parse_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def make_opener(args):
    return kernel_opener_factory(args) if args.kernel else DEFAULT_OPENER_FACTORY(args)


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

    host, port = parse_server(args.server)
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
    opener = make_opener(args)
    try:
        result = asyncio.run(send_message(
            opener, host, port, args.mail_from, rcpts, message, local_hostname=args.helo,
            starttls=args.starttls, tls_context=ctx, auth=auth, pipelining=not args.no_pipelining,
            timeout=args.timeout))
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
