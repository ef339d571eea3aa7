"""TCPLayer: the stack's transport for protocol 6.

Sans-I/O; implements :class:`netstack.transport.Transport`:

  on_datagram(src, dst, payload, now)   a TCP segment the IP layer accepted
  on_icmp_error(type, code, info, quoted, now)   an ICMP error about our segment
  poll(now)                             fire due timers, flush user writes
  next_deadline() -> float | None       when poll() is next needed
  outbox                                deque of netstack.transport.Outgoing(dst, segment, df)
  on_output                             callback set by the stack ("I have
                                        work": call poll(now), drain outbox)

It parses (checksum verified; malformed -> ``tcp.in.drop.<reason>``),
demultiplexes by 4-tuple to connections, else to listeners, else answers
with a RST (RFC 9293 §3.10.7.1).  Counters follow ``netstat -s``:
tcp.active_opens, tcp.passive_opens, tcp.in_segs, tcp.out_segs,
tcp.retrans_segs, tcp.out_rsts, tcp.estab_resets, tcp.attempt_fails, ...
"""
from __future__ import annotations

import errno
import logging
import os
import struct
from collections import deque

from netstack import checksum as _checksum
from netstack.transport import Outgoing
from netstack.wire.errors import MalformedPacket
from netstack.wire.tcp import ACK, FIN, RST, SYN, parse_tcp

from .config import TCPConfig
from .connection import CLOSED, ESTABLISHED, SYN_SENT, Connection
from .isn import ISNGenerator
from .listener import Listener
from .output import build_segment

log = logging.getLogger("netstack.tcp")

#: header + NOP,NOP,TS, the layout of (nearly) every data segment once timestamps are on
_PREDICT = struct.Struct("!HHIIHHHHIII").unpack_from
_phc = _checksum.pseudo_header_checksum
#: data offset 8 words and flags ACK, or ACK|PSH, nothing else (no SYN/FIN/RST/URG/ECE/CWR/NS)
_PREDICT_OFFFLAGS = (0x8010, 0x8018)
_NNTS_WORD = 0x0101080A


class _LocalCounters:
    """Fallback when no netstack.counters.Counters is given."""

    def __init__(self):
        self._c = {}

    def inc(self, name, n=1):
        self._c[name] = self._c.get(name, 0) + n

    def get(self, name):
        return self._c.get(name, 0)

    def snapshot(self):
        return dict(self._c)


