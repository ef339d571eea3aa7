"""The SMTP server from the command line: its options, and the server alone on kernel streams.

    python -m netstack.cli.smtp_server --port 2525 --maildir DIR [--tls-cert PEM] [--users FILE] ...

runs :class:`smtp.server.SmtpServer` on the kernel's TCP (asyncio streams),
for tests and comparison; ``--port 0`` picks a free port (``--port-file``
names it once listening).  :func:`add_server_arguments` and
:func:`build_server` are shared with ``netstack serve``'s SMTP service
(``netstack.cli.serve_smtp``).

SIGTERM shuts down gracefully (``SmtpServer.shutdown``: stop accepting,
421 4.3.2 to idle sessions, transactions in DATA may finish for up to
``--smtp-drain-seconds``), then exits with status 0.

Exit status: 130 after Ctrl-C; 2 with one line on stderr for a certificate
or users file that cannot be loaded.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
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
    d = SessionConfig
    p.add_argument("--smtp-max-data-line", type=int, default=d.max_data_line_length, metavar="OCTETS",
                   help="longest text line in DATA, CRLF included; a message with a longer line is refused with "
                        f"500 5.5.2 after its end (default {d.max_data_line_length}, RFC 5321 4.5.3.1.6; 0: any)")
    p.add_argument("--smtp-idle-timeout", type=float, default=d.idle_timeout, metavar="S",
                   help=f"421 4.4.2 after S seconds without a complete command (default {d.idle_timeout:g})")
    p.add_argument("--smtp-line-timeout", type=float, default=d.line_timeout, metavar="S",
                   help="a command line must be complete S seconds after its first byte, however the bytes "
                        f"trickle in (default {d.line_timeout:g}; 0: off)")
    p.add_argument("--smtp-data-timeout", type=float, default=d.data_timeout, metavar="S",
                   help=f"the whole DATA/BDAT phase of one message (default {d.data_timeout:g})")
    p.add_argument("--smtp-min-data-rate", type=float, default=d.min_data_rate, metavar="OCTETS_PER_S",
                   help="in DATA/BDAT, 421 4.4.2 when a window brings less than this on average "
                        f"(default {d.min_data_rate:g}; 0: off)")
    p.add_argument("--smtp-data-rate-window", type=float, default=d.data_rate_window, metavar="S",
                   help=f"the window the data rate is averaged over (default {d.data_rate_window:g})")
    p.add_argument("--smtp-session-timeout", type=float, default=d.session_timeout, metavar="S",
                   help=f"the whole session, however busy (default {d.session_timeout:g}; 0: off)")
    p.add_argument("--smtp-max-connections", type=int, default=500, metavar="N",
                   help="sessions at once (default 500); when full, see --smtp-shed-after")
    p.add_argument("--smtp-shed-after", type=float, default=2.0, metavar="S",
                   help="when full, a new connection takes the slot of the session stalled longest, if stalled "
                        "at least S seconds (no complete command, or DATA below the minimum rate); otherwise "
                        "it gets 421 4.7.0 (default 2; 0: never shed)")
    p.add_argument("--smtp-max-per-ip", type=int, default=0, metavar="N",
                   help="sessions at once from one client address; beyond, 421 4.7.0 (default 0: no limit)")
    p.add_argument("--smtp-drain-seconds", type=float, default=10.0, metavar="S",
                   help="on SIGTERM: stop accepting, answer 421 4.3.2 to idle sessions, and let messages already "
                        "in DATA finish for up to S seconds before closing (default 10)")


def check_server_arguments(args) -> None:
    """Refuse impossible values of the time and size options: ValueError with a one-line reason."""
    for opt in ("max_data_line", "idle_timeout", "line_timeout", "data_timeout", "min_data_rate", "session_timeout",
                "shed_after", "max_per_ip", "drain_seconds"):
        if getattr(args, "smtp_" + opt) < 0:
            raise ValueError(f"--smtp-{opt.replace('_', '-')} must not be negative")
    if args.smtp_idle_timeout == 0 or args.smtp_data_timeout == 0:
        raise ValueError("--smtp-idle-timeout and --smtp-data-timeout must be positive")
    if args.smtp_data_rate_window <= 0:
        raise ValueError("--smtp-data-rate-window must be positive")
    if args.smtp_max_connections < 1:
        raise ValueError("--smtp-max-connections must be at least 1")
    if 0 < args.smtp_max_data_line < 1000:
        raise ValueError("--smtp-max-data-line must be at least 1000 (RFC 5321 4.5.3.1.6) or 0")


def build_server(args, *, extra_domains: tuple[str, ...] = ()) -> SmtpServer:
    """An SmtpServer from parsed ``add_server_arguments`` options. Raises ValueError with a one-line reason."""
    from smtp.auth import Users
    from smtp.tls import server_context

    domains = tuple(args.domain or SessionConfig.local_domains) + tuple(extra_domains)
    check_server_arguments(args)
    cfg = SessionConfig(hostname=args.smtp_hostname, local_domains=domains, max_message_size=args.smtp_max_size,
                        bare_line_endings=args.smtp_bare_lf, max_data_line_length=args.smtp_max_data_line,
                        idle_timeout=args.smtp_idle_timeout, line_timeout=args.smtp_line_timeout,
                        data_timeout=args.smtp_data_timeout, min_data_rate=args.smtp_min_data_rate,
                        data_rate_window=args.smtp_data_rate_window, session_timeout=args.smtp_session_timeout)
    ctx = None
    if args.tls_cert:
        try:
            ctx = server_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{args.tls_cert}: cannot load certificate/key: {exc}") from exc
    users = Users.load(args.users) if args.users else None
    return SmtpServer(cfg, maildir=args.maildir, tls_context=ctx, users=users,
                      max_connections=args.smtp_max_connections, shed_after=args.smtp_shed_after,
                      max_per_ip=args.smtp_max_per_ip)


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
        loop = asyncio.get_running_loop()
        srv = await server.start_protocol(lambda factory: loop.create_server(factory, args.host, args.port))
        port = srv.sockets[0].getsockname()[1]
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{port}\n")
            os.replace(tmp, args.port_file)
        print(f"listening on {args.host}:{port}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        loop.remove_signal_handler(signal.SIGTERM)
        logging.getLogger("smtp.server").info("SIGTERM: shutting down (drain up to %gs)", args.smtp_drain_seconds)
        await server.shutdown(args.smtp_drain_seconds)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
