"""The one-line, tcpdump-style packet printer.

A line reads like ``tcpdump -n`` (tcpdump 4.x wording) with two additions
that tcpdump shows only with ``-v``: an IP parenthetical carrying TTL, id,
fragment flags/offset and the IP header checksum verdict, and the transport
checksum verdict::

    06:10:46.595221 IP (ttl 52, id 34293, flags [DF], cksum 0x5235 (incorrect -> 0x3c30)) \
192.168.1.100.40565 > 192.168.1.200.25: Flags [P.], cksum 0x0449 (incorrect -> 0xee43), \
seq 159505509:159505543, ack 578397676, win 33304, options [nop,nop,TS val 310237481 ecr 108030715], length 34

Choices (documented in ``netstack trace --help``):

* Times are UTC ``HH:MM:SS.ffffff`` (tcpdump prints local time; UTC keeps
  traces reproducible); nanosecond captures print 9 digits.  No time is
  printed for a hex-dumped packet without a timestamped header line.
* Sequence numbers are *relative* by default, exactly as tcpdump computes
  them: per connection, the first segment with ACK set (and every SYN-ACK)
  records both initial numbers and prints absolute values; later segments
  print offsets from them.  A bare SYN prints absolute.  ``absolute=True``
  (``-S``) prints raw numbers throughout, like ``tcpdump -S``.
* ``seq a:b`` appears when the segment carries data (``b = a + length``); a
  bare ``seq a`` for SYN/FIN/RST without data; ``ack`` only with ACK set.
* ICMP, UDP, other protocols and fragments follow tcpdump's wording
  (``ICMP echo request, id 1, seq 1, length 64``; ``UDP, length 12``;
  ``ip-proto-47 100``), with the checksum verdict appended.
"""
from __future__ import annotations

import time

from netstack.wire.icmp import (DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, TIME_EXCEEDED, quoted_datagram)
from netstack.wire.ipv4 import int2ip
from netstack.wire.tcp import ACK, SYN, TCPSegment, flags_str
from netstack.wire.errors import MalformedPacket

from .dissect import Dissection, UDPDatagram

__all__ = ["SeqTracker", "format_time", "format_delta", "format_options", "format_packet", "ip_summary"]


def format_time(ts_sec: int | None, ts_nsec: int = 0, digits: int = 6, style: str = "clock") -> str:
    """``clock``: ``HH:MM:SS.ffffff`` (UTC); ``date``: ``YYYY-MM-DD HH:MM:SS.ffffff``;
    ``epoch``: ``1118297446.595221``; ``none``: empty."""
    if ts_sec is None or style == "none":
        return ""
    frac = f"{ts_nsec:09d}"[:digits] if digits < 9 else f"{ts_nsec:09d}"
    if style == "epoch":
        return f"{ts_sec}.{frac}"
    tm = time.gmtime(ts_sec)
    clock = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{frac}"
    if style == "date":
        return f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} {clock}"
    return clock


def format_delta(delta_ns: int, digits: int = 6) -> str:
    """A time difference as ``tcpdump -ttt``/``-ttttt`` print it: sign (space or ``-``), then
    ``HH:MM:SS.ffffff`` (nine fraction digits when *digits* is 9)."""
    sign = "-" if delta_ns < 0 else " "
    sec, ns = divmod(abs(delta_ns), 1_000_000_000)
    frac = f"{ns:09d}"[:digits] if digits < 9 else f"{ns:09d}"
    return f"{sign}{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.{frac}"


