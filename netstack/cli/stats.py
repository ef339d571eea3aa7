"""``netstack stats``: a running stack's counters under their MIB names, like nstat."""
from __future__ import annotations

import argparse
import json
import sys

from netstack.cli.control_client import ControlError, add_target_arguments, request, socket_path

_EPILOG = """\
Asks the stack that `netstack serve` runs over its control socket (root only). Prints,
like nstat, one counter per line: first the MIB names (IpInReceives, TcpActiveOpens,
TcpRetransSegs, TcpExtListenOverflows, ...; the mapping from netstack's own counter
names is the table in netstack/mib.py), then the gauges (TcpCurrEstab, tcp.connections,
tcp.listeners, tcp.accept_queue, tcp.syn_queue, ip.reasm.bytes_held), then the counters
no MIB name covers, under netstack's names (ip.in.drop.bad_checksum, ...). Zero values
are left out unless -z.

--delta prints the change since the previous `netstack stats --delta` on the same stack
(since it started, the first time) with a per-second rate column, like nstat's default;
the gauges stay current values. --json prints the whole answer: mib, gauges, unmapped,
counters (netstack's names), delta, interval (seconds covered by a delta), pid, uptime.

With `netstack serve --workers N` the counters and gauges are the workers' summed (plus
the TUN's drops, counted once); pid is the supervisor's, --json adds each worker's pid.

exit status: 0 printed; 1 no stack answers (or it refused the request); 2 bad usage.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="print a running stack's counters under their MIB names, like nstat",
                       description="Print the counters and gauges of the stack `netstack serve` runs, like nstat.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("-d", "--delta", action="store_true",
                   help="the change since the previous --delta request on this stack, with a rate column")
    p.add_argument("-z", "--zeros", action="store_true", help="print zero counters too")
    add_target_arguments(p)
    p.set_defaults(func=run)


def format_stats(reply: dict, *, zeros: bool = False) -> str:
    """nstat-shaped text for a ``stats`` reply of the control socket."""
    interval = reply.get("interval")
    rate = reply.get("delta") and interval

    def line(name: str, value: int, with_rate: bool) -> str:
        text = f"{name:<32}{value:<16}"
        if with_rate:
            text += f"{value / interval:>8.1f}"
        return text.rstrip()

    what = f"delta over {interval:.1f} s" if reply.get("delta") else "since start"
    out = [f"#netstack {reply.get('addr', '?')} pid {reply.get('pid', '?')} up {reply.get('uptime', 0):.1f} s, "
           f"counters {what}"]
    out += [line(k, v, bool(rate)) for k, v in reply["mib"].items() if v or zeros]
    out.append("#gauges (current values)")
    out += [line(k, v, False) for k, v in reply["gauges"].items() if v or zeros]
    rest = [line(k, v, bool(rate)) for k, v in reply["unmapped"].items() if v or zeros]
    if rest:
        out.append("#netstack counters with no MIB name")
        out += rest
    return "\n".join(out)


def run(args) -> int:
    path = socket_path(args)
    try:
        reply = request(path, {"op": "stats", "delta": bool(args.delta)})
    except ControlError as exc:
        print(f"netstack stats: {exc}", file=sys.stderr)
        return 1
    reply.pop("ok", None)
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(format_stats(reply, zeros=args.zeros))
    return 0
