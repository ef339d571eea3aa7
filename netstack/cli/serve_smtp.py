"""The SMTP service for ``netstack serve`` (an installer in ``netstack.cli.serve``'s SERVICE_MODULES).

Runs ``smtp.server.SmtpServer`` on netstack's own TCP streams
(``netstack.sockets.streams.start_server``) on ``--smtp-port`` (default 25).
The stack's address literal (e.g. ``[198.18.0.2]``) is always a local domain.
The server's options are those of ``python -m netstack.cli.smtp_server``
(:func:`netstack.cli.smtp_server.add_server_arguments`).
"""
from __future__ import annotations

import functools
import ipaddress
import logging

from netstack.cli import UsageError
from netstack.cli.smtp_server import add_server_arguments, build_server, check_server_arguments

_servers: list = []

#: where ``netstack serve`` delivers mail unless ``--maildir`` says otherwise: a daemon's
#: data belongs under /var/lib, never in whatever directory it was started from
DEFAULT_MAILDIR = "/var/lib/netstack/mail"


def add_arguments(parser) -> None:
    g = parser.add_argument_group("SMTP")
    g.add_argument("--smtp-port", type=int, default=25, help="SMTP port on the stack (default 25; 0 disables SMTP)")
    add_server_arguments(g, maildir=DEFAULT_MAILDIR)


def validate_args(args) -> None:
    """Before the lab is set up: bad SMTP options end ``serve`` with one line, exit status 2."""
    if args.smtp_port:
        try:
            check_server_arguments(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


async def install_from_args(stack, args):
    if not args.smtp_port:
        return None
    from netstack.sockets.streams import create_server

    literal = f"[{ipaddress.IPv4Address(stack.addr)}]"
    try:
        server = build_server(args, extra_domains=(literal,))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # the per-message log line ("queued QID client=... from=... to=... size=...") is part of the
    # service's output: shown at the default --log-level (WARNING), silenced by ERROR/CRITICAL
    level = logging.getLogger().getEffectiveLevel()
    if level <= logging.WARNING:
        logging.getLogger("smtp.server").setLevel(min(level, logging.INFO))
    srv = await server.start_protocol(functools.partial(create_server, stack, port=args.smtp_port))
    _servers.append(server)
    return srv


async def drain(args) -> None:
    """SIGTERM: the graceful shutdown of every SMTP server (``SmtpServer.shutdown``), before the stack stops."""
    for server in _servers:
        await server.shutdown(args.smtp_drain_seconds)


def offered(args) -> list[tuple[str, int]]:
    """What this installer serves, for the ready line."""
    return [("smtp", args.smtp_port)] if args.smtp_port else []


#: the server's figures in the report line
FIGURES = ("accepted", "active", "sessions_shed", "connections_refused", "refused_per_ip", "refused_shutting_down")


def report_data(stack) -> dict:
    """The server's figures (for the report; with ``--workers`` summed by :func:`merge_report`)."""
    if not _servers:
        return {}
    s = _servers[-1]
    return {name: getattr(s, name) for name in FIGURES}


def merge_report(parts: list[dict]) -> str:
    """The report line for the figures of one or several workers' servers, summed."""
    parts = [p for p in parts if p]
    if not parts:
        return ""
    v = {name: sum(p.get(name, 0) for p in parts) for name in FIGURES}
    return (f"smtp: {v['accepted']} messages accepted, {v['active']} sessions open, {v['sessions_shed']} stalled "
            f"sessions shed, {v['connections_refused']} connections refused ({v['refused_per_ip']} over the "
            f"per-address limit, {v['refused_shutting_down']} while shutting down, the rest full)"
            + (f" in {len(parts)} workers" if len(parts) > 1 else ""))


def report(stack) -> str:
    return merge_report([report_data(stack)])
