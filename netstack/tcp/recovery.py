"""Loss recovery: where a lost segment gets sent again.

THE RETRANSMISSION TIMER fires in :meth:`LossRecovery.on_retransmit_timeout`
(its value comes from rto.py, its deadline is the RETRANSMIT timer of
timers.py's exclusive slot).

  RFC 6298 §5 / RFC 9293 §3.8.1   on_retransmit_timeout: back off, go back N, retry limit
  RFC 5681 §3.2, RFC 5827         on_duplicate_ack: fast retransmit, early retransmit
  RFC 6582                        retransmit_head (NewReno partial ACK)
  RFC 6675                        sack_recovery, infer_loss_from_sack (with sack.py's scoreboard)
  RFC 8985 §7                     arm_tlp, on_tlp_timeout (tail loss probe)
  RFC 1191 §6.2                   on_path_mtu (ICMP "fragmentation needed")

A part of :class:`~netstack.tcp.connection.Connection`, composed, not
inherited: it keeps the recovery state (duplicate ACKs, the SACK
scoreboard, HighRxt, retry and retransmission counts, the TLP flag), reads
the connection's other parts (``snd``, ``rto``, ``cc``, ``timers``,
``config``, ``state``) and sends through its ``sender``.  It never fails the
connection itself: a retry limit that runs out comes back as a TimeoutError.
"""
from __future__ import annotations

import errno

from netstack.wire.tcp import ACK, FIN, PSH

from .sack import SackScoreboard
from .seq import MASK, seq_diff
from .state import CLOSE_WAIT, ESTABLISHED, SEND_STATES, SYN_RECEIVED, SYN_SENT
from .timers import Timer

_RETRANSMIT = Timer.RETRANSMIT


