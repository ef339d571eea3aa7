"""``netstack trace``: print a capture one line per packet, with tcpdump's options; ``-V`` explains each packet."""
from __future__ import annotations

import argparse
import os
import sys

from netstack.cli import UsageError

_EPILOG = """\
input: a libpcap file (link types raw IPv4 101/228, Ethernet 1, Linux cooked 113/276,
loopback 0/108; either byte order; micro- or nanosecond timestamps), a pcapng file
(section header, interface description, enhanced/simple packet blocks; interfaces of
different link types may mix) or a tcpdump hex dump (`0x0000  4500 0056 ...` lines,
optionally preceded by a header line with a timestamp), detected automatically; `-`
reads standard input. In a hex dump, `xx` marks a byte the author redacted: its value
is read from the ASCII column and checksums covering it are reported as unverified.
-w (--write-pcap) turns any of them into a pcap file (e.g. for tshark); `-w -` writes
it to standard output.

expression: as tcpdump's, a small part of pcap-filter(7): `tcp`, `udp`, `icmp`, `ip`;
`host A`, `net N/len`, `port P`, `portrange P1-P2`, each optionally after `src`, `dst`,
`src or dst`, `src and dst` and a protocol (`tcp port 25`, `src host 198.18.0.1`);
combined with `and`/`&&`, `or`/`||`, `not`/`!` and parentheses; a bare value repeats
the qualifiers before it (`port 25 or 587`). IPv4 only; no names are resolved.
Examples: netstack trace s.pcap tcp port 25
          netstack trace -r s.pcap -c 10 'host 198.18.0.1 and (port 25 or icmp)'

output: one line per packet in tcpdump's wording, plus the IP header checksum (in the IP
parenthetical) and the TCP/UDP/ICMP checksum: `cksum 0x0449 (correct)` or
`cksum 0x0449 (incorrect -> 0xee43)`, i.e. the value found and the value expected.
Times are UTC, with the file's precision (nine digits for a nanosecond capture, where
tcpdump needs --nano). Sequence numbers are relative per connection, as tcpdump prints them;
-S prints absolute numbers (as tcpdump -S). Names and ports are never resolved, so -n
and -nn are accepted and change nothing. -A prints the TCP/UDP payload only, one
tab-indented line per text line (tcpdump -A also prints the headers as characters).

tcpdump's letters mean what they mean in tcpdump: -x is a hex dump (an older netstack
used it for the field-by-field reading, which is now -V, tshark's detail flag).

exit status: 0 when the file was read to the end (a malformed packet inside it is
reported on its own line, `[malformed: layer: reason: detail]`, and does not change
the status); 2 for bad usage, a bad filter expression or a file that cannot be read
(one line on stderr naming the file and the line or packet number; packets before it
are still printed).
"""

# -t count -> timestamp style (tcpdump: -t none, -tt epoch, -ttt delta, -tttt date, -ttttt since first)
_T_STYLES = {1: "none", 2: "epoch", 3: "delta", 4: "date", 5: "since-first"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "trace", help="print a pcap/pcapng file or tcpdump hex dump tcpdump-style; -V explains each packet",
        usage="netstack trace [options] [FILE | -r FILE] [EXPRESSION ...]",
        description="Dissect packets from a pcap or pcapng file or a tcpdump hex dump, one tcpdump-style line "
                    "each, with IP and TCP/UDP/ICMP checksum verdicts. The options are tcpdump's.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="*", metavar="FILE | EXPRESSION",
                   help="the capture file (pcap, pcapng or hex dump; - for stdin) unless -r names it, then an "
                        "optional filter expression as in tcpdump")
    p.add_argument("-r", dest="read", metavar="FILE", help="read packets from FILE (as tcpdump -r; - for stdin)")
    p.add_argument("-c", "--count", type=int, metavar="N", help="stop after N packets (that pass the filter)")
    p.add_argument("-F", dest="filter_file", metavar="FILE", help="read the filter expression from FILE")
    p.add_argument("-n", dest="numeric", action="count", default=0,
                   help="accepted for tcpdump's habit (-n, -nn): addresses and ports are always numeric")
    p.add_argument("-x", dest="hex", action="count", default=0,
                   help="after each line: the packet in hex, without its link header (-xx: with it)")
    p.add_argument("-X", "--hex", dest="hex_ascii", action="count", default=0,
                   help="after each line: hex and ASCII, without the link header (-XX: with it)")
    p.add_argument("-A", "--ascii", action="store_true",
                   help="after each line: the TCP/UDP payload as text, one tab-indented line per line "
                        "(unprintable bytes as '.'): reads an SMTP dialogue")
    p.add_argument("-e", dest="link", action="store_true",
                   help="print the link-level header (Ethernet addresses and EtherType, Linux cooked, loopback)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="tcpdump -v's layout: every IP header field (tos, offset, proto, length), "
                        "the rest of the packet on an indented second line")
    p.add_argument("-t", dest="t", action="count", default=0,
                   help="-t no time, -tt seconds since the epoch, -ttt delta from the previous packet, "
                        "-tttt date and time, -ttttt delta from the first packet")
    p.add_argument("--time", choices=["clock", "date", "epoch", "none", "delta", "since-first"], default=None,
                   help="the same by name (default clock: HH:MM:SS.ffffff, UTC)")
    p.add_argument("-S", "--absolute", action="store_true",
                   help="absolute TCP sequence numbers (default: relative, like tcpdump)")
    p.add_argument("-V", "--explain", action="store_true",
                   help="after each line: hex + ASCII and a field-by-field reading of the headers (tshark -V)")
    p.add_argument("-w", "--write-pcap", metavar="OUT",
                   help="do not print: write the packets (after -c and the filter) to the pcap file OUT; - for stdout")
    p.add_argument("--ladder", action="store_true",
                   help="instead of one line per packet: a text ladder diagram of each TCP connection "
                        "(as `netstack draw ladder FILE`); takes -r, -c and the filter expression")
    p.set_defaults(func=run, trace_parser=p, intermixed="words")