class SeqTracker:
    """tcpdump's relative sequence numbers (print-tcp.c): one entry per
    connection for both directions, keyed on the address/port 4-tuple."""

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute
        self._conns: dict[tuple, tuple[int, int]] = {}

    def relative(self, src: int, sport: int, dst: int, dport: int, seq: int, ack: int, flags: int) -> tuple[int, int, int, int]:
        """(seq, ack, seq_base, ack_base) to print; bases are 0 when absolute."""
        if self.absolute or not flags & ACK:
            return seq, ack, 0, 0
        a, b = (src, sport), (dst, dport)
        rev = a > b
        key = (b, a) if rev else (a, b)
        entry = self._conns.get(key)
        if entry is None or flags & SYN:
            # record the initial numbers: (ISN of key[0] side, ISN of key[1] side)
            isn_self, isn_peer = seq, (ack - 1) & 0xFFFFFFFF
            self._conns[key] = (isn_peer, isn_self) if rev else (isn_self, isn_peer)
            return seq, ack, 0, 0
        isn_first, isn_second = entry
        sbase, abase = (isn_second, isn_first) if rev else (isn_first, isn_second)
        return (seq - sbase) & 0xFFFFFFFF, (ack - abase) & 0xFFFFFFFF, sbase, abase


def format_options(items, ack_base: int = 0) -> str:
    """TCP options the way tcpdump prints them inside ``options [...]``."""
    out = []
    for it in items:
        kind = it[0]
        if kind in ("nop", "eol"):
            out.append(kind)
        elif kind == "mss":
            out.append(f"mss {it[1]}")
        elif kind == "wscale":
            out.append(f"wscale {it[1]}")
        elif kind == "sackok":
            out.append("sackOK")
        elif kind == "sack":
            blocks = "".join(f"{{{(l - ack_base) & 0xFFFFFFFF}:{(r - ack_base) & 0xFFFFFFFF}}}" for l, r in it[1])
            out.append(f"sack {len(it[1])} {blocks}")
        elif kind == "ts":
            out.append(f"TS val {it[1]} ecr {it[2]}")
        else:
            out.append(f"unknown-{it[1]} {bytes(it[2]).hex()}".rstrip())
    return ",".join(out)


_PROTO_NAMES = {1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP",
                51: "AH", 89: "OSPF", 132: "SCTP"}


def ip_summary(d: Dissection, verbose: bool = False) -> str:
    """The IP parenthetical: ``(tos 0x10, ttl 64, id 1, offset 1480, flags [+], cksum 0x... (correct))``.

    *verbose*: every field as ``tcpdump -v`` prints them (``tos 0x0``, ``offset 0``,
    ``flags [none]``, ``proto TCP (6)``, ``length 60``), then the checksum verdict."""
    ip = d.ip
    parts = []
    if ip.tos or verbose:
        parts.append(f"tos 0x{ip.tos:x}")
    parts.append(f"ttl {ip.ttl}")
    parts.append(f"id {ip.ident}")
    if ip.frag_offset or verbose:
        parts.append(f"offset {ip.frag_offset}")
    flags = ("DF" if ip.df else "") + ("+" if ip.mf else "")
    if ip.flags & 4:
        flags = "rsvd" + flags
    if flags or verbose:
        parts.append(f"flags [{flags or 'none'}]")
    if verbose:
        parts.append(f"proto {_PROTO_NAMES.get(ip.protocol, 'unknown')} ({ip.protocol})")
        parts.append(f"length {ip.total_length}")
    if ip.ihl > 5:
        parts.append(f"options ({(ip.ihl - 5) * 4} bytes)")
    parts.append(d.ip_cksum.text())
    return f"({', '.join(parts)})"


_UNREACH = {0: "net {dst} unreachable", 1: "host {dst} unreachable", 2: "{dst} protocol {proto} unreachable",
            3: "{dst} {pname} port {port} unreachable", 4: "{dst} unreachable - need to frag (mtu {mtu})",
            5: "{dst} unreachable - source route failed", 6: "net {dst} unreachable - unknown",
            7: "host {dst} unreachable - unknown", 9: "net {dst} unreachable - admin prohibited",
            10: "host {dst} unreachable - admin prohibited",
            13: "host {dst} unreachable - admin prohibited filter"}


