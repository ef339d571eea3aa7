"""``netstack trace -V`` (``--explain``): a packet read field by field, the way the seed article reads it.

For each packet: the hex + ASCII dump (``tcpdump -X`` layout), then every
header field with its offset, its bytes and its meaning -- version and IHL
(RFC 791 §3.1), total length, TTL, protocol, addresses; ports, sequence and
acknowledgement numbers, the data offset and how many option bytes it
implies, flags, window, checksum (RFC 9293 §3.1); each TCP option with its
kind and length bytes (RFC 9293 §3.2, RFC 7323, RFC 2018); and the payload as
text when it is printable (an SMTP command, say).  Anything that could not be
read is said plainly, with the MalformedPacket reason.
"""
from __future__ import annotations

from netstack.wire.ipv4 import int2ip

from netstack.wire.tcp import flags_str

from .dissect import Dissection
from .format import _icmp_text
from .hexdump import format_hex

__all__ = ["explain_packet", "payload_text"]

_PROTOS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 89: "OSPF", 132: "SCTP"}
_PORTS = {20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "domain", 80: "http", 110: "pop3",
          123: "ntp", 143: "imap", 443: "https", 465: "smtps", 587: "submission", 993: "imaps", 995: "pop3s"}
_OPTION_NAMES = {0: "End of Option List", 1: "No-Operation (NOP)", 2: "Maximum Segment Size (MSS)",
                 3: "Window Scale", 4: "SACK-Permitted", 5: "SACK", 8: "Timestamps"}
_FLAG_NAMES = ((0x100, "NS"), (0x80, "CWR"), (0x40, "ECE"), (0x20, "URG"), (0x10, "ACK"), (0x08, "PSH"),
               (0x04, "RST"), (0x02, "SYN"), (0x01, "FIN"))


def payload_text(payload) -> str | None:
    """The payload as text lines when every byte is printable ASCII (or CR, LF, TAB), else None."""
    b = bytes(payload)
    if not b or any(not (0x20 <= c <= 0x7E or c in (9, 10, 13)) for c in b):
        return None
    return b.decode("ascii")


def _port(p: int) -> str:
    return f"{p} ({_PORTS[p]})" if p in _PORTS else str(p)


class _Rows:
    def __init__(self, data: bytes, base: int) -> None:
        self.data, self.base, self.lines = data, base, []

    def field(self, off: int, length: int, text: str, *, nibble: str | None = None) -> None:
        """One row: absolute offset, the bytes (or a nibble), the reading."""
        at = self.base + off
        raw = nibble if nibble is not None else self.data[at: at + length].hex(" ")
        self.lines.append(f"    0x{at:04x}  {raw:<14} {text}")

    def text(self, text: str) -> None:
        self.lines.append(f"    {text}")


def _ip_rows(d: Dissection, rows: _Rows) -> None:
    ip = d.ip
    hl = ip.header_len
    rows.lines.append(f"  IPv4 header, bytes 0x0000-0x{hl - 1:04x} ({hl} bytes; RFC 791 §3.1)")
    rows.field(0, 1, f"version {ip.version} (high nibble), IHL {ip.ihl} words = {hl} bytes (low nibble)"
               + ("; no IP options" if ip.ihl == 5 else f"; {hl - 20} bytes of IP options"))
    rows.field(1, 1, f"type of service 0x{ip.tos:02x}: DSCP {ip.dscp}, ECN {ip.ecn}")
    rows.field(2, 2, f"total length {ip.total_length} bytes ({hl} header + {ip.total_length - hl} payload)")
    rows.field(4, 2, f"identification {ip.ident}")
    flags = [n for bit, n in ((4, "reserved"), (2, "DF don't fragment"), (1, "MF more fragments")) if ip.flags & bit]
    rows.field(6, 2, f"flags {', '.join(flags) or 'none'}; fragment offset {ip.frag_offset} bytes")
    rows.field(8, 1, f"TTL {ip.ttl}")
    rows.field(9, 1, f"protocol {ip.protocol} ({_PROTOS.get(ip.protocol, 'unknown')})")
    v = d.ip_cksum
    rows.field(10, 2, f"header checksum 0x{v.found:04x}: " + _verdict_words(v))
    rows.field(12, 4, f"source address {int2ip(ip.src)}")
    rows.field(16, 4, f"destination address {int2ip(ip.dst)}")
    if hl > 20:
        rows.field(20, hl - 20, "IP options (raw)")


