"""The ``netstack`` command line.

Each subcommand lives in its own module under ``netstack.cli`` and exposes
``add_parser(subparsers)`` (which registers the subcommand and sets
``func=run`` as a default) and ``run(args) -> int``.  Modules are imported
lazily only as far as argparse needs them, so ``netstack trace`` never imports
pyroute2.

Everything command-line lives in this package, never in the library or in
``smtp``: argparse, ``netstack serve``'s service installers
(``tcp_options``, ``serve_services``, ``serve_smtp``), and two commands of
their own, ``python -m netstack.cli.smtp_server`` (the SMTP server on kernel
streams) and ``python -m netstack.cli.smtp_users`` (the AUTH users file).

Exit status: 0 success, 1 runtime failure, 2 bad usage or malformed input
(one line on stderr naming the place).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Order here is the order in ``netstack --help``.
SUBCOMMANDS = ["info", "trace", "draw", "report", "scenario", "serve", "ss", "stats", "send", "bench"]


class UsageError(Exception):
    """A one-line error for the user; the CLI prints it and exits with status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netstack",
        description="A userspace TCP/IP stack on a Linux TUN device, with an SMTP server on its own sockets.",
    )
    from netstack import __version__
    parser.add_argument("--version", action="version", version=f"netstack {__version__}",
                        help="print netstack's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"netstack.cli.{name}").add_parser(sub)
    parser.set_defaults(subcommand_parsers=sub.choices)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse *argv*; what the subcommand does not know is reported by the subcommand's own
    parser (its usage line, ``netstack trace: error: ...``), not by the top-level one.

    A subcommand that sets the default ``intermixed="<dest>"`` takes words that follow
    its options into that list, as tcpdump takes ``-r FILE -c 5 tcp port 25``."""
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    sub = args.subcommand_parsers.get(getattr(args, "command", None))
    if sub is None:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    dest = getattr(args, "intermixed", None)
    options = [x for x in extras if x.startswith("-") and x != "-"]
    if dest is None or options:
        sub.error(f"unrecognized arguments: {' '.join(options or extras)}")
    getattr(args, dest).extend(extras)
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"netstack {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `netstack trace x.pcap | head`
        return 0
