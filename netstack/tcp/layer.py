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
import heapq
import logging
import os
import random
from collections import deque

from netstack.transport import Outgoing
from netstack.wire.errors import MalformedPacket
from netstack.wire.tcp import ACK, FIN, RST, SYN, parse_tcp, predict_ts_segment

from .config import TCPConfig
from .connection import Connection
from .isn import ISNGenerator
from .listener import Listener
from .buffers import ByteBudget
from .negotiation import SynOptions
from .segment import AckTemplate, serialize
from .syncookies import MAX_AGE, TICK, CookieOptions, SynCookieMode, SynCookies, decode_ts, encode_ts
from .seq import MASK
from .state import CLOSED, ESTABLISHED

log = logging.getLogger("netstack.tcp")

#: header prediction's read of a segment: the fields of the layout of (nearly) every segment once
#: timestamps are on (flags ACK or ACK|PSH, NOP,NOP,TS), checksum verified (wire.tcp.predict_ts_segment)
_predict = predict_ts_segment
#: free bytes left in front of a segment with data, for the IPv4 header (20 bytes, no options): the
#: IP layer builds the datagram in the segment's own buffer (Outgoing.headroom), the payload copied
#: once from the send buffer to the link.  Below IN_PLACE_MIN payload bytes the copy into the IP
#: layer's transmit buffer is cheaper than the memoryview the in-place send needs (pure ACKs).
HEADROOM = 20
IN_PLACE_MIN = 512
#: builds an Outgoing from a full tuple: half the cost of its keyword-default constructor
_tuple_new = tuple.__new__


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
    """The TCP transport: demultiplexing, listeners, RSTs for closed ports, and the host of
    every Connection (:class:`~netstack.tcp.host.ConnectionHost`) and Listener
    (:class:`~netstack.tcp.listener.ListenerHost`)."""

    def __init__(self, local_addr: int, *, counters=None, config: TCPConfig | None = None,
                 isn_secret: bytes | None = None, mtu: int | None = None, path_mtu=None,
                 offload: bool = False, cookie_clock=None, shared_flows: bool = False):
        """``mtu`` (optional): the link MTU; the MSS we announce becomes at most MTU - 40.
        ``path_mtu`` (optional, a :class:`netstack.transport.PathMtu`): what to believe of an
        ICMP "fragmentation needed" once validated (the floor, the decrease rate limit); without
        it the next-hop MTU is taken as it is.

        ``offload``: the link does checksum and segmentation offload (a TUN with the
        virtio-net header): segments with data leave with a partial checksum, and
        those larger than the MSS (up to ``config.max_segment``) as super-segments
        the link cuts into MSS-sized ones (:class:`~netstack.transport.Outgoing`).

        Several layers sharing one address, each receiving some of its flows (the
        workers of a multi-queue server): ``isn_secret`` the same in all, so that
        ISNs and SYN cookies agree (RFC 6528 §3, RFC 4987 §3.6); ``cookie_clock`` (a
        :class:`~netstack.tcp.syncookies.CookieClock`) shared too, so that a cookie's
        ACK is checked by whichever layer it reaches, not only the one that sent the
        cookie (Linux shares this instant in a SO_REUSEPORT group); ``shared_flows``:
        a segment that no connection or listener here takes, other than a bare SYN, is
        dropped and counted (``tcp.in.drop.other_worker``) rather than answered with a
        RST (RFC 9293 §3.10.7.1): its connection may live in another layer, and the
        RST would kill it."""
        self.local_addr = local_addr
        self.offload = offload
        self.counters = counters if counters is not None else _LocalCounters()
        self.config = config or TCPConfig()
        if mtu is not None and mtu - 40 < self.config.mss:
            from dataclasses import replace
            self.config = replace(self.config, mss=max(mtu - 40, 88))
        self.outbox: deque = deque()
        self.on_output = None
        self.path_mtu = path_mtu
        #: observer of every connection's state changes: callable(conn, StateChange), or None
        self.on_transition = None
        #: observer of every connection's congestion and recovery events: callable(conn, RecoveryEvent), or None
        self.on_recovery = None
        #: (remote_addr, remote_port, local_port) -> Connection (TIME-WAIT included)
        self.connections: dict = {}
        #: Connection -> its pure-ACK template (segment.AckTemplate), made at its first pure ACK
        self.ack_templates: dict = {}
        self.listeners: dict = {}
        if isn_secret is None:
            isn_secret = os.urandom(16)
        self._isngen = ISNGenerator(isn_secret)
        self._cookies = SynCookies(isn_secret)    # the same secret, another personalisation
        self._last_cookie: float | None = None    # when a SYN cookie last went out
        self.cookie_clock = cookie_clock          # the same instant, shared with other layers (or None)
        self.shared_flows = shared_flows
        self.ooo_budget = ByteBudget(self.config.max_ooo_total)
        self._orphans: set = set()
        self._memory_checked = None               # (time, bytes) of the last buffer-memory sum
        self._pending: list = []          # connections with user writes to flush
        self._after_input: list = []      # connections to flush at the next poll (flush_after_input)
        # The deadline heap: (deadline, n, conn) entries, invalidated lazily.  _timer_at[conn] is the
        # earliest deadline pushed for conn that is still live; an entry that disagrees is stale.
        self._timers: list = []
        self._timer_at: dict = {}
        self._timer_n = 0
        self._fresh: list = []            # connections created during this round
        #: the connection of the last predicted run of on_datagrams, its deadline not filed yet
        self._unfiled = None
        self._busy = False                # inside on_datagram/poll: flush at the end
        self.now = 0.0                    # the time of the input or timer being processed
        self._next_port = None
        self._rng = random.Random(os.urandom(16))    # randomised budgets (never a security secret)
        self._challenge_second = None
        self._challenge_left = 0

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
        self.now = now
        if src_port is None:
            src_port = self._ephemeral_port(dst, dst_port)
        elif (dst, dst_port, src_port) in self.connections:
            raise OSError(errno.EADDRINUSE, f"{src_port} -> {dst_port} is already in use")
        refusal = self._over_limit(now)
        if refusal is not None:
            self.count(f"tcp.limits.refused.{refusal}")
            raise OSError(errno.ENOBUFS, f"TCP resource limit reached: {refusal}")
        conn = self._new_connection(self.local_addr, src_port, dst, dst_port, nodelay=nodelay, passive=False)
        self.count("tcp.active_opens")
        conn.open_active(self._isn(conn, now), now)
        self._fresh.clear()
        self._track(conn)
        self._kick()
        return conn

    def _new_connection(self, local: int, lport: int, remote: int, rport: int, *, nodelay, passive) -> Connection:
        conn = Connection(self, local, lport, remote, rport, self.config, nodelay=nodelay, passive=passive,
                          ts_offset=self._isngen.offset(remote, rport, local, lport), ooo_budget=self.ooo_budget)
        self.connections[(remote, rport, lport)] = conn
        self._fresh.append(conn)
        return conn

    # ------------------------------------------------------------------ the deadline heap

    def _track(self, conn: Connection) -> None:
        """After ``conn`` ran: make sure the heap holds an entry at or before its next deadline.

        A deadline that moved later (a restarted retransmission timer, on nearly every
        ACK) costs nothing here: the earlier entry fires, finds nothing due and is
        pushed again at the real deadline (lazy invalidation).  Only an earlier or a
        new deadline is pushed."""
        d = conn.next_deadline()
        if d is not None:
            at = self._timer_at.get(conn)
            if at is None or d < at:
                self._timer_at[conn] = d
                self._timer_n += 1
                heapq.heappush(self._timers, (d, self._timer_n, conn))

    def _track_fresh(self) -> None:
        fresh = self._fresh
        if fresh:
            for conn in fresh:
                self._track(conn)
            fresh.clear()

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

    def on_datagram_trusted(self, src: int, dst: int, payload, now: float) -> None:
        """A TCP segment whose checksum the link vouches for (checksum offload: a partial
        checksum the sending kernel left to the device, or one already verified): as
        :meth:`on_datagram` without verifying it.  A GSO super-segment, many MSS of
        in-order data under one header, arrives this way and is taken as one segment."""
        self.on_datagram(src, dst, payload, now, True)

    def on_datagrams(self, items, now: float, trusted: bool = False) -> None:
        """The TCP segments of one link read, in order: ``(src, dst, payload)`` items the IP
        layer accepted (``IPLayer.input_batch``), each taken as :meth:`on_datagram` takes it
        (``trusted``: the link vouches for their checksums, see :meth:`on_datagram_trusted`).

        Header prediction (Van Jacobson) runs here in one loop: the next in-order segment of
        an ESTABLISHED connection, data or a pure ACK (flags ACK or ACK|PSH, ``NOP,NOP,TS``,
        checksum verified, RFC 9293 §3.1), goes straight to Connection.fast_path from the raw header,
        with no TCPSegment built.  What is done once per segment by :meth:`on_datagram`
        (the segment counter, re-filing the connection's deadline) is done once per run of
        predicted segments here.  Any other segment takes :meth:`on_datagram`'s full path,
        in its place in the order."""
        self.now = now
        connections = self.connections
        verify = not trusted
        predicted = 0
        last = None                                # the connection of the predicted run
        self._busy = True
        try:
            for src, dst, payload in items:
                fields = _predict(src, dst, payload, verify)
                if fields:
                    sport, dport, seq, ack, window, tsval, ecr = fields
                    conn = connections.get((src, sport, dport))
                    if conn is not None and conn.state is ESTABLISHED:
                        if conn.fast_path(seq, ack, window, tsval, ecr, payload[32:], now):
                            predicted += 1
                            if conn is not last:
                                if last is not None:
                                    self._track(last)
                                last = conn
                            if self._pending:
                                self._flush_pending(now)
                            continue
                    # the checksum is verified (or trusted): the full path need not verify it again
                    self.on_datagram(src, dst, payload, now, True, True)
                else:
                    # another layout, or (False) a checksum that does not verify: the full path,
                    # which counts the drop
                    self.on_datagram(src, dst, payload, now, trusted, True)
                self._busy = True
        finally:
            self._busy = False
            if predicted:
                self.counters.inc("tcp.in_segs", predicted)
            if last is not None:
                # Filed by the next next_deadline()/poll(), after what the round does with the
                # data: a delayed-ACK timer the application's read stops again (the ACK that
                # waited for the read, delack.py) then never enters the heap.
                if self._unfiled is not None and self._unfiled is not last:
                    self._track(self._unfiled)
                self._unfiled = last

    def on_datagram(self, src: int, dst: int, payload, now: float, trusted: bool = False,
                    predicted: bool = False) -> None:
        """A TCP segment from the IP layer (RFC 9293 §3.10.7); ``trusted``: see
        :meth:`on_datagram_trusted`; ``predicted``: header prediction was tried already
        (:meth:`on_datagrams`)."""
        self.now = now
        counters = self.counters
        # Header prediction (Van Jacobson) before any parsing: the next in-order segment (data,
        # or a pure ACK of new data) of an ESTABLISHED connection goes straight to Connection.fast_path from the raw
        # header, checksum verified (RFC 9293 §3.1), with no TCPSegment built.  Whatever the
        # connection does not predict takes the full path below (parse, checks, counters).
        fields = None if predicted else _predict(src, dst, payload, not trusted)
        if fields:
            sport, dport, seq, ack, window, tsval, ecr = fields
            conn = self.connections.get((src, sport, dport))
            if conn is not None and conn.state is ESTABLISHED:
                self._busy = True
                try:
                    if conn.fast_path(seq, ack, window, tsval, ecr, payload[32:], now):
                        counters.inc("tcp.in_segs")
                        d = conn.next_deadline()
                        if d is not None:
                            at = self._timer_at.get(conn)
                            if at is None or d < at:
                                self._track(conn)
                        if self._pending:
                            self._flush_pending(now)
                        return
                finally:
                    self._busy = False
        try:
            seg = parse_tcp(payload, verify=False) if trusted else parse_tcp(payload, src=src, dst=dst)
        except MalformedPacket as e:
            counters.inc(e.counter_name)
            return
        counters.inc("tcp.in_segs")
        conn = self.connections.get((src, seg.src_port, seg.dst_port))
        if conn is not None and seg.flags & 0x17 == SYN and conn.reopens_time_wait(seg):
            self.count("tcp.time_wait_reused")         # RFC 6191: a new incarnation
            conn.end_time_wait()
            conn = None
        self._busy = True
        try:
            if conn is not None:
                conn.on_segment(seg, now)
                self._track(conn)
            else:
                lst = self.listeners.get(seg.dst_port)
                if lst is not None:
                    lst.on_segment(src, dst, seg, now)
                else:
                    self.counters.inc("tcp.in.no_port")
                    self.reset_segment(src, dst, seg)
            self._track_fresh()
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    def poll(self, now: float) -> None:
        """Flush user writes (and what waited for the end of the input, flush_after_input) and
        fire every due timer: the due entries of the deadline heap, not a walk over every
        connection (idle connections cost nothing per segment)."""
        self.now = now
        self._busy = True
        try:
            if self._after_input:
                self._pending += self._after_input
                self._after_input = []
            if self._pending:
                self._flush_pending(now)
            if self._unfiled is not None:          # after the flushes: an ACK sent stops its timer
                self._track(self._unfiled)
                self._unfiled = None
            heap = self._timers
            timer_at = self._timer_at
            while heap and heap[0][0] <= now:
                d, _, conn = heapq.heappop(heap)
                if timer_at.get(conn) != d:
                    continue                       # stale: superseded by an earlier entry
                del timer_at[conn]
                real = conn.next_deadline()
                if real is not None and real <= now:
                    conn.on_timer(now)
                    self._track_fresh()
                self._track(conn)                  # its next deadline, if any
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    def next_deadline(self) -> float | None:
        """The earliest instant poll() is needed (the last seen time if writes are pending).

        The top of the deadline heap, made exact: an entry whose connection's timers
        have since moved (or stopped) is re-filed at the real deadline first."""
        if self._pending or self._after_input:
            return self.now                        # (poll() files _unfiled, after its flushes)
        if self._unfiled is not None:
            self._track(self._unfiled)
            self._unfiled = None
        heap = self._timers
        timer_at = self._timer_at
        while heap:
            d, _, conn = heap[0]
            if timer_at.get(conn) == d:
                real = conn.next_deadline()
                if real == d:
                    return d
                del timer_at[conn]
                heapq.heappop(heap)
                self._track(conn)                  # at its real deadline, if it has one
            else:
                heapq.heappop(heap)                # stale: superseded by an earlier entry
        return None

    def on_icmp_error(self, icmp_type: int, code: int, info: int, quoted, now: float) -> None:
        """An ICMP error about one of our segments (RFC 1122 §4.2.3.9, RFC 1191, RFC 5927).

        ``quoted`` is the IPv4 header + at least 8 bytes of the TCP header we
        sent.  The quoted sequence number must lie in SND.UNA..SND.MAX
        (RFC 5927 §4.1) or the message is ignored.  A "fragmentation needed"
        then goes through :attr:`path_mtu` (the floor, the per-destination
        decrease rate limit; RFC 8201).  The connection decides the rest
        (Connection.on_icmp_error).
        """
        self.now = now
        q = memoryview(quoted)
        if len(q) < 28:
            self.count("tcp.in.icmp.drop.truncated")
            return
        ihl = (q[0] & 0x0F) * 4
        if q[9] != 6 or len(q) < ihl + 8:
            self.count("tcp.in.icmp.drop.truncated")
            return
        src = int.from_bytes(q[12:16], "big")
        dst = int.from_bytes(q[16:20], "big")
        sport = int.from_bytes(q[ihl:ihl + 2], "big")
        dport = int.from_bytes(q[ihl + 2:ihl + 4], "big")
        seq = int.from_bytes(q[ihl + 4:ihl + 8], "big")
        conn = self.connections.get((dst, dport, sport))
        if conn is None or src != conn.local_addr:
            self.count("tcp.in.icmp.drop.no_connection")
            return
        if not conn.quotes_in_flight(seq):
            self.count("tcp.in.icmp.drop.out_of_window")
            return
        if icmp_type == 3 and code == 4 and self.path_mtu is not None:
            believed = self.path_mtu.report(dst, info, now)
            if believed is None:
                self.count("tcp.in.icmp.drop.pmtu_rate_limited")
                return
            info = believed
        self._busy = True
        try:
            conn.on_icmp_error(icmp_type, code, info, now)
            self._track(conn)
            if self._pending:
                self._flush_pending(now)
        finally:
            self._busy = False

    # ------------------------------------------------------------------ ConnectionHost / ListenerHost

    def count(self, name: str, n: int = 1) -> None:
        self.counters.inc(name, n)

    def emit(self, conn: Connection, seq: int, ack: int, flags: int, window: int, payload, ts, sack_blocks,
             syn) -> None:
        # DF set: a connection does path-MTU discovery (RFC 1191, RFC 1122 §4.2.2.6), as Linux does; a
        # segment too big for some hop comes back as ICMP "fragmentation needed" to on_icmp_error.
        if ts is not None and syn is None and not sack_blocks:
            if not payload:
                if self.emit_ack(conn, seq, ack, flags, window, ts[0], ts[1]):
                    return
            elif self._emit_data(conn, seq, ack, flags, window, ts, payload):
                return
        if self.offload and payload:
            # checksum offload; beyond the MSS a TSO super-segment: the link cuts it into
            # segments of SND.MSS bytes, each with this header (timestamps included)
            n = len(payload)
            mss = conn.snd.mss
            room = HEADROOM if n >= IN_PLACE_MIN else 0
            self.outbox.append(Outgoing(conn.remote_addr, serialize(
                conn.local_addr, conn.remote_addr, conn.local_port, conn.remote_port,
                seq, ack, flags, window, payload, ts, sack_blocks, syn, True, room), True, True,
                mss if n > mss else 0, room))
            self.counters.inc("tcp.out_segs")
            if n > mss:
                self.counters.inc("tcp.out_tso_segs")
            if not self._busy:
                self._kick()
            return
        if len(payload) >= IN_PLACE_MIN:
            self.outbox.append(Outgoing(conn.remote_addr, serialize(
                conn.local_addr, conn.remote_addr, conn.local_port, conn.remote_port,
                seq, ack, flags, window, payload, ts, sack_blocks, syn, False, HEADROOM), True, False, 0, HEADROOM))
        else:
            self.outbox.append(Outgoing(conn.remote_addr, serialize(
                conn.local_addr, conn.remote_addr, conn.local_port, conn.remote_port,
                seq, ack, flags, window, payload, ts, sack_blocks, syn), True))
        self.counters.inc("tcp.out_segs")
        if not self._busy:
            self._kick()

    def _emit_data(self, conn: Connection, seq: int, ack: int, flags: int, window: int, ts, payload) -> bool:
        """A data segment with timestamps and no other option (nearly every one), from the
        connection's template (segment.AckTemplate.build_data), as :meth:`emit`'s general
        path builds it: checksum offload and TSO beyond the MSS on an offloading link, the
        datagram built in place from IN_PLACE_MIN bytes on.  False (nothing sent) for fields
        the template cannot take."""
        tpl = self.ack_templates.get(conn)
        if tpl is None:
            tpl = self.ack_templates[conn] = AckTemplate(conn.local_addr, conn.remote_addr,
                                                          conn.local_port, conn.remote_port)
        n = len(payload)
        offload = self.offload
        room = HEADROOM if n >= IN_PLACE_MIN else 0
        seg = tpl.build_data(seq, ack, flags, window, ts[0], ts[1], payload, offload, room)
        if seg is None:
            return False
        mss = conn.snd.mss
        gso = mss if offload and n > mss else 0
        # Outgoing(...) without the NamedTuple's keyword-default constructor
        self.outbox.append(_tuple_new(Outgoing, (conn.remote_addr, seg, True, offload, gso, room)))
        self.counters.inc("tcp.out_segs")
        if gso:
            self.counters.inc("tcp.out_tso_segs")
        if not self._busy:
            self._kick()
        return True

    def emit_ack(self, conn: Connection, seq: int, ack: int, flags: int, window: int, tsval: int,
                 tsecr: int) -> bool:
        """A pure ACK with timestamps, the receive path's one: from the connection's template
        (segment.AckTemplate); False (nothing sent) for fields the template cannot take."""
        tpl = self.ack_templates.get(conn)
        if tpl is None:
            tpl = self.ack_templates[conn] = AckTemplate(conn.local_addr, conn.remote_addr,
                                                          conn.local_port, conn.remote_port)
        seg = tpl.build(seq, ack, flags, window, tsval, tsecr)
        if seg is None:
            return False
        # Outgoing(remote, seg, True) without the NamedTuple's keyword-default constructor
        self.outbox.append(_tuple_new(Outgoing, (conn.remote_addr, seg, True, False, 0, 0)))
        self.counters.inc("tcp.out_segs")
        if not self._busy:
            self._kick()
        return True

    def send_reset(self, conn: Connection, seq: int, ack: int, flags: int) -> None:
        self._send_rst(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port, seq, ack, flags)

    def challenge_ack_allowed(self, now: float) -> bool:
        """The stack-wide challenge-ACK budget (RFC 5961 §7), randomised per second so that the
        count it leaves cannot be probed by an off-path attacker (CVE-2016-5696)."""
        limit = self.config.challenge_ack_limit
        if limit <= 0:
            return True
        second = int(now)
        if second != self._challenge_second:
            self._challenge_second = second
            self._challenge_left = (limit + 1) // 2 + self._rng.randrange(limit + 1)
        if self._challenge_left <= 0:
            return False
        self._challenge_left -= 1
        return True

    def may_orphan(self, conn: Connection) -> bool:
        if len(self._orphans) >= self.config.max_orphans:
            return False
        self._orphans.add(conn)
        return True

    def want_flush(self, conn: Connection) -> None:
        self._pending.append(conn)
        if not self._busy:
            self._kick()

    def flush_after_input(self, conn: Connection) -> None:
        """ConnectionHost.flush_after_input: not at the end of the input, as want_flush, but at the
        next poll, which the stack runs at the end of its round (Stack.kick)."""
        self._after_input.append(conn)
        self._kick()

    def established(self, conn: Connection) -> None:
        lst = self.listeners.get(conn.local_port)
        if lst is not None:
            lst.connection_established(conn)

    def closed(self, conn: Connection) -> None:
        self._orphans.discard(conn)
        self.ack_templates.pop(conn, None)
        key = (conn.remote_addr, conn.remote_port, conn.local_port)
        if self.connections.get(key) is conn:
            del self.connections[key]
        if conn.passive:
            lst = self.listeners.get(conn.local_port)
            if lst is not None:
                lst.connection_closed(conn)

    def transition(self, conn: Connection, change) -> None:
        if self.on_transition is not None:
            _observe(self.on_transition, "on_transition", conn, change)

    def recovery_event(self, conn: Connection, event) -> None:
        if self.on_recovery is not None:
            _observe(self.on_recovery, "on_recovery", conn, event)

    def open_passive(self, listener: Listener, src: int, dst: int, seg, now: float) -> Connection | None:
        refusal = self._over_limit(now)
        if refusal is not None:
            self.count(f"tcp.limits.refused.{refusal}")
            self.reset_segment(src, dst, seg)
            return None
        conn = self._new_connection(dst, listener.port, src, seg.src_port, nodelay=listener.nodelay, passive=True)
        conn.open_passive(seg, self._isn(conn, now), now)
        return conn

    @property
    def syncookies(self) -> SynCookieMode:
        return self.config.syncookies

    def send_syn_cookie(self, src: int, dst: int, seg, now: float) -> None:
        """Answer a SYN with a cookie SYN-ACK and keep no state (RFC 4987 §3.6, syncookies.py).

        The SYN-ACK offers what a SYN-ACK of a real connection would: our MSS; with
        timestamps, window scale and SACK-permitted when the peer offered them, their
        values carried in the TSval's low bits.  Without timestamps neither (as Linux)."""
        cfg = self.config
        opts = seg.options
        sport, dport = seg.src_port, seg.dst_port
        isn = self._cookies.make(src, dst, sport, dport, seg.seq, opts.mss or 536, now)
        if cfg.timestamps and opts.ts_val is not None:
            wscale_ok = cfg.wscale is not None and opts.wscale is not None
            sack_ok = bool(cfg.sack and opts.sack_permitted)
            tsclock = (int(now * 1000) + self._isngen.offset(src, sport, dst, dport)) & MASK
            tsval = encode_ts(tsclock, opts.wscale if wscale_ok else None, sack_ok)
            syn = SynOptions(mss=cfg.mss, wscale=cfg.wscale if wscale_ok else None, sack_permitted=sack_ok,
                             ts=(tsval, opts.ts_val))
        else:
            syn = SynOptions(mss=cfg.mss, wscale=None, sack_permitted=False, ts=None)
        self.outbox.append(Outgoing(src, serialize(dst, src, dport, sport, isn, (seg.seq + 1) & MASK, SYN | ACK,
                                                   min(cfg.rcvbuf, 65535), b"", None, None, syn), True))
        self.counters.inc("tcp.out_segs")
        self.counters.inc("tcp.syncookies.sent")
        self._last_cookie = now
        if self.cookie_clock is not None:
            self.cookie_clock.mark(now)
        if not self._busy:
            self._kick()

    def accept_cookie(self, listener: Listener, src: int, dst: int, seg, now: float) -> Connection | None:
        """An ACK reached a listener: if SYN cookies went out lately and it returns a valid one,
        the ESTABLISHED connection it stands for (its data already taken in), else None."""
        last = self._last_cookie if self.cookie_clock is None else self.cookie_clock.last()
        if last is None or now - last > (MAX_AGE + 1) * TICK:
            return None
        mss = self._cookies.check(src, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, now)
        if mss is None:
            self.count("tcp.syncookies.failed")
            return None
        refusal = self._over_limit(now)
        if refusal is not None:
            self.count(f"tcp.limits.refused.{refusal}")
            return None
        cfg = self.config
        o = seg.options
        if cfg.timestamps and o.ts_val is not None and o.ts_ecr:
            wscale, sack = decode_ts(o.ts_ecr)
            opts = CookieOptions(mss, wscale, sack, o.ts_val)
        else:
            opts = CookieOptions(mss, None, False, None)
        conn = self._new_connection(dst, listener.port, src, seg.src_port, nodelay=listener.nodelay, passive=True)
        conn.open_from_cookie(seg, (seg.ack - 1) & MASK, opts, now)
        self.count("tcp.syncookies.validated")
        self.count("tcp.passive_opens")
        if len(seg.payload) or seg.flags & FIN:
            conn.on_segment(seg, now)
        return conn

    def _over_limit(self, now: float) -> str | None:
        """The resource limit a new connection would exceed, or None."""
        cfg = self.config
        if len(self.connections) >= cfg.max_connections:
            return "connections"
        if self._buffered_bytes(now) >= cfg.max_buffer_memory:
            return "memory"
        return None

    def _buffered_bytes(self, now: float) -> int:
        """Bytes in every connection's buffers, summed at most once a second (it walks them all)."""
        checked = self._memory_checked
        if checked is None or now - checked[0] >= 1.0 or now < checked[0]:
            total = self.ooo_budget.used
            for c in self.connections.values():
                total += len(c.rcv.buf) + len(c.snd.buf)
            checked = self._memory_checked = (now, total)
        return checked[1]

    def unlisten(self, listener: Listener) -> None:
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]

    def reset_segment(self, src: int, dst: int, seg) -> None:
        """Reset generation for a segment no connection takes, RFC 9293 §3.10.7.1 (and §3.10.7.2
        second, an ACK to a listener): <SEQ=SEG.ACK><CTL=RST>, or <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
        flags = seg.flags
        if flags & RST:
            return                                            # an RST is never answered
        if self.shared_flows and flags & (SYN | ACK) != SYN:
            self.count("tcp.in.drop.other_worker")            # maybe another worker's: no RST
            return
        if flags & ACK:
            self._send_rst(dst, seg.dst_port, src, seg.src_port, seg.ack, 0, RST)
        else:
            seg_len = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            self._send_rst(dst, seg.dst_port, src, seg.src_port, 0, (seg.seq + seg_len) & MASK, RST | ACK)

    # ------------------------------------------------------------------ internals

    def _isn(self, conn: Connection, now: float) -> int:
        return self._isngen.isn(conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port, now)

    def _flush_pending(self, now: float) -> None:
        pending = self._pending
        self._pending = []
        for conn in pending:
            if conn.flush_pending and conn.state is not CLOSED:
                conn.flush(now)
                self._track(conn)

    def _kick(self) -> None:
        cb = self.on_output
        if cb is not None:
            cb()

    def _send_rst(self, src: int, sport: int, dst: int, dport: int, seq: int, ack: int, flags: int) -> None:
        self.outbox.append(Outgoing(dst, serialize(src, dst, sport, dport, seq, ack, flags, 0), False))
        self.counters.inc("tcp.out_segs")
        self.counters.inc("tcp.out_rsts")
        if not self._busy:
            self._kick()

    # ------------------------------------------------------------------ inspection

    def table(self) -> list[dict]:
        """info() of every connection, like `ss -tin`."""
        return [c.info() for c in self.connections.values()]


def _observe(cb, name: str, conn: Connection, what) -> None:
    """Call an observer; an observer must not kill the loop."""
    try:
        cb(conn, what)
    except Exception:
        log.exception("%s observer failed", name)
