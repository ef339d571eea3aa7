"""tcpdump hex dumps: read them, write them, turn them into pcap files.

The accepted text is what ``tcpdump -x`` / ``-X`` print and what articles such
as the seed article quote::

    06/09/2005 06:10:46.595221 192.168.1.100.40565 > 192.168.1.200.25: P ...
    0x0000   4500 0056 85f5 4000 3406 5235 c0a8 0164        E..V..@.4.R5B...
    0x0010:  c0a8 01c8 9e75 0019 0981 dc65 2279 a5ec  .....u.....e"y..

Rules (the reader is strict about hex lines, tolerant about everything else):

* A *hex line* starts (after optional whitespace) with ``0x`` + hex digits,
  optionally a ``:``, then whitespace.  The hex bytes come next, in groups of
  2 or 4 digits separated by single spaces; a gap of two or more spaces ends
  them and starts the optional ASCII column, which is ignored except for
  checks and for redacted bytes (below).
* Offset ``0x0000`` starts a packet; every other offset must continue the
  current packet exactly.  Anything else in a hex line (a non-hex group, an odd
  group, an offset that does not follow) is an error naming the line.
* Any other line ends the current packet.  The line immediately before a
  ``0x0000`` line is that packet's *header line*; a leading timestamp in it is
  used (``HH:MM:SS.frac``, ``YYYY-MM-DD HH:MM:SS.frac``, ``MM/DD/YYYY
  HH:MM:SS.frac`` as in the seed article, or epoch ``1118297446.595221``).
  Dates are taken as UTC.  Prose between packets is skipped.
* ``xx`` in place of a byte marks a byte redacted by the dump's author (the
  seed article hides an e-mail address this way).  Its value is taken from
  the ASCII column when that shows a printable character there, else 0; the
  offsets are kept in :attr:`HexPacket.redacted` so checksums over them are
  reported as unverifiable rather than wrong.
* When the ASCII column has one character per byte and disagrees with the hex
  (the hex was edited after capture, e.g. addresses anonymised), the
  disagreements are kept in :attr:`HexPacket.ascii_mismatches`.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

__all__ = ["HexDumpError", "HexPacket", "parse_hexdump", "format_hex", "hexdump_to_pcap", "packets_to_pcap",
           "looks_like_hexdump", "guess_linktype", "parse_timestamp"]

_HEX_LINE = re.compile(r"^\s*0x([0-9a-fA-F]+):?(?=\s|$)(.*)$")
_GROUP = re.compile(r"(?:[0-9a-fA-F]{2}|[xX]{2})+")
_GAP = re.compile(r"\s{2,}|\t")

_TS_PATTERNS = [
    # tcpdump -tttt:   2005-06-09 06:10:46.595221
    (re.compile(r"^\s*(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\b"), "ymd"),
    # old tcpdump -tttt (the seed article):   06/09/2005 06:10:46.595221
    (re.compile(r"^\s*(\d\d)/(\d\d)/(\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\b"), "mdy"),
    # tcpdump -tt:   1118297446.595221
    (re.compile(r"^\s*(\d{9,11})\.(\d{1,9})\b"), "epoch"),
    # tcpdump default:   06:10:46.595221   (time of day only; date unknown)
    (re.compile(r"^\s*(\d\d):(\d\d):(\d\d)\.(\d{1,9})\b"), "tod"),
]


class HexDumpError(ValueError):
    """A malformed hex dump; ``str()`` is ``"line N: ..."``."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(slots=True)
class HexPacket:
    number: int                     # 1-based packet number in the dump
    line: int                       # line number of the 0x0000 line
    data: bytes
    header: str | None = None       # the header line, if any
    ts_sec: int | None = None       # timestamp from the header line (UTC), if any
    ts_nsec: int = 0
    ts_digits: int = 6              # digits of fraction the header showed
    date_known: bool = True         # False when the header gave only a time of day
    redacted: frozenset = frozenset()                        # offsets of bytes written as "xx"
    ascii_mismatches: list = field(default_factory=list)     # (offset, shown char, actual byte)


def _frac_to_ns(frac: str | None) -> tuple[int, int]:
    if not frac:
        return 0, 6
    return int(frac.ljust(9, "0")[:9]), len(frac)


def parse_timestamp(header: str) -> tuple[int, int, int, bool] | None:
    """(seconds since the epoch UTC, nanoseconds, fraction digits, date_known) from
    the start of a tcpdump header line, or None."""
    for rx, kind in _TS_PATTERNS:
        m = rx.match(header)
        if not m:
            continue
        g = m.groups()
        try:
            if kind == "ymd":
                y, mo, d, hh, mi, ss, frac = g
            elif kind == "mdy":
                mo, d, y, hh, mi, ss, frac = g
            elif kind == "epoch":
                ns, digits = _frac_to_ns(g[1])
                return int(g[0]), ns, digits, True
            else:
                hh, mi, ss, frac = g
                ns, digits = _frac_to_ns(frac)
                return int(hh) * 3600 + int(mi) * 60 + int(ss), ns, digits, False
            sec = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss), 0, 0, 0))
        except (ValueError, OverflowError):
            return None
        if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31 and int(hh) < 24 and int(mi) < 60 and int(ss) < 61):
            return None
        ns, digits = _frac_to_ns(frac)
        return sec, ns, digits, True
    return None


def _printable(b: int) -> str:
    return chr(b) if 0x21 <= b <= 0x7E else "."


def looks_like_hexdump(text: str) -> bool:
    """True when *text* contains at least one ``0x0000`` hex line."""
    return any((m := _HEX_LINE.match(line)) and int(m.group(1), 16) == 0 for line in text.splitlines())


