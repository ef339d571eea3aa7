"""echo, discard and chargen for ``netstack serve`` (an installer in ``netstack.cli.serve``'s SERVICE_MODULES).

The options ``--echo-port``, ``--discard-port``, ``--chargen-port`` and
``--no-services``; the services themselves are :mod:`netstack.services`.
"""
from __future__ import annotations

import argparse
import asyncio

from netstack import services
from netstack.services import CHARGEN_PORT, DISCARD_PORT, ECHO_PORT


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range (0..65535, 0 = off): {v}")
    return v


def add_arguments(parser) -> None:
    """Add the services' options to the ``netstack serve`` parser."""
    g = parser.add_argument_group("services (echo, discard, chargen; on by default)")
    g.add_argument("--echo-port", type=_port, default=ECHO_PORT, metavar="PORT",
                   help=f"RFC 862 echo port (default {ECHO_PORT}; 0 = off)")
    g.add_argument("--discard-port", type=_port, default=DISCARD_PORT, metavar="PORT",
                   help=f"RFC 863 discard port (default {DISCARD_PORT}; 0 = off)")
    g.add_argument("--chargen-port", type=_port, default=CHARGEN_PORT, metavar="PORT",
                   help=f"RFC 864 chargen port (default {CHARGEN_PORT}; 0 = off)")
    g.add_argument("--no-services", action="store_true", help="run none of echo, discard, chargen")


async def install_from_args(stack, args):
    """The installer ``netstack serve`` calls with its parsed options.

    Returns the closer serve runs at teardown: stop listening and reset the
    connections still open (a bulk chargen client would otherwise hold the
    teardown until its own timeout).
    """
    if args.no_services:
        return None
    servers = await services.install(stack, echo_port=args.echo_port, discard_port=args.discard_port,
                                     chargen_port=args.chargen_port)

    async def close_all() -> None:
        for server in servers:
            server.close()
            server.abort_clients()
        for server in servers:
            await asyncio.wait_for(server.wait_closed(), 5)

    return close_all


def offered(args) -> list[tuple[str, int]]:
    """What this installer serves, for the ready line."""
    if args.no_services:
        return []
    return [(name, port) for name, port in (("echo", args.echo_port), ("discard", args.discard_port),
                                            ("chargen", args.chargen_port)) if port]


def report(stack) -> str:
    """For ``netstack serve``'s SIGUSR1/exit report: the ``ss -tin`` style table."""
    from netstack.sockets.table import stack_table
    return stack_table(stack)


def report_data(stack) -> dict:
    """With ``--workers``: this worker's part of the table (merged by :func:`merge_report`)."""
    from netstack.sockets.table import snapshot
    return snapshot(stack)


def merge_report(parts: list[dict]) -> str:
    """With ``--workers``: one table for every worker, with a Worker column."""
    from netstack.sockets.table import format_ss, merge_snapshots
    return "TCP connections:\n" + format_ss(merge_snapshots(parts), states="all", info=True, timers=True,
                                             numeric=True)
