"""A capture read as TCP conversations: every segment with relative numbers, a label and its marks.

:func:`load` reads a pcap or a tcpdump hex dump (:func:`netstack.capture.read_frames`),
dissects each packet, groups TCP segments by connection (the 4-tuple; the side
that sent the first SYN, or else the first segment, is the client) and
analyses each direction the way Wireshark's TCP analysis does:

* ``retransmission``: the bytes (or SYN/FIN) were already seen in this direction;
* ``out-of-order``: below the highest sequence seen, but never seen before;
* ``gap``: above the next expected sequence number (earlier data not captured);
* ``dup-ack``: no data, no SYN/FIN/RST, the same ACK number and window as the
  previous segment in this direction, with data outstanding the other way (RFC 5681 §2);
* ``zero-window``: window 0; ``window-probe``: one byte sent into a zero window;
* ``rst``: the reset flag; ``handshake`` and ``close``: the segments of the
  three-way handshake (RFC 9293 §3.5) and of the FIN exchange (§3.6);
* ``redacted``: the hex dump hid some bytes (``xx``): what depends on them is unknown.

Every packet also keeps its tcpdump line and its ``trace -V`` explanation, so
the pictures and the report say exactly what ``netstack trace`` says.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from netstack.capture import CaptureError, Frame, network_layer, read_frames
from netstack.capture.dissect import dissect
from netstack.capture.explain import explain_packet, payload_text
from netstack.capture.format import SeqTracker, format_options, format_packet, format_time
from netstack.wire.ipv4 import int2ip
from netstack.wire.tcp import ACK, FIN, RST, SYN, flags_str

__all__ = ["Packet", "Conversation", "Capture", "load", "MARKS"]

#: every mark, in the order a legend lists them
MARKS = ("handshake", "close", "retransmission", "out-of-order", "gap", "dup-ack", "zero-window",
         "window-probe", "rst", "redacted")
_APP_PORTS = {25: "SMTP", 587: "SMTP", 465: "SMTP", 110: "POP3", 143: "IMAP", 80: "HTTP", 21: "FTP", 7: "echo"}


@dataclass(slots=True, eq=False)
class Packet:
    """One captured packet; the TCP fields are None when it is not a (readable) TCP segment."""
    number: int
    time: float | None                    #: seconds since the epoch, None when the capture has no time
    line: str                             #: the tcpdump-style line (``netstack trace``)
    explain: str                          #: the ``netstack trace -V`` reading
    conn: int | None = None               #: index into Capture.conversations
    direction: int = 0                    #: 0 client -> server, 1 server -> client
    flags: int = 0
    seq: int = 0                          #: absolute
    ack: int = 0
    rel_seq: int = 0                      #: relative to the sender's ISN
    rel_ack: int = 0                      #: relative to the receiver's ISN
    length: int = 0
    window: int = 0                       #: as on the wire
    window_bytes: int = 0                 #: scaled by the negotiated shift (RFC 7323 §2.3)
    options: str = ""                     #: tcpdump's rendering of the options
    sack: tuple = ()                      #: SACK blocks, relative
    ts: tuple | None = None               #: (TSval, TSecr)
    app: str = ""                         #: the first line of an application command or reply
    marks: list = field(default_factory=list)

    @property
    def is_tcp(self) -> bool:
        return self.conn is not None

    @property
    def flag_text(self) -> str:
        return flags_str(self.flags)

    def kind(self) -> str:
        """What the segment is, in words: SYN, SYN-ACK, ACK, data, FIN-ACK, RST, RST-ACK, ..."""
        f = self.flags
        if f & RST:
            return "RST-ACK" if f & ACK else "RST"
        if f & SYN:
            return "SYN-ACK" if f & ACK else "SYN"
        words = []
        if f & FIN:
            words.append("FIN")
        if self.length:
            words.append("data")
        if not words:
            return "ACK" if f & ACK else "(no flags)"
        return "-".join(words) + ("-ACK" if f & ACK and f & FIN and not self.length else "")

    def label(self) -> str:
        """The arrow's label: flags, relative seq/ack, length, window, options, application text."""
        parts = [f"[{flags_str(self.flags)}]"]
        if self.length or self.flags & (SYN | FIN | RST):
            parts.append(f"seq {self.rel_seq}" + (f":{self.rel_seq + self.length}" if self.length else ""))
        if self.flags & ACK:
            parts.append(f"ack {self.rel_ack}")
        parts.append(f"win {self.window_bytes}")
        if self.length:
            parts.append(f"len {self.length}")
        if self.app:
            parts.append(f'"{self.app}"')
        if self.options:
            parts.append(f"<{self.options}>")
        return " ".join(parts)