class TCPLayer:
    def __init__(self, local_addr: int, *, counters=None, config: TCPConfig | None = None,
                 isn_secret: bytes | None = None, mtu: int | None = None):
        """``mtu`` (optional): the link MTU; the MSS we announce becomes at most MTU - 40."""
        self.local_addr = local_addr
        self.counters = counters if counters is not None else _LocalCounters()
        self.config = config or TCPConfig()
        if mtu is not None and mtu - 40 < self.config.mss:
            from dataclasses import replace
            self.config = replace(self.config, mss=max(mtu - 40, 88))
        self.outbox: deque = deque()
        self.on_output = None
        #: (remote_addr, remote_port, local_port) -> Connection (TIME-WAIT included)
        self.connections: dict = {}
        self.listeners: dict = {}
        self._isngen = ISNGenerator(isn_secret)
        self._pending: list = []          # connections with user writes to flush
        self._busy = False                # inside on_datagram/poll: flush at the end
        self._now = 0.0
        self._next_port = None

    # ------------------------------------------------------------------ user side

    def listen(self, port: int, backlog: int = 128, *, nodelay: bool | None = None) -> Listener:
        """Passive OPEN on ``port`` (RFC 9293 §3.10.1); OSError(EADDRINUSE) if taken."""
        if port in self.listeners:
            raise OSError(errno.EADDRINUSE, f"port {port} is already listening")
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        lst = Listener(self, port, backlog, nodelay=nodelay)
        self.listeners[port] = lst
        return lst

    def connect(self, dst: int, dst_port: int, now: float, *, src_port: int | None = None,
                nodelay: bool | None = None) -> Connection:
        """Active OPEN (RFC 9293 §3.10.1): the SYN is in the outbox when this returns."""
        self._now = now
        if src_port is None:
            src_port = self._ephemeral_port(dst, dst_port)
        elif (dst, dst_port, src_port) in self.connections:
            raise OSError(errno.EADDRINUSE, f"{src_port} -> {dst_port} is already in use")
        conn = Connection(self, self.local_addr, src_port, dst, dst_port, self.config, nodelay=nodelay)
        self._register(conn)
        self._count("tcp.active_opens")
        conn.open_active(self._isn(conn, now), now)
        self._kick()
        return conn

    def _ephemeral_port(self, dst: int, dst_port: int) -> int:
        lo, hi = self.config.ephemeral_low, self.config.ephemeral_high
        span = hi - lo + 1
        if self._next_port is None:
            self._next_port = int.from_bytes(os.urandom(2), "big") % span
        for _ in range(span):
            port = lo + self._next_port
            self._next_port = (self._next_port + 1) % span
            if (dst, dst_port, port) not in self.connections and port not in self.listeners:
                return port
        raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral port")

    # ------------------------------------------------------------------ Transport protocol

    def on_datagram(self, src: int, dst: int, payload, now: float) -> None:
        """A TCP segment from the IP layer (RFC 9293 §3.10.7)."""
        self._now = now
        counters = self.counters
        # Header prediction (Van Jacobson) before any parsing: the next in-order data segment
        # of an ESTABLISHED connection goes straight to Connection._predicted from the raw
        # header, checksum verified (RFC 9293 §3.1), with no TCPSegment built.  Whatever the
        # connection does not predict takes the full path below (parse, checks, counters).
        if len(payload) > 32:
            sport, dport, seq, ack, offflags, window, _c, _u, nnts, tsval, _e = _PREDICT(payload)
            if offflags in _PREDICT_OFFFLAGS and nnts == _NNTS_WORD:
                conn = self.connections.get((src, sport, dport))
                if conn is not None and conn.state is ESTABLISHED and _phc(src, dst, 6, payload) == 0:
                    self._busy = True
                    try:
                        if conn._predicted(seq, ack, window, tsval, payload[32:], now):
                            counters.inc("tcp.in_segs")
                            if self._pending:
                                self._flush_pending(now)
                            return
                    finally:
                        self._busy = False
        try:
            seg = parse_tcp(payload, src=src, dst=dst)
        except MalformedPacket as e:
            counters.inc(e.counter_name)
            return
        counters.inc("tcp.in_segs")
        conn = self.connections.get((src, seg.src_port, seg.dst_port))
        self._busy = True
        try:
            if conn is not None:
                conn.on_segment(seg, now)
            else:
                lst = self.listeners.get(seg.dst_port)
                if lst is not None:
                    lst.on_segment(src, dst, seg, now)
                else:
                    self._closed_port(src, dst, seg)
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    def poll(self, now: float) -> None:
        """Flush user writes and fire every due timer."""
        self._now = now
        self._busy = True
        try:
            if self._pending:
                self._flush_pending(now)
            for conn in list(self.connections.values()):
                d = conn.timers.next_deadline()
                if d is not None and d <= now:
                    conn.on_timer(now)
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    def next_deadline(self) -> float | None:
        """The earliest instant poll() is needed (the last seen time if writes are pending)."""
        if self._pending:
            return self._now
        best = None
        for conn in self.connections.values():
            d = conn.timers.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    # ------------------------------------------------------------------ internals for Connection/Listener

    def _count(self, name: str, n: int = 1) -> None:
        self.counters.inc(name, n)

    def _register(self, conn: Connection) -> None:
        self.connections[(conn.remote_addr, conn.remote_port, conn.local_port)] = conn

    def _forget(self, conn: Connection) -> None:
        key = (conn.remote_addr, conn.remote_port, conn.local_port)
        if self.connections.get(key) is conn:
            del self.connections[key]

    def _unlisten(self, lst: Listener) -> None:
        if self.listeners.get(lst.port) is lst:
            del self.listeners[lst.port]

    def _isn(self, conn: Connection, now: float) -> int:
        return self._isngen.isn(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port, now)

    def _ts_offset(self, conn: Connection) -> int:
        """A per-connection random TSval offset (RFC 7323 §5.4), from the same keyed hash."""
        return self._isngen.offset(conn.remote_addr, conn.remote_port, conn.local_addr, conn.local_port)

    def _want_flush(self, conn: Connection) -> None:
        self._pending.append(conn)
        if not self._busy:
            self._kick()

    def _flush_pending(self, now: float) -> None:
        pending = self._pending
        self._pending = []
        for conn in pending:
            if conn._dirty and conn.state is not CLOSED:
                conn._flush(now)

    def _kick(self) -> None:
        cb = self.on_output
        if cb is not None:
            cb()

    def _emit(self, conn: Connection, seq: int, ack: int, flags: int, window: int, options, payload) -> None:
        # DF set: a connection does path-MTU discovery (RFC 1191, RFC 1122 §4.2.2.6), as Linux does; a
        # segment too big for some hop comes back as ICMP "fragmentation needed" to on_icmp_error.
        self.outbox.append(Outgoing(conn.remote_addr, build_segment(
            conn.local_addr, conn.remote_addr, conn.local_port, conn.remote_port,
            seq, ack, flags, window, options, payload), True))
        self.counters.inc("tcp.out_segs")
        if not self._busy:
            self._kick()

    def _send_rst(self, src: int, sport: int, dst: int, dport: int, seq: int, ack: int, flags: int) -> None:
        self.outbox.append(Outgoing(dst, build_segment(src, dst, sport, dport, seq, ack, flags, 0), False))
        self.counters.inc("tcp.out_segs")
        self.counters.inc("tcp.out_rsts")
        if not self._busy:
            self._kick()

    def _send_rst_for(self, conn: Connection, seq: int) -> None:
        """<SEQ=seq><CTL=RST> on an existing connection (ABORT, RFC 9293 §3.10.5)."""
        self._send_rst(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port, seq, 0, RST)

    def _closed_port(self, src: int, dst: int, seg) -> None:
        """Reset generation for a segment to a CLOSED port, RFC 9293 §3.10.7.1."""
        flags = seg.flags
        self.counters.inc("tcp.in.no_port")
        if flags & RST:
            return                                            # an RST is never answered
        if flags & ACK:
            self._send_rst(dst, seg.dst_port, src, seg.src_port, seg.ack, 0, RST)
        else:
            seg_len = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            self._send_rst(dst, seg.dst_port, src, seg.src_port, 0, (seg.seq + seg_len) & 0xFFFFFFFF,
                           RST | ACK)

    def on_icmp_error(self, icmp_type: int, code: int, info: int, quoted, now: float) -> None:
        """An ICMP error about one of our segments (RFC 1122 §4.2.3.9, RFC 1191, RFC 5927).

        ``quoted`` is the IPv4 header + at least 8 bytes of the TCP header we
        sent.  The quoted sequence number must lie in SND.UNA..SND.MAX
        (RFC 5927 §4.1) or the message is ignored.  Fragmentation needed
        (type 3 code 4) lowers the send MSS to the next-hop MTU (RFC 1191 §6.2)
        and resends; protocol/port unreachable during SYN-SENT refuses the
        connection; everything else is a soft error (RFC 5461).
        """
        self._now = now
        q = memoryview(quoted)
        if len(q) < 28:
            self.counters.inc("tcp.in.icmp.drop.truncated")
            return
        ihl = (q[0] & 0x0F) * 4
        if q[9] != 6 or len(q) < ihl + 8:
            self.counters.inc("tcp.in.icmp.drop.truncated")
            return
        src = int.from_bytes(q[12:16], "big")
        dst = int.from_bytes(q[16:20], "big")
        sport = int.from_bytes(q[ihl:ihl + 2], "big")
        dport = int.from_bytes(q[ihl + 2:ihl + 4], "big")
        seq = int.from_bytes(q[ihl + 4:ihl + 8], "big")
        conn = self.connections.get((dst, dport, sport))
        if conn is None or src != conn.local_addr:
            self.counters.inc("tcp.in.icmp.drop.no_connection")
            return
        if not (((seq - conn.snd_una) & 0xFFFFFFFF) < 0x80000000
                and (seq == conn.snd_una or ((conn.snd_max - seq - 1) & 0xFFFFFFFF) < 0x80000000)):
            self.counters.inc("tcp.in.icmp.drop.out_of_window")
            return
        self._busy = True
        try:
            if icmp_type == 3 and code == 4:
                self.counters.inc("tcp.in.icmp.frag_needed")
                conn.on_path_mtu(info, now)
            elif icmp_type == 3 and code in (2, 3) and conn.state is SYN_SENT:
                self.counters.inc("tcp.in.icmp.unreachable")
                self.counters.inc("tcp.attempt_fails")
                conn._fail(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (ICMP unreachable)"), "refused")
            else:
                self.counters.inc("tcp.in.icmp.soft_errors")
                conn.soft_error = (icmp_type, code)
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    # ------------------------------------------------------------------ inspection

    def table(self) -> list[dict]:
        """info() of every connection, like `ss -tin`."""
        return [c.info() for c in self.connections.values()]