def _source_and_expression(args) -> tuple[str, str]:
    p = args.trace_parser
    words = list(args.words)
    if args.read is not None:
        source = args.read
    elif words:
        source = words.pop(0)
    else:
        p.error("a capture file is needed: FILE or -r FILE (- for standard input)")
    # The old spelling `-n N` (a count): N lands where the file or the expression starts,
    # where a bare number is never valid.
    if args.numeric and ((words and words[0].isdigit()) or (source.isdigit() and not os.path.exists(source))):
        p.error("-n takes no count here (it is tcpdump's -n, always on); use -c N to stop after N packets")
    expression = " ".join(words)
    if args.filter_file:
        if expression:
            p.error("give the filter expression either with -F FILE or on the command line, not both")
        try:
            with open(args.filter_file, encoding="utf-8") as f:
                expression = " ".join(line.split("#", 1)[0] for line in f)
        except OSError as exc:
            raise UsageError(f"{args.filter_file}: {exc.strerror or exc}") from None
    return source, expression


def run(args) -> int:
    from netstack.capture import CaptureError, arp_packet, link_header, network_layer, read_frames
    from netstack.capture.dissect import dissect
    from netstack.capture.explain import explain_packet
    from netstack.capture.filter import FilterError, compile_filter
    from netstack.capture.format import SeqTracker, format_delta, format_packet, format_time, payload_lines
    from netstack.capture.hexdump import format_hex, packets_to_pcap

    if args.count is not None and args.count < 1:
        args.trace_parser.error("-c must be at least 1")
    if args.t > 5:
        args.trace_parser.error("-t can be given at most five times (-ttttt)")
    source, expression = _source_and_expression(args)
    try:
        match = compile_filter(expression)
    except FilterError as exc:
        raise UsageError(f"filter expression: {exc}") from None
    if args.ladder:
        if args.write_pcap or args.explain or args.hex or args.hex_ascii or args.ascii:
            args.trace_parser.error("--ladder draws whole connections: it takes no -w, -V, -x, -X or -A")
        from netstack.cli.draw import print_ladder
        return print_ladder(source, args.count,
                            keep=(lambda f: match(network_layer(f)[0], arp_packet(f))) if expression else None)
    if args.hex and not args.explain:
        print("netstack trace: note: -x is tcpdump's hex dump; the field-by-field reading is -V (--explain)",
              file=sys.stderr)
    style = _T_STYLES[args.t] if args.t else (args.time or "clock")

    def selected():
        n = 0
        for frame in read_frames(source):
            ip_data, ip_off, note = network_layer(frame)
            if expression and not match(ip_data, None if ip_data is not None else arp_packet(frame)):
                continue
            yield frame, ip_data, ip_off, note
            n += 1
            if args.count is not None and n >= args.count:
                return

    try:
        if args.write_pcap:
            return _write(args, (item[0] for item in selected()), packets_to_pcap, CaptureError, source)
        tracker = SeqTracker(absolute=args.absolute)
        out = sys.stdout
        first = prev = None
        for frame, ip_data, ip_off, note in selected():
            ts = ""
            if frame.ts_sec is not None:
                now = frame.ts_sec * 1_000_000_000 + frame.ts_nsec
                if style in ("delta", "since-first"):
                    first = now if first is None else first
                    ref = prev if style == "delta" else first
                    ts = format_delta(now - (ref if ref is not None else now), frame.ts_digits)
                else:
                    ts = format_time(frame.ts_sec, frame.ts_nsec, frame.ts_digits,
                                     style if frame.date_known or style == "none" else "clock")
                prev = now
            if ip_data is None:
                d = None
                body = note
            else:
                d = dissect(ip_data, redacted=frozenset(o - ip_off for o in frame.redacted),
                            cut=frame.orig_len is not None)
                body = format_packet(d, tracker, verbose=args.verbose > 0)
            if args.link:
                head = link_header(frame)
                if head is not None:
                    body = f"{head}: {body[3:] if body.startswith('IP ') else body}"
            out.write(f"{ts} {body}\n" if ts else body + "\n")
            if args.explain:
                out.write(explain_packet(frame, ip_data, ip_off, d, note) + "\n\n")
            elif args.hex_ascii or args.hex:
                whole = max(args.hex_ascii, args.hex) > 1 or ip_data is None
                out.write(format_hex(frame.data if whole else frame.data[ip_off:], ascii=bool(args.hex_ascii)) + "\n")
            if args.ascii and d is not None:
                text = payload_lines(d)
                if text:
                    out.write(text + "\n")
    except CaptureError as exc:
        sys.stdout.flush()
        raise UsageError(str(exc)) from None
    return 0


def _write(args, frames, packets_to_pcap, CaptureError, source) -> int:
    to_stdout = args.write_pcap == "-"
    dest = sys.stdout.buffer if to_stdout else args.write_pcap
    try:
        n = packets_to_pcap(frames, dest)
    except ValueError as exc:
        if isinstance(exc, CaptureError):
            raise
        raise UsageError(f"{source}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{args.write_pcap}: {exc.strerror or exc}") from None
    if to_stdout:
        sys.stdout.buffer.flush()
    where = "standard output" if to_stdout else args.write_pcap
    print(f"wrote {n} packet{'s' * (n != 1)} to {where}", file=sys.stderr)
    return 0