@dataclass(slots=True, eq=False)
class Conversation:
    """One TCP connection: its two ends and its packets, in capture order."""
    index: int
    client: tuple[int, int]
    server: tuple[int, int]
    packets: list = field(default_factory=list)
    isn: list = field(default_factory=lambda: [None, None])         #: per direction
    wscale: list = field(default_factory=lambda: [None, None])      #: the shift each side announced
    app: str = ""                                                   #: SMTP, HTTP, ... from the server port

    @property
    def name(self) -> str:
        return f"{int2ip(self.client[0])}:{self.client[1]} > {int2ip(self.server[0])}:{self.server[1]}"

    def end(self, direction: int) -> str:
        a, p = self.client if direction == 0 else self.server
        return f"{int2ip(a)}:{p}"

    def count(self, mark: str) -> int:
        return sum(1 for p in self.packets if mark in p.marks)

    @property
    def start(self) -> float:
        return next((p.time for p in self.packets if p.time is not None), 0.0)


def recovery_marks(conv: Conversation, records) -> list[tuple[float, int, str]]:
    """The congestion and recovery events of a state log (:class:`netstack.statelog.RecoveryRecord`)
    that belong to ``conv``: ``(time, direction, text)``, ``direction`` that of the end that
    reported the event (0: the client, 1: the server; the end whose sending it changes)."""
    ends = (conv.end(0), conv.end(1))
    return [(r.time, ends.index(r.local), r.text()) for r in records or ()
            if r.local in ends and r.remote in ends]


@dataclass(slots=True)
class Capture:
    """A whole capture: every packet, the TCP conversations, and whether it was cut."""
    name: str
    packets: list
    conversations: list
    cut: bool = False                     #: --max-packets stopped the reading
    max_packets: int | None = None

    def conversation(self, n: int) -> Conversation:
        """Conversation ``n`` (1-based, as printed); ValueError naming the range."""
        if not 1 <= n <= len(self.conversations):
            raise ValueError(f"{self.name}: no connection {n} (the capture has {len(self.conversations)})")
        return self.conversations[n - 1]


class _Dir:
    """What the analysis remembers about one direction of a connection."""
    __slots__ = ("seen", "high", "last_ack", "last_win", "zero")

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []     # relative ranges already carried (SYN and FIN count 1)
        self.high: int | None = None              # the highest relative end seen
        self.last_ack = None
        self.last_win = None
        self.zero = False                          # the peer's last window was zero


def _covered(seen, lo: int, hi: int) -> bool:
    pos = lo
    for a, b in sorted(seen):
        if a <= pos < b:
            pos = b
        if pos >= hi:
            return True
    return pos >= hi


def _app_text(payload, server_port: int) -> str:
    """The first line of an application command or reply (SMTP, HTTP, ...), shortened; '' if not text."""
    if server_port not in _APP_PORTS or not payload:
        return ""
    text = payload_text(payload)
    if text is None:
        return ""
    first = text.split("\n", 1)[0].rstrip("\r")
    more = text.count("\n") > 1
    return (first[:48] + ("..." if len(first) > 48 or more else "")).replace('"', "'")


def load(source, *, name: str | None = None, max_packets: int | None = None, explain: bool = True,
         keep: Callable[[Frame], bool] | None = None) -> Capture:
    """Read and analyse a capture; :class:`~netstack.capture.CaptureError` (one line) if it cannot
    be read or holds no TCP segment.  ``max_packets`` stops after that many packets (``cut`` says so).
    ``explain=False`` leaves ``Packet.explain`` empty (a few kB a packet saved when only drawing).
    ``keep``: read only the frames it accepts (e.g. a compiled filter expression); the others are
    neither counted nor analysed."""
    if max_packets is not None and max_packets < 1:
        raise ValueError("--max-packets must be at least 1")
    name = name or (source if isinstance(source, str) else getattr(source, "name", "<capture>"))
    frames = read_frames(source, name)
    if keep is not None:
        frames = filter(keep, frames)
    if max_packets is not None:
        frames = islice(frames, max_packets + 1)
    tracker = SeqTracker()
    packets: list[Packet] = []
    convs: list[Conversation] = []
    by_key: dict = {}
    state: dict = {}
    cut = False
    for frame in frames:
        if max_packets is not None and len(packets) >= max_packets:
            cut = True
            break
        ts = None if frame.ts_sec is None else frame.ts_sec + frame.ts_nsec / 1e9
        tstext = format_time(frame.ts_sec, frame.ts_nsec, frame.ts_digits)
        ip_data, ip_off, note = network_layer(frame)
        if ip_data is None:
            packets.append(Packet(frame.number, ts, f"{tstext} {note}".strip(),
                                  explain_packet(frame, None, 0, None, note) if explain else ""))
            continue
        d = dissect(ip_data, redacted=frozenset(o - ip_off for o in frame.redacted), cut=frame.orig_len is not None)
        pkt = Packet(frame.number, ts, format_packet(d, tracker, tstext),
                     explain_packet(frame, ip_data, ip_off, d) if explain else "")
        packets.append(pkt)
        if d.proto != "tcp" or d.l4 is None or d.error is not None:
            continue
        _add_segment(pkt, d, convs, by_key, state)
        if frame.redacted:
            pkt.marks.append("redacted")
    if not any(p.is_tcp for p in packets):
        raise CaptureError(f"{name}: no TCP segments in the capture ({len(packets)} packet"
                           f"{'s' * (len(packets) != 1)} read{' that the filter keeps' if keep else ''})")
    for c in convs:
        _mark_phases(c)
    return Capture(name, packets, convs, cut, max_packets)


