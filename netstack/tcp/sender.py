"""The sending side of a connection: what goes out, and when.

  RFC 9293 §3.8.6.2.1, RFC 1122 §4.2.3.4,   Sender.output: segmentation at the MSS (or
  RFC 896                                   max_segment for TSO), sender SWS avoidance,
                                            Nagle (Minshall's variant,
                                            SendSpace.nagle_holds), FIN with data
  RFC 3042                                  limited transmit (in Sender.output)
  RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17     Sender.on_persist_timeout: zero-window probes
  RFC 1122 §4.2.3.6                         Sender.on_keepalive_timeout: keep-alive probes
  RFC 7323 / RFC 2018 / RFC 6691            Sender.send: timestamps and SACK blocks, and
  RFC 2883                                  how many blocks fit beside the payload; a D-SACK first

A part of :class:`~netstack.tcp.connection.Connection`, composed, not
inherited: it reads the connection's other parts (``snd``, ``rcv``, ``neg``,
``rto``, ``cc``, ``timers``, ``acks``, ``recovery``) and its ``state``, and
hands every segment to the connection's host as fields, never as bytes
(serialising is netstack/tcp/segment.py's job).  It never fails the
connection itself: a probe limit that runs out is reported back as a
TimeoutError for the connection to act on.
"""
from __future__ import annotations

import errno

from netstack.wire.tcp import ACK, FIN, PSH, SYN

from .seq import HALF, MASK, seq_diff
from .state import CLOSE_WAIT, ESTABLISHED, SEND_STATES
from .timers import Timer

_RETRANSMIT = Timer.RETRANSMIT
_PERSIST = Timer.PERSIST
_KEEPALIVE = Timer.KEEPALIVE