def _verdict_words(v) -> str:
    if v.status == "correct":
        return "correct"
    if v.status == "incorrect":
        return f"INCORRECT, expected 0x{v.expected:04x}"
    if v.status == "none":
        return "none (sender did not compute one; RFC 768 allows it)"
    return f"not verified ({v.why})"


def _tcp_rows(d: Dissection, rows: _Rows) -> None:
    s = d.l4
    hl = s.header_len
    b = rows.base
    rows.lines.append(f"  TCP header, bytes 0x{b:04x}-0x{b + hl - 1:04x} ({hl} bytes; RFC 9293 §3.1)")
    rows.field(0, 2, f"source port {_port(s.src_port)}")
    rows.field(2, 2, f"destination port {_port(s.dst_port)}")
    rows.field(4, 4, f"sequence number {s.seq}")
    rows.field(8, 4, f"acknowledgement number {s.ack}" + ("" if s.flags & 0x10 else " (ACK not set: ignored)"))
    opt_len = hl - 20
    rows.field(12, 1, f"data offset {s.data_offset} words = {hl} bytes: 20 fixed + {opt_len} bytes of options",
               nibble=f"{s.data_offset:x}")
    names = [n for bit, n in _FLAG_NAMES if s.flags & bit]
    rows.field(12, 2, f"flags 0x{s.flags:03x} (low 9 bits): {' '.join(names) or 'none'}, "
               f"tcpdump [{flags_str(s.flags)}]")
    rows.field(14, 2, f"window {s.window}")
    rows.field(16, 2, f"checksum 0x{s.checksum:04x}: " + _verdict_words(d.l4_cksum))
    rows.field(18, 2, f"urgent pointer {s.urgent}" + ("" if s.flags & 0x20 else " (URG not set: ignored)"))
    if opt_len:
        rows.text(f"options: {opt_len} bytes at 0x{b + 20:04x}")
        for item, (off, length) in zip(s.options.items, s.options.offsets):
            _option_rows(rows, 20 + off, item, length)


def _option_rows(rows: _Rows, off: int, item, length: int) -> None:
    """An option read byte by byte: kind, length, then the value fields (RFC 9293 §3.2)."""
    kind = item[0]
    if kind in ("nop", "eol"):
        rows.field(off, 1, "kind 1: No-Operation (NOP), a single byte with no length byte; pads the next option"
                   if kind == "nop" else "kind 0: End of Option List, a single byte; the rest is padding")
        return
    code = rows.data[rows.base + off]
    rows.field(off, 1, f"kind {code}: {_OPTION_NAMES.get(code, 'unknown option')}")
    rows.field(off + 1, 1, f"length {length} bytes (kind + length + {length - 2} bytes of value)")
    if kind == "mss":
        rows.field(off + 2, 2, f"MSS {item[1]} bytes")
    elif kind == "wscale":
        rows.field(off + 2, 1, f"shift count {item[1]}: windows are multiplied by {1 << min(item[1], 30)}")
    elif kind == "sack":
        for i, (left, right) in enumerate(item[1]):
            rows.field(off + 2 + 8 * i, 4, f"block {i + 1} left edge {left}")
            rows.field(off + 6 + 8 * i, 4, f"block {i + 1} right edge {right}")
    elif kind == "ts":
        rows.field(off + 2, 4, f"TSval {item[1]} (the sender's timestamp clock)")
        rows.field(off + 6, 4, f"TSecr {item[2]} (the peer's TSval being echoed)")
    elif kind == "unknown" and length > 2:
        rows.field(off + 2, length - 2, "value (not interpreted)")


