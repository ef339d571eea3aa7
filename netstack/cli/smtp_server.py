"""The SMTP server from the command line: its options, and the server alone on kernel streams.

    python -m netstack.cli.smtp_server --port 2525 --maildir DIR [--tls-cert PEM] [--users FILE] ...

runs :class:`smtp.server.SmtpServer` on the kernel's TCP (asyncio streams),
for tests and comparison; ``--port 0`` picks a free port (``--port-file``
names it once listening).  :func:`add_server_arguments` and
:func:`build_server` are shared with ``netstack serve``'s SMTP service
(``netstack.cli.serve_smtp``).

Exit status: 130 after Ctrl-C; 2 with one line on stderr for a certificate
or users file that cannot be loaded.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys

from smtp.server import SmtpServer
from smtp.session import SessionConfig


def add_server_arguments(p: argparse.ArgumentParser, *, maildir: str = "./mail") -> None:
    """Options shared by ``python -m netstack.cli.smtp_server`` and ``netstack serve``
    (``maildir``: the default of ``--maildir``)."""
    p.add_argument("--maildir", default=maildir,
                   help=f"base directory for the per-recipient Maildirs (default {maildir})")
    p.add_argument("--smtp-hostname", default="localhost", help="our name in the greeting and Received: headers")
    p.add_argument("--domain", action="append", default=None,
                   help="a local domain to accept mail for (repeatable; default localhost and example.test)")
    p.add_argument("--tls-cert", help="PEM certificate: enables STARTTLS")
    p.add_argument("--tls-key", help="PEM private key (default: in the certificate file)")
    p.add_argument("--users", help="users file for AUTH (see python -m netstack.cli.smtp_users); AUTH is offered "
                                   "only under TLS")
    p.add_argument("--smtp-max-size", type=int, default=SessionConfig.max_message_size, help="SIZE limit in octets")
    p.add_argument("--smtp-bare-lf", choices=["keep", "reject"], default="keep",
                   help="bare CR/LF in DATA: keep as content (default) or reject the message with 550 5.5.2")


def build_server(args, *, extra_domains: tuple[str, ...] = ()) -> SmtpServer:
    """An SmtpServer from parsed ``add_server_arguments`` options. Raises ValueError with a one-line reason."""
    from smtp.auth import Users
    from smtp.tls import server_context

    domains = tuple(args.domain or SessionConfig.local_domains) + tuple(extra_domains)
    cfg = SessionConfig(hostname=args.smtp_hostname, local_domains=domains, max_message_size=args.smtp_max_size,
                        bare_line_endings=args.smtp_bare_lf)
    ctx = None
    if args.tls_cert:
        try:
            ctx = server_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{args.tls_cert}: cannot load certificate/key: {exc}") from exc
    users = Users.load(args.users) if args.users else None
    return SmtpServer(cfg, maildir=args.maildir, tls_context=ctx, users=users)


def main(argv: list[str] | None = None) -> int:
    """``python -m netstack.cli.smtp_server``: the server on the kernel's TCP (asyncio streams)."""
    ap = argparse.ArgumentParser(prog="python -m netstack.cli.smtp_server",
                                 description="SMTP server on kernel TCP streams")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("-v", "--verbose", action="store_true")
    add_server_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        server = build_server(args)
    except ValueError as exc:
        print(f"smtp.server: {exc}", file=sys.stderr)
        return 2

    async def run():
        srv = await server.start(lambda handler: asyncio.start_server(handler, args.host, args.port))
        port = srv.sockets[0].getsockname()[1]
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.replace(tmp, args.port_file)
        print(f"listening on {args.host}:{port}", flush=True)
        async with srv:
            await srv.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