class Sender:
    """Output, persist and keep-alive for one connection."""

    __slots__ = ("conn", "persist_backoff", "probes_unanswered", "keepalive_probes")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.persist_backoff = 0          #: zero-window probes since the window last opened
        self.probes_unanswered = 0        #: zero-window probes since the peer last answered
        self.keepalive_probes = 0         #: unanswered keep-alive probes

    # -- one segment ------------------------------------------------------------------------------
    def send(self, now: float, seq: int, flags: int, payload=b"") -> None:
        """Emit one segment carrying ACK of RCV.NXT (all segments after the SYN do)."""
        c = self.conn
        rcv = c.rcv
        neg = c.neg
        wnd = rcv.advertise()
        if not payload and neg.ts_enabled and rcv.dsack is None and not (rcv.ooo.ranges and neg.sack_ok):
            # A pure ACK with timestamps and no SACK blocks (the receive path's, every second
            # segment): the host builds it from its template.  TSval: Negotiation.tsval, inlined.
            rcv_nxt = rcv.nxt
            if c.host.emit_ack(c, seq, rcv_nxt, flags, wnd, (int(now * 1000) + neg.ts_offset) & MASK,
                               neg.ts_recent):
                c.segs_out += 1
                rcv.last_ack_sent = rcv_nxt
                acks = c.acks
                acks.due = acks.round_end = False  # AckPolicy: the ACK went out
                c.timers.delack = None
                return
        # TSval: Negotiation.tsval, inlined on this per-segment path
        ts = ((int(now * 1000) + neg.ts_offset) & MASK, neg.ts_recent) if neg.ts_enabled else None
        sack = None
        if neg.sack_ok and (rcv.ooo.ranges or rcv.dsack is not None) and (
                k := self._sack_blocks_that_fit(len(payload))):
            sack = rcv.ooo.blocks(rcv.nxt, k) if rcv.ooo.ranges else []   # RFC 2018 §4: the blocks we hold
            if rcv.dsack is not None:
                sack = [rcv.dsack, *sack[:k - 1]]                         # RFC 2883 §4: the D-SACK first
                rcv.dsack = None
                c.host.count("tcp.out.dsack")
        rcv_nxt = rcv.nxt
        if payload and neg.sack_ok:
            # the loss detection remembers each data transmission (RACK, RFC 8985 §6.1)
            c.recovery.loss.on_transmit(seq, len(payload), now, ((seq - c.snd.max) & MASK) >= HALF)
        c.host.emit(c, seq, rcv_nxt, flags, wnd, payload, ts, sack, None)
        c.segs_out += 1
        rcv.last_ack_sent = rcv_nxt
        acks = c.acks
        acks.due = acks.round_end = False         # AckPolicy: the ACK went out
        c.timers.delack = None

    def send_ack(self, now: float) -> None:
        # A pure ACK carries SND.MAX, not SND.NXT: after a go-back-N retransmission
        # SND.NXT lags what the peer already has, and an ACK numbered below the
        # peer's RCV.NXT would fail its acceptability test (BSD tcp_output does the same).
        self.send(now, self.conn.snd.max, ACK)

    def send_syn(self, now: float, synack: bool = False) -> None:
        """Our SYN or SYN-ACK (RFC 9293 §3.5), with the options of the negotiation."""
        c = self.conn
        rcv = c.rcv
        wnd = rcv.syn_window()
        if synack:
            opts = c.neg.synack_options(now, rcv.wscale)
            flags = SYN | ACK
            rcv.last_ack_sent = rcv.nxt
        else:
            opts = c.neg.syn_options(now)
            flags = SYN
        c.syn_time = now
        c.host.emit(c, c.snd.iss, rcv.nxt, flags, wnd, b"", None, None, opts)
        c.segs_out += 1
        c.timers.arm(_RETRANSMIT, now + c.rto.rto)

    def _sack_blocks_that_fit(self, payload_len: int) -> int:
        """How many SACK blocks this segment may carry without growing past the path MTU.

        SND.MSS already leaves room for the timestamps option only (RFC 6691: the
        MSS counts no options, so options come out of the payload's budget).  A
        pure ACK has room for all (3 beside timestamps, else 4: RFC 2018 §3); a
        full-sized data segment has none, and carries just the timestamps (the
        next pure ACK reports the blocks).  A segment larger than the MSS is a
        TSO super-segment, cut to size by the offload.
        """
        most = 3 if self.conn.neg.ts_enabled else 4
        mss = self.conn.snd.mss
        if payload_len == 0 or payload_len > mss:
            return most
        room = mss - payload_len          # option bytes beyond the timestamps
        return min(most, (room - 4) // 8) if room >= 12 else 0

    # -- new data ---------------------------------------------------------------------------------
    def output(self, now: float) -> None:
        """Send new data and FIN as the windows allow (RFC 9293 §3.8.6.2.1, RFC 1122 §4.2.3.4, RFC 896).

        Sender SWS avoidance: a segment goes out if it is full-sized, or it
        carries all queued data and Nagle lets it go or TCP_NODELAY is set,
        or it is at least half the largest window the peer ever offered.
        The FIN goes with the last data.
        """
        c = self.conn
        snd = c.snd
        buf = snd.buf
        maxseg = snd.segment_size
        mss = snd.mss
        timers = c.timers
        recovery = c.recovery
        sb = recovery.scoreboard
        cc = c.cc
        if sb.blocks and cc.in_recovery:
            recovery.sack_recovery(now)
            return
        loss = recovery.loss
        if loss.marks_lost_retransmissions and loss.lost(now) and not recovery.frto:
            recovery.retransmit_lost(now)         # RACK marks outside recovery (after an RTO)
        # (per segment: the seq_diff(a, b) of seq.py inlined, ((a - b + HALF) & MASK) - HALF)
        while True:
            snd_nxt = snd.nxt
            if sb.blocks and seq_diff(snd_nxt, snd.max) < 0:
                # go-back-N after an RTO: skip what the peer SACKed (RFC 6675 §5.1)
                end = sb.sacked_end(snd_nxt)
                if end is not None:
                    snd.nxt = end
                    continue
            queued = len(buf.data) - (((snd_nxt - buf.seq + HALF) & MASK) - HALF)
            fin_pending = snd.fin_queued and queued >= 0 and seq_diff(snd_nxt, snd.fin_seq) <= 0
            if queued <= 0 and not fin_pending:
                break
            wnd = snd.wnd
            cwnd = cc.cwnd
            if recovery.dupacks and not cc.in_recovery:
                # Limited transmit (RFC 3042): one new segment per each of the first two
                # duplicate ACKs, so a small window still produces three of them.
                cwnd += min(recovery.dupacks, 2) * mss
            if cwnd < wnd:
                wnd = cwnd
            usable = (((snd.una - snd_nxt + HALF) & MASK) - HALF) + wnd
            n = queued
            if n > usable:
                n = usable if usable > 0 else 0
            if n > maxseg:
                n = maxseg
            if sb.blocks and seq_diff(snd_nxt, snd.max) < 0:
                hole = sb.next_hole(snd_nxt)
                if hole is not None and seq_diff(hole[1], snd_nxt) < n:
                    n = seq_diff(hole[1], snd_nxt)
            fin = fin_pending and n == queued
            if n == 0 and not fin:
                break
            if fin and n == 0 and usable <= 0 and snd.wnd == 0:
                break        # the FIN needs a window too; the persist timer will probe
            retrans = ((snd_nxt - snd.max) & MASK) >= HALF          # SND.NXT < SND.MAX (seq_lt)
            if n < mss and not fin and not retrans:
                if n < queued:
                    # Window-limited: SWS avoidance (RFC 1122 §4.2.3.4)
                    if n < (snd.max_wnd >> 1) or n <= 0:
                        break
                elif not c.nodelay and snd.nagle_holds(snd_nxt):
                    break    # Nagle: a small segment is already outstanding
            flags = ACK
            if n and n == queued:
                flags |= PSH
            if fin:
                flags |= FIN
            self.send(now, snd_nxt, flags, buf.view(snd_nxt, n) if n else b"")
            if retrans:
                recovery.count_retransmission(now)
            else:
                if n and not c.acks.spoke:
                    c.acks.on_data_sent(now)          # interactive mode? (delack.py)
                if not c.neg.ts_enabled:
                    c.rto.time_segment(snd_nxt, now)
            if 0 < n < mss and not retrans:
                snd.sml = (snd_nxt + n) & MASK    # Minshall: end of the last small segment
            snd.advance(snd_nxt, n + (1 if fin else 0))
            if timers.kind is not _RETRANSMIT:
                c.arm_rto(now)                   # (a persist timer gives way, unless the window is 0)
            if not retrans and timers.tlp is None:
                recovery.arm_tlp(now)
        if snd.max == snd.una and timers.kind is not _PERSIST and (
                len(buf.data) or (snd.fin_queued and seq_diff(snd.nxt, snd.fin_seq) <= 0)):
            # Unsent data, nothing in flight, and the window (zero, or too small to pass
            # the SWS test) stopped us: the persist timer probes a zero window
            # (RFC 9293 §3.8.6.1) and is the SWS override timeout (RFC 1122 §4.2.3.4).
            timers.arm(_PERSIST, now + self.persist_interval())

    # -- the persist timer ------------------------------------------------------------------------
    def persist_interval(self) -> float:
        c = self.conn
        cfg = c.config
        base = max(c.rto.base, cfg.persist_min)   # not the backed-off RTO: probing starts afresh
        return min(base * (1 << min(self.persist_backoff, 16)), cfg.persist_max)

    def window_opened(self, now: float) -> None:
        """The peer's window is open again: stop probing (RFC 9293 §3.8.6.1)."""
        c = self.conn
        c.timers.stop(_PERSIST)
        self.persist_backoff = 0
        if c.snd.max != c.snd.una:
            c.timers.arm(_RETRANSMIT, now + c.rto.rto)

    def window_closed(self, now: float) -> None:
        """The peer's window is zero while data or a FIN is queued or unacknowledged: probe it.

        The persist timer takes the slot from the retransmission timer: segments
        in flight beyond a zero window are not retransmitted (and do not count
        toward the retry limit) while the peer answers the probes; the probe is
        the first byte at SND.UNA.  When the window opens, the retransmission
        timer returns (``window_opened``)."""
        c = self.conn
        if c.timers.kind is not _PERSIST and c.state in SEND_STATES and (len(c.snd.buf) or c.snd.fin_queued):
            c.timers.arm(_PERSIST, now + self.persist_interval())

    def on_persist_timeout(self, now: float) -> BaseException | None:
        """Zero-window probe (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17): one byte beyond the window.

        Returns a TimeoutError when a peer that answers nothing has had its
        fill of probes (the connection then aborts), else None."""
        c = self.conn
        if c.state not in SEND_STATES:
            return None
        snd = c.snd
        buf = snd.buf
        una = snd.una
        if snd.wnd != 0:
            # SWS override: send what the (small) window allows, even if under the SWS bound.
            usable = seq_diff(una, snd.nxt) + snd.wnd
            avail = snd.unsent(snd.nxt)
            n = min(usable, avail, snd.segment_size)
            if n > 0 and snd.nxt == una:
                self.send(now, una, ACK | PSH, buf.view(una, n))
                snd.advance(una, n)
                if c.timers.kind is not _RETRANSMIT:
                    c.timers.arm(_RETRANSMIT, now + c.rto.rto)
            return None
        c.host.count("tcp.window_probes")
        if snd.unsent(una) > 0:
            self.send(now, una, ACK, buf.view(una, 1))
            if snd.nxt == una:
                snd.advance(una, 1)
        elif snd.fin_queued:
            self.send(now, una, ACK | FIN, b"")
            if snd.nxt == una:
                snd.advance(una, 1)
        else:
            return None
        self.persist_backoff += 1
        self.probes_unanswered += 1
        if self.probes_unanswered > c.config.data_retries:
            # RFC 1122 §4.2.2.17: probing may go on indefinitely while the peer
            # answers; a peer that answers nothing at all is dead.
            return TimeoutError(errno.ETIMEDOUT, "connection timed out (zero-window probes unanswered)")
        c.timers.arm(_PERSIST, now + self.persist_interval())
        return None

    # -- keep-alive -------------------------------------------------------------------------------
    def heard(self, now: float) -> None:
        """A segment arrived: the peer is alive; the next keep-alive probe is an idle period away."""
        c = self.conn
        self.keepalive_probes = 0
        kind = c.timers.kind
        if (kind is None or kind is _KEEPALIVE) and (c.state is ESTABLISHED or c.state is CLOSE_WAIT):
            c.timers.arm(_KEEPALIVE, now + c.keepalive_idle)

    def on_keepalive_timeout(self, now: float) -> BaseException | None:
        """Send a keep-alive probe: <SEQ=SND.UNA-1> with no data, which any live peer
        must ACK as unacceptable (RFC 1122 §4.2.3.6).  Returns a TimeoutError after
        ``keepalive_count`` unanswered probes (the connection then aborts)."""
        c = self.conn
        if not c.keepalive or (c.state is not ESTABLISHED and c.state is not CLOSE_WAIT):
            return None
        if self.keepalive_probes >= c.keepalive_count:
            c.host.count("tcp.keepalive_timeouts")
            return TimeoutError(errno.ETIMEDOUT, "connection timed out (keep-alive)")
        self.keepalive_probes += 1
        c.host.count("tcp.keepalive_probes")
        self.send(now, (c.snd.una - 1) & MASK, ACK)
        c.timers.arm(_KEEPALIVE, now + c.keepalive_interval)
        return None
