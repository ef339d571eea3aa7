"""``netstack scenario list | run NAME [-o DIR]``: classroom scenarios on two sans-I/O TCPs."""
from __future__ import annotations

import argparse
import io
import json
import os
import sys

from netstack.cli import UsageError

_EPILOG = """\
Each scenario runs two of netstack's TCPs, A (198.18.0.1, the client) and B (198.18.0.2, the
server), back to back over an in-memory wire (10 ms one way, 1 MB/s) on a fake clock, so every
run is the same. `run` prints each step: every segment as `netstack trace` prints it (as seen
on A's interface), each state transition of A and B with its cause, then the lesson and the
checks that state it.
With -o DIR it also writes: capture.pcap, states.jsonl (the state log of both sides; the
`host` key says which), ladder.txt, ladder.svg, seq.png (ladder-2.svg, seq-2.png, ... when
the scenario has several connections), states-A.svg, states-B.svg and report.html (open it
in a browser).

exit status: 0 when every check of the lesson held, 1 when one did not, 2 for an unknown
scenario or a DIR that cannot be written.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("scenario", help="classroom scenarios: two TCPs on a fake clock, each showing one lesson",
                       description="Play a classroom scenario and print (and draw) what happens.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    act = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    act.add_parser("list", help="the scenarios and their lessons").set_defaults(func=run)
    r = act.add_parser("run", help="play one scenario")
    r.add_argument("name", metavar="NAME", help="the scenario (see `netstack scenario list`)")
    r.add_argument("-o", "--output", metavar="DIR", help="write the capture, the state log and the pictures here")
    r.add_argument("-V", "--explain", action="store_true", help="explain every packet field by field (as trace -V)")
    r.set_defaults(func=run)


def run(args) -> int:
    from netstack import scenarios
    if args.action == "list":
        for name in scenarios.names():
            s = scenarios.get(name)
            print(f"{name:<20} {s.title}\n{'':<20} {s.lesson}")
        return 0
    try:
        scenario = scenarios.get(args.name)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    if args.output:
        try:
            os.makedirs(args.output, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{args.output}: {exc.strerror or exc}") from None
    outcome = scenario.play()
    from netstack.pictures.conversation import load
    from netstack.scenarios.testbed import A_ADDR, B_ADDR, EPOCH
    from netstack.statelog import recovery_from_dict
    from netstack.wire.ipv4 import int2ip
    a_addr = int2ip(A_ADDR) + ":"
    b_addr = int2ip(B_ADDR) + ":"
    tb = outcome.testbed
    cap = load(io.BytesIO(tb.pcap_bytes()), name=f"{outcome.name}.pcap")
    out = sys.stdout
    out.write(f"scenario {outcome.name}: {outcome.title}\n{outcome.lesson}\n\n")
    # the capture holds every segment A sent, in order: say which of them the wire lost
    from_a = (p for p in cap.packets if p.is_tcp and cap.conversations[p.conn].end(p.direction).startswith(a_addr))
    lost = {id(p) for p, seg in zip(from_a, (s for s in tb.segments if s.sender == "A")) if seg.dropped}
    steps = [(p.time - EPOCH, 0, i, p) for i, p in enumerate(cap.packets)]
    steps += [(r["time"] - EPOCH, 1, i, r) for i, r in enumerate(tb.transitions)]
    steps += [(r["time"] - EPOCH, 2, i, r) for i, r in enumerate(tb.recovery_events)]
    for t, kind, _, item in sorted(steps, key=lambda s: s[:3]):
        if kind == 0:
            sender = cap.conversations[item.conn].end(item.direction) if item.is_tcp else ""
            side = ("A>" if sender.startswith(a_addr) else "<B" if sender.startswith(b_addr)
                    else "X>" if item.is_tcp and item.direction == 0 else "<B")   # X: a forged source
            marks = [m for m in item.marks if m not in ("handshake", "close")]
            if id(item) in lost:
                marks.append("LOST on the wire")
            out.write(f"{t:10.6f} {side} {item.line.split(' ', 1)[1]}"
                      + (f"  ** {', '.join(marks)}" if marks else "") + "\n")
            if args.explain:
                out.write(item.explain + "\n\n")
        elif kind == 2:
            rec = recovery_from_dict(item)
            out.write(f"{t:10.6f}    {item['host']}: {rec.text()}\n")
        else:
            c = item["cause"]
            why = {"segment": f"received [{c.get('flags')}]", "timer": f"timer {c.get('timer')}",
                   "user": f"user {c.get('call')}", "icmp": "icmp"}.get(c["kind"], c["kind"])
            out.write(f"{t:10.6f}    {item['host']}: {item['from']} -> {item['to']} ({why})\n")
    out.write("\nlesson:\n")
    for sentence, held in outcome.checks:
        out.write(f"  [{'ok' if held else 'FAILED'}] {sentence}\n")
    if args.output:
        try:
            _write_outputs(args.output, outcome, cap)
        except OSError as exc:
            raise UsageError(f"{args.output}: {exc.strerror or exc}") from None
        out.write(f"\nwrote {os.path.join(args.output, 'report.html')} and the pictures in {args.output}\n")
    return 0 if outcome.ok else 1


def _write_outputs(d: str, outcome, cap) -> None:
    from netstack.pictures.graphs import draw_stream_graphs
    from netstack.pictures.ladder import capture_ladder_text, ladder_svg
    from netstack.pictures.report import build_report
    from netstack.pictures.states import count_transitions, state_diagram_svg
    from netstack.statelog import parse_log, parse_state_log
    tb = outcome.testbed
    with open(os.path.join(d, "capture.pcap"), "wb") as f:
        f.write(tb.pcap_bytes())
    lines = [json.dumps(r) for r in tb.transitions]
    log = sorted(tb.transitions + tb.recovery_events, key=lambda r: r["time"])    # (a stable sort)
    with open(os.path.join(d, "states.jsonl"), "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in log))
    records = parse_state_log(lines, "states.jsonl")
    events = parse_log((json.dumps(r) for r in tb.recovery_events), "states.jsonl")[1]
    with open(os.path.join(d, "ladder.txt"), "w", encoding="utf-8") as f:
        f.write(capture_ladder_text(cap) + "\n")
    for conv in cap.conversations:                # ladder.svg, seq.png; ladder-2.svg, seq-2.png, ...
        suffix = f"-{conv.index + 1}" if conv.index else ""
        with open(os.path.join(d, f"ladder{suffix}.svg"), "w", encoding="utf-8") as f:
            f.write(ladder_svg(conv))
        draw_stream_graphs(conv, os.path.join(d, f"seq{suffix}.png"))
    for host in ("A", "B"):
        mine = [r for r, raw in zip(records, tb.transitions) if raw["host"] == host]
        with open(os.path.join(d, f"states-{host}.svg"), "w", encoding="utf-8") as f:
            f.write(state_diagram_svg(count_transitions(mine), title=f"{outcome.title}: the states of {host}"))
    with open(os.path.join(d, "report.html"), "w", encoding="utf-8") as f:
        f.write(build_report(cap, state_records=records, recovery_records=events, title=f"scenario {outcome.name}: {outcome.title}"))