def parse_hexdump(text: str | Iterable[str]) -> Iterator[HexPacket]:
    """Yield the packets of a tcpdump hex dump; raise :class:`HexDumpError` at the
    first malformed hex line (after yielding the packets before it)."""
    lines = text.splitlines() if isinstance(text, str) else text
    cur: bytearray | None = None
    pkt: HexPacket | None = None
    redacted: list[int] = []
    prev_text: tuple[int, str] | None = None       # (line number, text) of the last non-hex line
    number = 0
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        m = _HEX_LINE.match(line)
        if not m:
            if cur is not None:
                pkt.data = bytes(cur)
                pkt.redacted = frozenset(redacted)
                yield pkt
                cur = pkt = None
            prev_text = (lineno, line) if line.strip() else None
            continue
        offset = int(m.group(1), 16)
        rest = m.group(2).strip()
        gap = _GAP.search(rest)
        hexpart, ascii_col = (rest[: gap.start()], rest[gap.end():]) if gap else (rest, "")
        groups = hexpart.split(" ") if hexpart else []
        if not groups:
            raise HexDumpError(lineno, f"offset 0x{offset:04x} is followed by no hex bytes")
        for g in groups:
            if not _GROUP.fullmatch(g):
                raise HexDumpError(lineno, f"{g!r} is not a group of hex bytes")
        if offset == 0:
            if cur is not None:
                pkt.data = bytes(cur)
                pkt.redacted = frozenset(redacted)
                yield pkt
            number += 1
            cur = bytearray()
            redacted = []
            pkt = HexPacket(number=number, line=lineno, data=b"")
            if prev_text is not None and prev_text[0] == lineno - 1:
                pkt.header = prev_text[1].strip()
                ts = parse_timestamp(pkt.header)
                if ts:
                    pkt.ts_sec, pkt.ts_nsec, pkt.ts_digits, pkt.date_known = ts
        elif cur is None:
            raise HexDumpError(lineno, f"hex line at offset 0x{offset:04x} without a 0x0000 line starting the packet")
        elif offset != len(cur):
            raise HexDumpError(lineno, f"offset 0x{offset:04x} does not follow the previous line "
                                       f"(expected 0x{len(cur):04x})")
        prev_text = None
        hexdigits = "".join(groups)
        nbytes = len(hexdigits) // 2
        check_ascii = len(ascii_col) == nbytes
        for i in range(nbytes):
            pair = hexdigits[2 * i: 2 * i + 2]
            pos = len(cur)
            if pair in ("xx", "XX", "xX", "Xx"):
                shown = ascii_col[i] if check_ascii else "."
                cur.append(ord(shown) if shown != "." and 0x21 <= ord(shown) <= 0x7E else 0)
                redacted.append(pos)
                continue
            b = int(pair, 16)
            cur.append(b)
            if check_ascii:
                shown = ascii_col[i]
                if shown != _printable(b) and not (b == 0x20 and shown == " "):
                    pkt.ascii_mismatches.append((pos, shown, b))
    if cur is not None:
        pkt.data = bytes(cur)
        pkt.redacted = frozenset(redacted)
        yield pkt


def format_hex(data, *, indent: str = "\t", ascii: bool = True) -> str:
    """``tcpdump -X`` style lines: ``0x0000:  4500 0056 ...  E..V..``.

    :func:`parse_hexdump` reads this output back (the round trip is tested)."""
    data = bytes(data)
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off: off + 16]
        groups = " ".join(chunk[i: i + 2].hex() for i in range(0, len(chunk), 2))
        line = f"{indent}0x{off:04x}:  {groups}"
        if ascii:
            line = f"{line:<{len(indent) + 9 + 39}}  {''.join(_printable(b) for b in chunk)}"
        out.append(line)
    return "\n".join(out)


def guess_linktype(data: bytes) -> int:
    """Link type of a hex-dumped packet: raw IPv4/IPv6 when the first nibble says
    so, Ethernet when bytes 12-13 carry a known EtherType, else raw."""
    from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW

    if data and data[0] >> 4 in (4, 6):
        return LINKTYPE_RAW
    if len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00"):
        return LINKTYPE_ETHERNET
    return LINKTYPE_RAW


def packets_to_pcap(packets: Iterable, dest) -> int:
    """Write packets to a pcap file (*dest*: path or binary file); returns the count.

    *packets*: :class:`HexPacket` or :class:`netstack.capture.Frame` objects
    (``data``, ``ts_sec``, ``ts_nsec``, ``ts_digits``; a ``linktype`` when
    known, else guessed).  The file's link type is that of every packet;
    mixing link types raises ValueError.  Packets without a timestamp are
    stamped 1 µs apart from the epoch.
    """
    from .pcap import LINKTYPE_RAW, PcapWriter

    packets = list(packets)
    kinds = {getattr(p, "linktype", None) or guess_linktype(p.data) for p in packets}
    if len(kinds) > 1:
        raise ValueError(f"packets of several link types ({', '.join(map(str, sorted(kinds)))}) "
                         "cannot share one pcap file")
    linktype = kinds.pop() if kinds else LINKTYPE_RAW
    nanosecond = any(p.ts_digits > 6 for p in packets)
    with PcapWriter(dest, linktype=linktype, nanosecond=nanosecond) as w:
        for i, p in enumerate(packets):
            ts_ns = p.ts_sec * 1_000_000_000 + p.ts_nsec if p.ts_sec is not None else i * 1000
            w.write_ns(p.data, ts_ns)
    return len(packets)


def hexdump_to_pcap(text: str, dest) -> int:
    """Convert a tcpdump hex dump (text) to a pcap file; returns the packet count.

    Raw-IP link type, or Ethernet when every packet is an Ethernet frame.
    Redacted bytes are written with the values shown in the ASCII column."""
    return packets_to_pcap(parse_hexdump(text), dest)