def _add_segment(pkt: Packet, d, convs, by_key, state) -> None:
    ip, seg = d.ip, d.l4
    a, b = (ip.src, seg.src_port), (ip.dst, seg.dst_port)
    key = (a, b) if a < b else (b, a)
    conv = by_key.get(key)
    if conv is None or (seg.flags & SYN and not seg.flags & ACK and conv.isn[0] is not None
                        and conv.client == a and seg.seq != conv.isn[0]):
        # a new connection (or a new one on a reused 4-tuple: a SYN with another ISN)
        conv = Conversation(len(convs), a, b)
        conv.app = _APP_PORTS.get(b[1], "") or _APP_PORTS.get(a[1], "")
        if conv.app and b[1] not in _APP_PORTS:         # the first segment came from the server
            conv.client, conv.server = b, a
        convs.append(conv)
        by_key[key] = conv
        state[conv.index] = (_Dir(), _Dir())
    direction = 0 if a == conv.client else 1
    dirs = state[conv.index]
    me, peer = dirs[direction], dirs[1 - direction]
    flags = seg.flags
    length = len(seg.payload)
    pkt.conn, pkt.direction, pkt.flags = conv.index, direction, flags
    pkt.seq, pkt.ack, pkt.length, pkt.window = seg.seq, seg.ack, length, seg.window
    opts = seg.options
    if flags & SYN:
        conv.isn[direction] = seg.seq
        conv.wscale[direction] = opts.wscale
    if conv.isn[direction] is None:                     # no SYN captured: start from the first seen
        conv.isn[direction] = (seg.seq - 1) & 0xFFFFFFFF
    if flags & ACK and conv.isn[1 - direction] is None:
        conv.isn[1 - direction] = (seg.ack - 1) & 0xFFFFFFFF
    isn_me, isn_peer = conv.isn[direction], conv.isn[1 - direction] or 0
    pkt.rel_seq = (seg.seq - isn_me) & 0xFFFFFFFF
    pkt.rel_ack = (seg.ack - isn_peer) & 0xFFFFFFFF if flags & ACK else 0
    shift = conv.wscale[direction] if conv.wscale[0] is not None and conv.wscale[1] is not None else None
    pkt.window_bytes = seg.window if flags & SYN or shift is None else seg.window << shift
    pkt.options = format_options(opts.items, isn_peer) if seg.data_offset > 5 else ""
    pkt.sack = tuple(((l - isn_peer) & 0xFFFFFFFF, (r - isn_peer) & 0xFFFFFFFF) for l, r in opts.sack_blocks)
    pkt.ts = (opts.ts_val, opts.ts_ecr) if opts.ts_val is not None else None
    server_port = conv.server[1]
    pkt.app = _app_text(seg.payload, server_port)

    marks = pkt.marks
    span = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
    lo = pkt.rel_seq                                   # 0 for a SYN: the ISN itself
    hi = lo + span
    if flags & RST:
        marks.append("rst")
    elif span:
        if me.high is not None and _covered(me.seen, lo, hi):
            marks.append("retransmission")
        elif me.high is not None and lo < me.high:
            marks.append("out-of-order")
        elif me.high is not None and lo > me.high:
            marks.append("gap")
        me.seen.append((lo, hi))
        if len(me.seen) > 64:                            # keep the list short: merge what is contiguous
            me.seen = _merge(me.seen)
        me.high = hi if me.high is None else max(me.high, hi)
        if length == 1 and peer.zero:
            marks.append("window-probe")
    elif flags & ACK and me.last_ack == seg.ack and me.last_win == seg.window and peer.high is not None \
            and pkt.rel_ack < peer.high:
        marks.append("dup-ack")
    if seg.window == 0 and not flags & RST:
        marks.append("zero-window")
    if flags & ACK:
        me.last_ack, me.last_win = seg.ack, seg.window
    me.zero = seg.window == 0 and not flags & RST
    conv.packets.append(pkt)


def _merge(ranges):
    out = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _mark_phases(conv: Conversation) -> None:
    """The handshake: the SYN(s), the SYN-ACK and the first ACK after it; the close: from the first FIN."""
    pk = conv.packets
    synack = next((i for i, p in enumerate(pk) if p.flags & SYN and p.flags & ACK), None)
    for i, p in enumerate(pk):
        if p.flags & SYN and "rst" not in p.marks:
            p.marks.insert(0, "handshake")
    if synack is not None:
        nxt = next((p for p in pk[synack + 1:] if p.direction != pk[synack].direction and not p.flags & SYN), None)
        if nxt is not None and nxt.flags & ACK and not nxt.flags & (FIN | RST) and "handshake" not in nxt.marks:
            nxt.marks.insert(0, "handshake")
    first_fin = next((i for i, p in enumerate(pk) if p.flags & FIN), None)
    if first_fin is not None:
        for p in pk[first_fin:]:
            if "rst" not in p.marks:
                p.marks.insert(0, "close")
