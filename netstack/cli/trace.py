"""``netstack trace``: print a capture one line per packet, tcpdump style; ``-x`` explains each packet."""
from __future__ import annotations

import argparse
import sys

from netstack.cli import UsageError

_EPILOG = """\
input: a libpcap file (link types raw IPv4 101/228, Ethernet 1, Linux cooked 113/276,
loopback 0/108; either byte order; micro- or nanosecond timestamps) or a tcpdump hex dump
(`0x0000  4500 0056 ...` lines, optionally preceded by a header line with a timestamp),
detected automatically; `-` reads standard input. In a hex dump, `xx` marks a byte the
author redacted: its value is read from the ASCII column and checksums covering it are
reported as unverified. --write-pcap turns a hex dump into a pcap file (e.g. for tshark).

output: one line per packet in tcpdump's wording, plus the IP header checksum (in the IP
parenthetical) and the TCP/UDP/ICMP checksum: `cksum 0x0449 (correct)` or
`cksum 0x0449 (incorrect -> 0xee43)`, i.e. the value found and the value expected.
Times are UTC. Sequence numbers are relative per connection, as tcpdump prints them;
-S prints absolute numbers (as tcpdump -S).

exit status: 0 when the file was read to the end (a malformed packet inside it is
reported on its own line, `[malformed: layer: reason: detail]`, and does not change
the status); 2 for a file that cannot be read (one line on stderr naming the file and
the line or packet number; packets before it are still printed).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "trace", help="print a pcap file or tcpdump hex dump tcpdump-style; -x explains each packet",
        description="Dissect packets from a pcap file or a tcpdump hex dump, one tcpdump-style line each, "
                    "with IP and TCP/UDP/ICMP checksum verdicts.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="capture file (pcap or tcpdump hex dump); - for stdin")
    p.add_argument("-x", "--explain", action="store_true",
                   help="after each line: hex + ASCII dump and a field-by-field reading of the headers")
    p.add_argument("--hex", action="store_true", help="after each line: the hex + ASCII dump only")
    p.add_argument("-A", "--ascii", action="store_true",
                   help="after each line: the TCP/UDP payload as text, one tab-indented line per line "
                        "(unprintable bytes as '.'), like tcpdump -A but payload only: reads an SMTP dialogue")
    p.add_argument("-n", "--count", type=int, metavar="N", help="stop after N packets")
    p.add_argument("-S", "--absolute", action="store_true",
                   help="absolute TCP sequence numbers (default: relative, like tcpdump)")
    p.add_argument("--time", choices=["clock", "date", "epoch", "none"], default="clock",
                   help="timestamp style: HH:MM:SS.ffffff (default), with the date, seconds since the epoch, or none")
    p.add_argument("--ladder", action="store_true",
                   help="instead of one line per packet: a text ladder diagram of each TCP connection "
                        "(the same as `netstack draw ladder FILE`)")
    p.add_argument("--write-pcap", metavar="OUT",
                   help="do not print: write the packets of FILE (e.g. a hex dump) to the pcap file OUT")
    p.set_defaults(func=run)


def run(args) -> int:
    from netstack.capture import CaptureError, network_layer, read_frames
    from netstack.capture.dissect import dissect
    from netstack.capture.explain import explain_packet
    from netstack.capture.format import payload_lines
    from netstack.capture.format import SeqTracker, format_packet, format_time
    from netstack.capture.hexdump import format_hex, packets_to_pcap

    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.ladder:
        from netstack.cli.draw import print_ladder
        return print_ladder(args.file, args.count)
    frames = read_frames(args.file)
    if args.count is not None:
        frames = _take(frames, args.count)
    try:
        if args.write_pcap:
            try:
                n = packets_to_pcap(frames, args.write_pcap)
            except ValueError as exc:
                if isinstance(exc, CaptureError):
                    raise
                raise UsageError(f"{args.file}: {exc}") from None
            except OSError as exc:
                raise UsageError(f"{args.write_pcap}: {exc.strerror or exc}") from None
            print(f"wrote {n} packet{'s' * (n != 1)} to {args.write_pcap}", file=sys.stderr)
            return 0
        tracker = SeqTracker(absolute=args.absolute)
        out = sys.stdout
        for frame in frames:
            ts = format_time(frame.ts_sec, frame.ts_nsec, frame.ts_digits,
                             args.time if frame.date_known or args.time == "none" else "clock")
            ip_data, ip_off, note = network_layer(frame)
            if ip_data is None:
                d = None
                line = f"{ts} {note}" if ts else note
            else:
                d = dissect(ip_data, redacted=frozenset(o - ip_off for o in frame.redacted),
                            cut=frame.orig_len is not None)
                line = format_packet(d, tracker, ts)
            out.write(line + "\n")
            if args.explain:
                out.write(explain_packet(frame, ip_data, ip_off, d, note) + "\n\n")
            elif args.hex:
                out.write(format_hex(frame.data) + "\n")
            if args.ascii and d is not None:
                text = payload_lines(d)
                if text:
                    out.write(text + "\n")
    except CaptureError as exc:
        sys.stdout.flush()
        raise UsageError(str(exc)) from None
    return 0


def _take(it, n):
    for i, x in enumerate(it):
        yield x
        if i + 1 >= n:
            return