def _icmp_text(m) -> str:
    if m.type in (ECHO_REQUEST, ECHO_REPLY):
        return f"ICMP echo {'request' if m.type == ECHO_REQUEST else 'reply'}, id {m.ident}, seq {m.seq}"
    if m.type == DEST_UNREACH:
        try:
            q = quoted_datagram(m)
        except MalformedPacket:
            return f"ICMP unreachable code {m.code} (bad quoted datagram)"
        fields = {"dst": int2ip(q.dst), "proto": q.protocol, "mtu": m.mtu,
                  "pname": {6: "tcp", 17: "udp"}.get(q.protocol, f"proto-{q.protocol}"),
                  "port": int.from_bytes(q.payload[2:4], "big") if len(q.payload) >= 4 else "?"}
        return "ICMP " + _UNREACH.get(m.code, "{dst} unreachable - #" + str(m.code)).format(**fields)
    if m.type == TIME_EXCEEDED:
        return "ICMP " + {0: "time exceeded in-transit", 1: "ip reassembly time exceeded"}.get(
            m.code, f"time exceeded #{m.code}")
    names = {4: "source quench", 5: "redirect", 12: "parameter problem", 13: "time stamp query",
             14: "time stamp reply"}
    return f"ICMP {names.get(m.type, f'type-#{m.type}')}"


def format_packet(d: Dissection, tracker: SeqTracker | None = None, ts: str = "", *,
                  verbose: bool = False) -> str:
    """One tcpdump-style line for a dissected IPv4 packet (no trailing newline).

    *verbose*: ``tcpdump -v``'s layout: the full IP parenthetical (:func:`ip_summary`),
    then the rest on a second line indented by four spaces."""
    prefix = f"{ts} " if ts else ""
    if d.ip is None:
        return f"{prefix}IP [malformed: {d.error}], length {len(d.data)}"
    ip = d.ip
    src, dst = int2ip(ip.src), int2ip(ip.dst)
    head = f"{prefix}IP {ip_summary(d, verbose)}" + ("\n    " if verbose else " ")
    if d.error is not None:
        return f"{head}{src} > {dst}: [malformed: {d.error}], length {len(ip.payload)}"
    l4, v = d.l4, d.l4_cksum
    plen = ip.total_length - ip.header_len
    if d.proto == "tcp":
        tracker = tracker or SeqTracker()
        seq, ack, _sbase, abase = tracker.relative(ip.src, l4.src_port, ip.dst, l4.dst_port, l4.seq, l4.ack, l4.flags)
        length = plen - l4.header_len
        out = [f"{head}{src}.{l4.src_port} > {dst}.{l4.dst_port}: Flags [{flags_str(l4.flags)}], {v.text()}"]
        if length > 0 or l4.flags & 0x07:            # SYN, FIN, RST
            out.append(f"seq {seq}" + (f":{(seq + length) & 0xFFFFFFFF}" if length > 0 else ""))
        if l4.flags & ACK:
            out.append(f"ack {ack}")
        out.append(f"win {l4.window}")
        if l4.flags & 0x20:
            out.append(f"urg {l4.urgent}")
        if l4.data_offset > 5:
            out.append(f"options [{format_options(l4.options.items, abase)}]")
        out.append(f"length {length}")
        return ", ".join(out)
    if d.proto == "udp":
        return f"{head}{src}.{l4.src_port} > {dst}.{l4.dst_port}: UDP, {v.text()}, length {l4.length - 8}"
    if d.proto == "icmp":
        return f"{head}{src} > {dst}: {_icmp_text(l4)}, length {plen}, {v.text()}"
    return f"{head}{src} > {dst}: ip-proto-{ip.protocol} {plen}"


def payload_lines(d: Dissection) -> str:
    """The TCP/UDP payload of a dissected packet as text for ``trace -A``: each line of the
    payload on its own tab-indented line (CR LF and LF end a line), unprintable bytes as ``.``;
    ``""`` when there is no payload."""
    if not isinstance(d.l4, (TCPSegment, UDPDatagram)) or not d.l4.payload:
        return ""
    text = bytes(d.l4.payload).replace(b"\r\n", b"\n")
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return "\n".join("\t" + "".join(chr(c) if 0x20 <= c <= 0x7E or c == 9 else "." for c in line)
                     for line in lines)
