"""``netstack draw ladder|seq|states``: teaching pictures from a capture or a state log."""
from __future__ import annotations

import argparse
import os
import sys

from netstack.cli import UsageError

_EPILOG = """\
ladder: one arrow per TCP segment between the two ends of each connection, labelled with
its flags, relative seq/ack, window, length, options and (SMTP) the command or reply;
retransmissions, out-of-order segments, duplicate ACKs, zero windows and RSTs are marked,
the handshake and the close bracketed. -o FILE.svg, FILE.html or FILE.png; without -o the
ladder is printed as text (as `netstack trace --ladder`).
seq: the time-sequence graph of each direction that carries data (data segments as bars,
retransmissions in red, the ACK and receive-window lines, SACKed ranges), the throughput
and the round-trip-time graphs; -o FILE.png or FILE.svg. With --state-log FILE (from
`netstack serve --state-log`, or a scenario's), each congestion and recovery event of the
sending end is a dashed, labelled line on its time-sequence graph.
states: the RFC 9293 state diagram with the transitions of a state log (`netstack serve
--state-log`) highlighted and counted; -o FILE.svg or FILE.html.

With several connections and no --conn, the pictures go to FILE-1.svg, FILE-2.svg, ...
exit status: 2 with one line on stderr for an unreadable file, a capture without TCP, a
bad --conn or an unsupported output type.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("draw", help="draw a ladder diagram, sequence graphs or the TCP state diagram",
                       description="Teaching pictures from a capture (pcap or tcpdump hex dump) or a state log.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, helptext in (("ladder", "message-sequence diagram of each TCP connection"),
                           ("seq", "time-sequence, throughput and RTT graphs (matplotlib)")):
        k = kinds.add_parser(kind, help=helptext, description=helptext, epilog=_EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        k.add_argument("capture", metavar="CAPTURE", help="pcap file or tcpdump hex dump")
        k.add_argument("-o", "--output", metavar="FILE", required=(kind == "seq"),
                       help="output file; its suffix picks the format")
        k.add_argument("--conn", type=int, metavar="N", help="only connection N (1-based, in order of appearance)")
        k.add_argument("--max-packets", type=int, metavar="N", default=100_000,
                       help="read at most N packets (default 100000); the picture says when it was cut")
        if kind == "seq":
            k.add_argument("--state-log", metavar="FILE",
                           help="a state log of the same run: mark its congestion and recovery events")
        k.set_defaults(func=run)
    k = kinds.add_parser("states", help="the RFC 9293 state diagram with the transitions of a state log",
                         description="the RFC 9293 state diagram with the transitions of a state log",
                         epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("statelog", metavar="FILE", help="a state log (JSON lines, from netstack serve --state-log)")
    k.add_argument("-o", "--output", metavar="FILE", required=True, help="FILE.svg or FILE.html")
    k.add_argument("--conn", metavar="LOCAL,REMOTE",
                   help="only the connection with these ends (e.g. 198.18.0.2:25,198.18.0.1:40000)")
    k.set_defaults(func=run)


_FORMATS = {"ladder": (".svg", ".html", ".png"), "seq": (".png", ".svg"), "states": (".svg", ".html")}


def _suffix(path: str, kind: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _FORMATS[kind]:
        raise UsageError(f"{path}: unsupported output type {ext or '(none)'} for {kind} "
                         f"(use {', '.join(_FORMATS[kind])})")
    return ext


def _outputs(path: str, n: int) -> list[str]:
    if n == 1:
        return [path]
    stem, ext = os.path.splitext(path)
    return [f"{stem}-{i}{ext}" for i in range(1, n + 1)]


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def load_capture(path: str, max_packets: int | None, *, explain: bool = False, keep=None):
    """The analysed capture, with CLI errors (one line, exit status 2); ``explain``: keep each
    packet's trace -V reading (the report needs it, the pictures do not); ``keep``: a frame
    predicate (trace's filter expression)."""
    from netstack.capture import CaptureError
    from netstack.pictures.conversation import load
    if max_packets is not None and max_packets < 1:
        raise UsageError("--max-packets must be at least 1")
    try:
        return load(path, max_packets=max_packets, explain=explain, keep=keep)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None


def cut_note(cap) -> str | None:
    return f"cut: only the first {cap.max_packets} packets were read (--max-packets)" if cap.cut else None


def print_ladder(path: str, max_packets: int | None = None, conn: int | None = None, *, keep=None) -> int:
    """Print the text ladder of ``path`` (``netstack trace --ladder``, ``netstack draw ladder`` without -o);
    ``keep``: only the frames it accepts."""
    from netstack.pictures.ladder import capture_ladder_text
    cap = load_capture(path, max_packets, keep=keep)
    try:
        print(capture_ladder_text(cap, conn))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


def run(args) -> int:
    if args.kind == "states":
        return _run_states(args)
    if args.output:
        ext = _suffix(args.output, args.kind)
    cap = load_capture(args.capture, args.max_packets)
    try:
        convs = [cap.conversation(args.conn)] if args.conn is not None else cap.conversations
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    note = cut_note(cap)
    if args.kind == "ladder":
        from netstack.pictures.ladder import capture_ladder_text, ladder_png, ladder_svg
        if not args.output:
            print(capture_ladder_text(cap, args.conn))
            return 0
        for conv, path in zip(convs, _outputs(args.output, len(convs))):
            if ext == ".png":
                ladder_png(conv, path, cut_note=note)
            else:
                svg = ladder_svg(conv, cut_note=note)
                _write(path, svg if ext == ".svg" else _html(conv.name, svg))
            print(f"wrote {path}", file=sys.stderr)
        return 0
    from netstack.pictures.conversation import recovery_marks
    from netstack.pictures.graphs import draw_stream_graphs
    events = _recovery_records(args.state_log) if args.state_log else None
    for conv, path in zip(convs, _outputs(args.output, len(convs))):
        try:
            draw_stream_graphs(conv, path, cut_note=note, events=recovery_marks(conv, events))
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from None
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _recovery_records(path: str):
    """The congestion and recovery events of a state log, with its one-line error."""
    from netstack.statelog import StateLogError, read_log
    try:
        return read_log(path)[1]
    except StateLogError as exc:
        raise UsageError(str(exc)) from None


def _html(title: str, svg: str) -> str:
    from html import escape
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
            f"<body>\n{svg}\n</body></html>\n")


def _run_states(args) -> int:
    from netstack.pictures.states import count_transitions, state_diagram_svg
    from netstack.statelog import StateLogError, read_state_log
    ext = _suffix(args.output, "states")
    try:
        recs = read_state_log(args.statelog)
    except StateLogError as exc:
        raise UsageError(str(exc)) from None
    if args.conn:
        try:
            local, remote = args.conn.split(",")
        except ValueError:
            raise UsageError(f"--conn {args.conn}: expected LOCAL,REMOTE (e.g. 198.18.0.2:25,198.18.0.1:40000)") from None
        recs = [r for r in recs if r.local == local and r.remote == remote]
        if not recs:
            raise UsageError(f"{args.statelog}: no transitions of {args.conn}")
    if not recs:
        raise UsageError(f"{args.statelog}: the state log holds no transitions")
    conns = len({r.conn for r in recs})
    svg = state_diagram_svg(count_transitions(recs),
                            title=f"TCP state diagram (RFC 9293 §3.3.2): {conns} connection{'s' * (conns != 1)}")
    _write(args.output, svg if ext == ".svg" else _html("TCP state diagram", svg))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
