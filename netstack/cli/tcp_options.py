"""The ``--tcp-*`` options of ``netstack serve``.

:func:`config_from_args` gives the :class:`~netstack.tcp.TCPConfig` the
serving stack is built with (``Stack(link, addr, tcp=...)``; its MSS from the
link MTU), from the tunables an operator or a lab test wants on the command
line.  Defaults are the RFCs' (RFC 6298 §2.4: a minimum RTO of 1 s); Linux
uses a 200 ms minimum, which ``--tcp-rto-min 0.2`` reproduces.
"""
from __future__ import annotations

import argparse

from netstack.tcp import TCPConfig
from netstack.tcp.syncookies import SynCookieMode
from netstack.tcp.congestion import ALGORITHMS

_DEFAULTS = TCPConfig()


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _buffer(text: str) -> int:
    value = int(text)
    if value < 1024:
        raise argparse.ArgumentTypeError(f"must be at least 1024 bytes, not {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def add_arguments(parser) -> None:
    g = parser.add_argument_group("TCP")
    g.add_argument("--tcp-rto-min", type=_seconds, metavar="S", default=_DEFAULTS.rto_min,
                   help=f"minimum retransmission timeout in seconds (default {_DEFAULTS.rto_min:g}, RFC 6298; "
                        "Linux uses 0.2)")
    g.add_argument("--tcp-msl", type=_seconds, metavar="S", default=_DEFAULTS.msl,
                   help=f"maximum segment lifetime; TIME-WAIT lasts 2*MSL (default {_DEFAULTS.msl:g} s)")
    g.add_argument("--tcp-rcvbuf", type=_buffer, metavar="BYTES", default=_DEFAULTS.rcvbuf,
                   help=f"receive buffer per connection, bounds the window; with autotuning its initial "
                        f"size (default {_DEFAULTS.rcvbuf})")
    g.add_argument("--tcp-rcvbuf-max", type=_buffer, metavar="BYTES", default=_DEFAULTS.rcvbuf_max,
                   help=f"receive-buffer autotuning grows a connection's buffer, as its application reads, "
                        f"up to this (default {_DEFAULTS.rcvbuf_max}; 64 KB without window scaling)")
    g.add_argument("--tcp-no-rcvbuf-autotune", action="store_true",
                   help="keep every receive buffer at --tcp-rcvbuf (no dynamic right-sizing)")
    g.add_argument("--tcp-sndbuf", type=_buffer, metavar="BYTES", default=_DEFAULTS.sndbuf,
                   help=f"send buffer per connection (default {_DEFAULTS.sndbuf})")
    g.add_argument("--tcp-cc", choices=ALGORITHMS, default=_DEFAULTS.congestion, metavar="NAME",
                   help=f"congestion control of new connections: {' or '.join(ALGORITHMS)} "
                        f"(default {_DEFAULTS.congestion}: RFC 9438 with HyStart++; a socket may change its own "
                        "with TCP_CONGESTION)")
    g.add_argument("--tcp-loss-detection", choices=("rack", "rfc6675"), default=_DEFAULTS.loss_detection,
                   metavar="NAME", help=f"loss detection with SACK: rack (RFC 8985) or rfc6675 "
                                        f"(default {_DEFAULTS.loss_detection})")
    g.add_argument("--tcp-no-sack", action="store_true", help="do not offer or accept SACK (RFC 2018)")
    g.add_argument("--tcp-no-timestamps", action="store_true", help="do not offer or accept timestamps (RFC 7323)")
    g.add_argument("--tcp-no-wscale", action="store_true", help="do not offer window scaling (RFC 7323)")
    g.add_argument("--tcp-syncookies", choices=[m.value for m in SynCookieMode], default=_DEFAULTS.syncookies.value,
                   help="SYN cookies (RFC 4987): once a listener's SYN queue is full (auto), for every SYN "
                        f"(always), or never (default {_DEFAULTS.syncookies.value})")
    g.add_argument("--tcp-max-connections", type=_count, metavar="N", default=_DEFAULTS.max_connections,
                   help=f"connections at most, TIME-WAIT included; beyond it SYNs get an RST "
                        f"(default {_DEFAULTS.max_connections})")
    g.add_argument("--tcp-max-orphans", type=_count, metavar="N", default=_DEFAULTS.max_orphans,
                   help=f"connections closed by the application still winding down, at most; beyond it "
                        f"close() resets (default {_DEFAULTS.max_orphans})")


def config_from_args(args, mtu: int) -> TCPConfig:
    """The TCPConfig for ``netstack serve``'s options (argparse already checked their ranges)."""
    return TCPConfig.for_mtu(
        mtu, rto_min=args.tcp_rto_min, rto_initial=max(_DEFAULTS.rto_initial, args.tcp_rto_min),
        msl=args.tcp_msl, rcvbuf=args.tcp_rcvbuf, sndbuf=args.tcp_sndbuf, ooo_max=args.tcp_rcvbuf,
        rcvbuf_max=args.tcp_rcvbuf_max, rcvbuf_autotune=not args.tcp_no_rcvbuf_autotune,
        sack=not args.tcp_no_sack, timestamps=not args.tcp_no_timestamps,
        wscale=None if args.tcp_no_wscale else _DEFAULTS.wscale,
        congestion=args.tcp_cc, loss_detection=args.tcp_loss_detection,
        syncookies=SynCookieMode(args.tcp_syncookies), max_connections=args.tcp_max_connections,
        max_orphans=args.tcp_max_orphans)