class LossRecovery:
    __slots__ = ("conn", "dupacks", "scoreboard", "high_rxt", "rxt_mark", "tlp_pending", "retries",
                 "retrans_segs")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.dupacks = 0                  #: duplicate ACKs since the last new ACK
        self.scoreboard = SackScoreboard()  #: what the peer SACKed (RFC 2018 / RFC 6675)
        self.high_rxt = 0                 #: RFC 6675 HighRxt: highest byte retransmitted in recovery
        self.rxt_mark = 0                 #: SND.MAX when we last retransmitted a hole
        self.tlp_pending = False          #: a tail loss probe is out, awaiting an ACK
        self.retries = 0                  #: consecutive RTO expirations
        self.retrans_segs = 0             #: segments retransmitted, all causes

    def count_retransmission(self) -> None:
        self.retrans_segs += 1
        self.conn.host.count("tcp.retrans_segs")

    def new_ack(self) -> None:
        """New data was acknowledged: the retry count and duplicate ACKs start over."""
        self.retries = 0
        self.dupacks = 0
        self.tlp_pending = False

    # -- fast retransmit --------------------------------------------------------------------------
    def retransmit_head(self, now: float) -> int:
        """Retransmit the first unacknowledged segment (fast retransmit / partial ACK / RTO).

        Returns the sequence space it covered (data + FIN)."""
        c = self.conn
        snd = c.snd
        una = snd.una
        avail = snd.unsent(una)
        n = min(avail, snd.segment_size, max(seq_diff(snd.max, una), 0))
        fin = 0
        if snd.fin_queued and n == avail and seq_diff(snd.max, snd.fin_seq) > 0:
            fin = FIN
        if n <= 0 and not fin:
            return 0
        c.sender.send(now, una, ACK | fin | (PSH if n and n == avail else 0), snd.buf.view(una, n) if n else b"")
        self.count_retransmission()
        if c.timers.kind is not _RETRANSMIT:
            c.timers.arm(_RETRANSMIT, now + c.rto.rto)
        return n + (1 if fin else 0)

    def _start_fast_recovery(self, now: float) -> None:
        c = self.conn
        c.host.count("tcp.fast_retransmits")
        c.rto.cancel_timing()
        una = c.snd.una
        self.high_rxt = (una + self.retransmit_head(now)) & MASK
        self.rxt_mark = c.snd.max
        c.timers.tlp = None

    def on_duplicate_ack(self, now: float, ack: int) -> None:
        """A duplicate ACK (RFC 5681 §2; RFC 6675 §2 with SACK): maybe fast retransmit."""
        c = self.conn
        snd = c.snd
        self.dupacks += 1
        flight = snd.in_flight
        threshold = 3
        if snd.unsent(snd.max) <= 0 or snd.wnd <= flight:
            # Early retransmit (RFC 5827 §3.1): with fewer than 4 segments outstanding
            # and nothing new to send, 3 duplicate ACKs may never come.
            segs = -(-flight // snd.mss)
            if segs < 4:
                threshold = max(segs - 1, 1)
        if c.cc.on_dup_ack(now, flight=flight, snd_max=snd.max, ack=ack, threshold=threshold):
            self._start_fast_recovery(now)

    def infer_loss_from_sack(self, now: float) -> bool:
        """RFC 6675 §5 (IsLost(HighACK+1)): more than (DupThresh-1)*SMSS bytes SACKed above
        SND.UNA means the first one is lost, even if three duplicate ACKs never came."""
        c = self.conn
        snd = c.snd
        sb = self.scoreboard
        if sb.blocks and not c.cc.in_recovery and sb.sacked_bytes > 2 * snd.mss and snd.max != snd.una:
            if c.cc.enter_recovery(now, flight=snd.in_flight, snd_max=snd.max, ack=snd.una):
                c.host.count("tcp.sack_recoveries")
                self._start_fast_recovery(now)
                return True
        return False

    # -- SACK-based recovery ----------------------------------------------------------------------
    def sack_recovery(self, now: float) -> None:
        """SACK-based loss recovery (RFC 6675 §5, simplified).

        While pipe < ssthresh: retransmit the next hole below the highest
        SACKed byte (NextSeg rule 1), else send new data (rule 2).
        """
        c = self.conn
        snd = c.snd
        sb = self.scoreboard
        una = snd.una
        buf = snd.buf
        maxseg = snd.segment_size
        send = c.sender.send
        if seq_diff(self.high_rxt, una) < 0:
            self.high_rxt = una
        if (sb.next_hole(self.high_rxt) is None and sb.next_hole(una) is not None
                and seq_diff(sb.high_sacked, self.rxt_mark) > 0):
            # Lost retransmission: data first sent after our retransmissions was SACKed,
            # yet a retransmitted hole is still open.  Retransmit the holes again
            # (the idea of Linux's tcp_mark_lost_retrans / RACK, RFC 8985 §6.2).
            c.host.count("tcp.lost_retransmits")
            self.high_rxt = una
            self.rxt_mark = snd.max
        pipe = snd.in_flight - sb.sacked_bytes - sb.lost_bytes(self.high_rxt)
        limit = c.cc.ssthresh
        while pipe < limit:
            hole = sb.next_hole(self.high_rxt)
            if hole is not None:
                a, b = hole
                n = min(seq_diff(b, a), maxseg, snd.unsent(a))
                if n <= 0:
                    break
                send(now, a, ACK, buf.view(a, n))
                self.count_retransmission()
                self.high_rxt = (a + n) & MASK
                self.rxt_mark = snd.max
                pipe += n
                continue
            snd_nxt = snd.nxt
            if snd_nxt != snd.max:
                break
            queued = snd.unsent(snd_nxt)
            fin_pending = snd.fin_pending(snd_nxt)
            usable = seq_diff(una, snd_nxt) + snd.wnd
            n = min(queued, usable, maxseg)
            if n < 0:
                n = 0
            fin = fin_pending and n == queued
            if n == 0 and not fin:
                break
            flags = ACK | (PSH if n and n == queued else 0) | (FIN if fin else 0)
            send(now, snd_nxt, flags, buf.view(snd_nxt, n) if n else b"")
            snd.nxt = snd.max = (snd_nxt + n + (1 if fin else 0)) & MASK
            pipe += n
        if c.timers.kind is not _RETRANSMIT and snd.max != snd.una:
            c.timers.arm(_RETRANSMIT, now + c.rto.rto)

    # -- tail loss probe --------------------------------------------------------------------------
    def arm_tlp(self, now: float) -> None:
        """Schedule a tail loss probe (RFC 8985 §7.2): PTO = 2*SRTT (+ the delayed-ACK
        allowance when one segment is in flight), only if it comes before the RTO."""
        c = self.conn
        t = c.timers
        srtt = c.rto.srtt
        if (not c.config.tlp or srtt is None or self.tlp_pending or c.cc.in_recovery
                or (c.state is not ESTABLISHED and c.state is not CLOSE_WAIT)):
            t.tlp = None
            return
        pto = max(2 * srtt, 0.01)
        if c.snd.in_flight <= c.snd.mss:
            pto += c.config.delack_timeout
        t.arm_tlp(now + pto)

    def on_tlp_timeout(self, now: float) -> None:
        """Send the tail loss probe (RFC 8985 §7.3): new data if the window allows,
        else the last segment again, so that the ACK it elicits (with SACK) starts
        fast recovery instead of waiting for the RTO."""
        c = self.conn
        snd = c.snd
        if (c.cc.in_recovery or snd.max == snd.una
                or (c.state is not ESTABLISHED and c.state is not CLOSE_WAIT)):
            return
        buf = snd.buf
        maxseg = snd.segment_size
        snd_nxt = snd.nxt
        self.tlp_pending = True
        c.host.count("tcp.tlp_probes")
        unsent = snd.unsent(snd_nxt)
        usable = seq_diff(snd.una, snd_nxt) + snd.wnd
        if snd_nxt == snd.max and unsent > 0 and usable > 0:
            n = min(unsent, maxseg, usable)
            c.sender.send(now, snd_nxt, ACK | (PSH if n == unsent else 0), buf.view(snd_nxt, n))
            snd.nxt = snd.max = (snd_nxt + n) & MASK
        else:
            end = snd.max
            fin = 0
            if snd.fin_queued and seq_diff(end, snd.fin_seq) > 0:
                end = snd.fin_seq
                fin = FIN
            if seq_diff(end, snd.una) <= maxseg:
                start = snd.una
            else:
                start = (end - maxseg) & MASK
            n = seq_diff(end, start)
            if n <= 0 and not fin:
                return
            c.sender.send(now, start, ACK | PSH | fin, buf.view(start, n) if n > 0 else b"")
            self.count_retransmission()
        c.timers.arm(_RETRANSMIT, now + c.rto.rto)

    # -- the retransmission timer -----------------------------------------------------------------
    def on_retransmit_timeout(self, now: float) -> BaseException | None:
        """THE RETRANSMISSION TIMER FIRED (RFC 6298 §5.4-§5.7, RFC 9293 §3.8.1).

        Retransmit the earliest unacknowledged segment, back off the RTO,
        collapse cwnd (RFC 5681 §3.1), and give up with a TimeoutError after
        the configured number of retries (RFC 9293 §3.8.3, R2): returned, for
        the connection to act on (None otherwise).
        """
        c = self.conn
        snd = c.snd
        st = c.state
        self.retries += 1
        c.rto.backoff()
        c.rto.cancel_timing()                    # Karn: never time a retransmitted segment
        if st is SYN_SENT or st is SYN_RECEIVED:
            if self.retries > c.config.syn_retries:
                c.host.count("tcp.timeouts")
                if st is SYN_SENT:
                    c.host.count("tcp.attempt_fails")
                return TimeoutError(errno.ETIMEDOUT, "connection timed out (no SYN-ACK)" if st is SYN_SENT
                                    else "handshake timed out")
            c.syn_retransmitted = True
            self.count_retransmission()
            c.sender.send_syn(now, synack=st is SYN_RECEIVED)
            return None
        if snd.max == snd.una:
            return None
        if self.retries > c.config.data_retries:
            c.host.count("tcp.timeouts")
            return TimeoutError(errno.ETIMEDOUT, "connection timed out (retransmission limit)")
        c.host.count("tcp.rto_expirations")
        c.cc.on_timeout(now, flight=snd.in_flight, snd_max=snd.max)
        self.dupacks = 0
        if self.retries >= 2:
            self.scoreboard.clear()              # the peer may have reneged (RFC 2018 §8)
        una = snd.nxt = snd.una                  # go back N (RFC 5681 §3.1 loss window)
        c.sender.output(now)
        if snd.nxt == una:
            # Nothing was sendable (e.g. the window shrank): retransmit the head anyway.
            snd.nxt = (una + self.retransmit_head(now)) & MASK
        c.timers.arm(_RETRANSMIT, now + c.rto.rto)
        return None

    # -- path MTU ---------------------------------------------------------------------------------
    def on_path_mtu(self, mtu: int, now: float) -> None:
        """Path MTU discovery (RFC 1191 §6.2): a router said our segments are too big.  With the
        stack, ``mtu`` has passed the IP layer's floor and rate limit (netstack.ip.pmtu, RFC 8201)."""
        c = self.conn
        snd = c.snd
        if mtu < 68:
            return
        mss = mtu - 40 - c.neg.option_overhead()
        if mss >= snd.mss:
            return
        snd.mss = max(mss, 8)
        if snd.max_segment and snd.max_segment > snd.mss:
            snd.max_segment = None
        c.cc.set_mss(snd.mss)
        if c.state in SEND_STATES and snd.max != snd.una:
            # the too-big segment was dropped: resend from SND.UNA at the new size (not a loss signal)
            snd.nxt = snd.una
            c.rto.cancel_timing()
            c.sender.output(now)