def _l4_rows(d: Dissection, rows: _Rows) -> None:
    if d.proto == "tcp":
        _tcp_rows(d, rows)
        payload = d.l4.payload
    elif d.proto == "udp":
        u = d.l4
        rows.lines.append(f"  UDP header, bytes 0x{rows.base:04x}-0x{rows.base + 7:04x} (8 bytes; RFC 768)")
        rows.field(0, 2, f"source port {_port(u.src_port)}")
        rows.field(2, 2, f"destination port {_port(u.dst_port)}")
        rows.field(4, 2, f"length {u.length} (8 header + {u.length - 8} data)")
        rows.field(6, 2, f"checksum 0x{u.checksum:04x}: " + _verdict_words(d.l4_cksum))
        payload = u.payload
    else:
        m = d.l4
        rows.lines.append(f"  ICMP message, from 0x{rows.base:04x} (RFC 792): {_icmp_text(m)}")
        rows.field(0, 1, f"type {m.type}")
        rows.field(1, 1, f"code {m.code}")
        rows.field(2, 2, f"checksum 0x{m.checksum:04x}: " + _verdict_words(d.l4_cksum))
        rows.field(4, 4, f"rest of header 0x{m.rest:08x}"
                   + (f": identifier {m.ident}, sequence {m.seq}" if m.type in (0, 8) else ""))
        payload = m.payload
    n = len(payload)
    if not n:
        rows.lines.append("  no payload")
        return
    start = rows.base + (d.l4.header_len if d.proto == "tcp" else 8)
    text = payload_text(payload)
    if text is None:
        rows.lines.append(f"  payload: {n} bytes at 0x{start:04x}, binary")
        return
    rows.lines.append(f"  payload: {n} bytes at 0x{start:04x}, as text:")
    for line in text.splitlines(keepends=True):
        shown = line.rstrip("\r\n")
        ending = line[len(shown):].replace("\r", "\\r").replace("\n", "\\n")
        rows.lines.append(f"    {shown}{ending and '  <' + ending + '>'}")


def explain_packet(frame, ip_data: bytes | None, ip_offset: int, d: Dissection | None, note: str | None = None) -> str:
    """The ``-x`` block for one frame: hex + ASCII, then the field-by-field reading."""
    out = [format_hex(frame.data, indent="  ")]
    if frame.redacted:
        out.append(f"  {len(frame.redacted)} byte(s) were redacted in the dump (written xx); their values "
                   "are taken from the ASCII column and nothing depending on them is verified")
    if frame.ascii_mismatches:
        where = ", ".join(f"0x{o:04x} shows {c!r} but the byte is 0x{b:02x}" for o, c, b in frame.ascii_mismatches[:4])
        more = f" (and {len(frame.ascii_mismatches) - 4} more)" if len(frame.ascii_mismatches) > 4 else ""
        out.append(f"  the ASCII column disagrees with the hex: {where}{more}; the hex was likely edited after capture")
    if d is None:
        out.append(f"  {note or 'not an IPv4 packet'}")
        return "\n".join(out)
    if ip_offset:
        out.append(f"  link-layer header: bytes 0x0000-0x{ip_offset - 1:04x} ({ip_offset} bytes); IPv4 starts at 0x{ip_offset:04x}")
    rows = _Rows(frame.data, ip_offset)
    if d.ip is None:
        out.append(f"  IPv4 header could not be read: {d.error}")
        return "\n".join(out)
    _ip_rows(d, rows)
    if d.error is not None:
        rows.lines.append(f"  {d.error.layer.upper()} header could not be read: {d.error}")
    elif d.l4 is not None:
        rows.base = ip_offset + d.ip.header_len
        _l4_rows(d, rows)
    elif d.ip.frag_offset:
        rows.lines.append(f"  a later fragment (offset {d.ip.frag_offset}): {len(d.ip.payload)} bytes of "
                          f"{_PROTOS.get(d.ip.protocol, 'protocol ' + str(d.ip.protocol))} data, no header here")
    else:
        rows.lines.append(f"  payload: {len(d.ip.payload)} bytes of protocol {d.ip.protocol} "
                          f"({_PROTOS.get(d.ip.protocol, 'not dissected')})")
    out.extend(rows.lines)
    for n in d.notes:
        out.append(f"  note: {n}")
    return "\n".join(out)
