"""``netstack report``: one self-contained HTML page about a capture (and, optionally, its state log)."""
from __future__ import annotations

import argparse
import sys

from netstack.cli import UsageError

_EPILOG = """\
The page needs no network access to be viewed: it lists the TCP connections; for each, the
ladder diagram, the time-sequence, throughput and RTT graphs and (with --state-log) the
state diagram with the transitions taken and a table of them, and a table of the
congestion and recovery events (fast retransmit, recovery exit, RTO, tail loss probe,
undo) with the congestion window before and after each, also marked on the ladder;
then every packet, one tcpdump-style line each, explained field by field (the text of
`netstack trace -V`) when clicked, in the table or on a ladder arrow.

exit status: 2 with one line on stderr for an unreadable capture or state log, a capture
without TCP, or an output file that cannot be written.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a capture",
                       description="A self-contained HTML page: connections, ladders, graphs, states, and every "
                                   "packet explained on click.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("capture", metavar="CAPTURE", help="pcap file or tcpdump hex dump")
    p.add_argument("--state-log", metavar="FILE", help="a state log (netstack serve --state-log) to draw the states and list the "
                        "congestion and recovery events")
    p.add_argument("-o", "--output", metavar="FILE.html", required=True, help="the page to write")
    p.add_argument("--max-packets", type=int, metavar="N", default=20_000,
                   help="read at most N packets (default 20000: every packet's reading is in the page); "
                        "the page says when it was cut")
    p.add_argument("--title", help="the page title (default: netstack report: CAPTURE)")
    p.set_defaults(func=run)


def run(args) -> int:
    from netstack.cli.draw import load_capture
    from netstack.pictures.report import build_report
    from netstack.statelog import StateLogError, read_log
    records = events = None
    if args.state_log:
        try:
            records, events = read_log(args.state_log)
        except StateLogError as exc:
            raise UsageError(str(exc)) from None
    cap = load_capture(args.capture, args.max_packets, explain=True)
    page = build_report(cap, state_records=records, recovery_records=events, title=args.title)
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as exc:
        raise UsageError(f"{args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
