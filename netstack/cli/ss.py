"""``netstack ss``: the connection table of a running stack, in ``ss -t``'s shape."""
from __future__ import annotations

import argparse
import sys

from netstack.cli.control_client import ControlError, add_target_arguments, request, socket_path

_EPILOG = """\
Asks the stack that `netstack serve` runs over its control socket (root only) and prints
what ss prints: State, Recv-Q, Send-Q, local and peer address. A LISTEN row shows the
accept queue (Recv-Q) and the backlog (Send-Q).

-o ends a row with the timer of the connection's exclusive slot, as timer:(NAME,LEFT,N):
NAME is retrans, persist, keepalive, timewait or finwait2, LEFT the time left in ss's
format (204ms, 1.500ms, 12sec, 2min5sec), N how often it fired unanswered.

-i adds a line per connection: ts sack wscale:S,R rto rtt:SRTT/RTTVAR ato mss rcvmss,
cwnd in segments as ss shows it and cwnd_bytes (netstack counts bytes), ssthresh,
bytes_acked segs_out segs_in minrtt, then retrans:CUR/TOTAL and the sequence variables
snd_una snd_nxt rcv_nxt snd_wnd rcv_wnd (RFC 9293 section 3.3.1). Times are in ms.

With `netstack serve --workers N` the table holds every worker's sockets, with a Worker
column: the worker (0..N-1) that holds each one; each worker has its own listeners.

exit status: 0 printed; 1 no stack answers (or it refused the request); 2 bad usage.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("ss", help="print a running stack's connection table, like ss -t",
                       description="Print the TCP sockets of the stack `netstack serve` runs, like ss -t.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets (the only kind netstack has)")
    p.add_argument("-a", "--all", action="store_true", help="listening and connected sockets")
    p.add_argument("-l", "--listening", action="store_true", help="listening sockets only")
    p.add_argument("-n", "--numeric", action="store_true", help="do not resolve port numbers to service names")
    p.add_argument("-o", "--options", action="store_true", help="show the timer: timer:(retrans,204ms,1)")
    p.add_argument("-i", "--info", action="store_true", help="show TCP internals (rtt, cwnd, counters, ...)")
    add_target_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from netstack.sockets.table import format_ss
    path = socket_path(args)
    try:
        reply = request(path, {"op": "ss"})
    except ControlError as exc:
        print(f"netstack ss: {exc}", file=sys.stderr)
        return 1
    states = "all" if args.all else "listening" if args.listening else "connected"
    print(format_ss(reply["ss"], states=states, info=args.info, timers=args.options, numeric=args.numeric))
    return 0
