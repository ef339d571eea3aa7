"""Loss recovery: where a lost segment gets sent again.

THE RETRANSMISSION TIMER fires in :meth:`LossRecovery.on_retransmit_timeout`
(its value comes from rto.py, its deadline is the RETRANSMIT timer of
timers.py's exclusive slot).

  RFC 6298 §5 / RFC 9293 §3.8.1   on_retransmit_timeout: back off, go back N, retry limit
  RFC 5681 §3.2, RFC 5827         on_duplicate_ack: fast retransmit, early retransmit
  RFC 6582                        retransmit_head (NewReno partial ACK)
  RFC 8985 §6 / RFC 6675          after_ack, on_reorder_timeout: loss detection behind one
                                  interface (rack.py: RACK, the default, or RFC 6675's IsLost)
  RFC 6675, RFC 6937              sack_recovery: retransmit what is lost, then new data,
                                  as Proportional Rate Reduction allows (prr.py)
  RFC 8985 §7                     arm_tlp, on_tlp_timeout (tail loss probe)
  RFC 8985 §7.4                   tlp_ack: a probe that repaired a loss reduces cwnd once
  RFC 2883 §4                     take_dsack: D-SACK blocks on receipt
  RFC 3522, RFC 3708, RFC 4015    check_spurious, take_dsack, _undo: spurious retransmissions
                                  found by timestamps (Eifel) or D-SACK, and undone
  RFC 5682                        on_retransmit_timeout + frto_ack: F-RTO without timestamps
  RFC 1191 §6.2                   on_path_mtu (ICMP "fragmentation needed")

Each congestion or recovery event (fast retransmit, SACK recovery, the end of
recovery, an RTO, a tail loss probe, an undo) is reported as a typed
:class:`~netstack.tcp.events.RecoveryEvent` through the host's
``recovery_event`` (_report); only recovery paths do this, never the
per-segment path.

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

from . import rack as _rack
from .events import RecoveryEvent, RecoveryKind, UndoMethod
from .prr import Prr
from .sack import SackScoreboard
from .seq import MASK, seq_diff
from .state import CLOSE_WAIT, ESTABLISHED, SEND_STATES, SYN_RECEIVED, SYN_SENT
from .timers import Timer

_RETRANSMIT = Timer.RETRANSMIT


class LossRecovery:
    __slots__ = ("conn", "dupacks", "scoreboard", "high_rxt", "rxt_mark", "tlp_pending", "retries",
                 "retrans_segs", "loss", "prr", "undo_marker", "undo_retrans", "rexmit_time", "episode",
                 "eifel_checked", "dsacks", "undos", "spurious_rtos", "frto", "frto_recover",
                 "recovering", "tlp_end", "tlp_retrans")

    def __init__(self, conn) -> None:
        self.conn = conn
        #: loss detection with SACK (rack.py): RACK-TLP or RFC 6675, by ``config.loss_detection``
        self.loss = _rack.create(conn.config.loss_detection, conn.config.mss)
        self.prr = Prr()                  #: RFC 6937 in SACK recovery
        # Undo of a spurious recovery or RTO (RFC 3522 / RFC 3708 / RFC 4015), per episode:
        self.episode = None               #: RecoveryKind | None: the reduction that may be undone
        self.undo_marker = 0              #: SND.UNA when the episode began
        self.undo_retrans = 0             #: its retransmissions not (yet) reported duplicate by D-SACK
        self.rexmit_time = None           #: when its first retransmission went out (Eifel)
        self.eifel_checked = False        #: the first ACK after that retransmission was looked at
        self.dsacks = 0                   #: D-SACK blocks received
        self.undos = 0                    #: episodes undone
        self.spurious_rtos = 0            #: of which retransmission timeouts
        self.frto = 0                     #: F-RTO (RFC 5682) step awaiting an ACK: 0, 2 or 3
        self.frto_recover = 0
        self.dupacks = 0                  #: duplicate ACKs since the last new ACK
        self.scoreboard = SackScoreboard()  #: what the peer SACKed (RFC 2018 / RFC 6675)
        self.high_rxt = 0                 #: RFC 6675 HighRxt: highest byte retransmitted in recovery
        self.rxt_mark = 0                 #: SND.MAX when we last retransmitted a hole
        self.tlp_pending = False          #: a tail loss probe is out, awaiting an ACK
        self.tlp_end = None               #: RFC 8985 TLP.end_seq: SND.NXT when the probe went; None: no episode
        self.tlp_retrans = False          #: TLP.is_retrans: the probe resent data (else it was new data)
        self.retries = 0                  #: consecutive RTO expirations
        self.retrans_segs = 0             #: segments retransmitted, all causes
        self.recovering = False           #: a fast recovery was reported entered, not yet exited

    def _report(self, now: float, kind: RecoveryKind, prior_cwnd: int,
                undo: UndoMethod | None = None, undone: RecoveryKind | None = None) -> None:
        """Tell the host about a congestion or recovery event (RecoveryEvent)."""
        c = self.conn
        cc = c.cc
        snd = c.snd
        c.host.recovery_event(c, RecoveryEvent(now, kind, cc.cwnd, cc.ssthresh, prior_cwnd, snd.una, snd.max,
                                               c.rto.rto, self.retries, cc.name, undo, undone))

    def recovery_ack(self, now: float) -> None:
        """An ACK of new data while a reported recovery ran, not a partial ACK: if the
        congestion control left recovery (a full ACK, RFC 6582 §3.2 step 3), report it."""
        if not self.conn.cc.in_recovery:
            self.recovering = False
            self._report(now, RecoveryKind.RECOVERY_EXIT, self.conn.cc.cwnd)

    def count_retransmission(self, now: float | None = None) -> None:
        self.retrans_segs += 1
        self.conn.host.count("tcp.retrans_segs")
        if self.episode is not None:
            self.undo_retrans += 1
            if self.rexmit_time is None and now is not None:
                self.rexmit_time = now

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
        self.count_retransmission(now)
        if c.cc.in_recovery:
            self.prr.on_sent(n)
        c.arm_rto(now)
        return n + (1 if fin else 0)

    def _start_fast_recovery(self, now: float, prior_cwnd: int, kind: RecoveryKind,
                             retransmit: bool = True) -> None:
        """Recovery began (the congestion control agreed): PRR starts, an undo episode
        opens, and (unless RACK's marks lead) the first unacknowledged segment goes again."""
        c = self.conn
        c.host.count("tcp.fast_retransmits")
        c.rto.cancel_timing()
        una = c.snd.una
        self.prr.start(c.snd.in_flight)
        self._begin_episode(kind)
        self.frto = 0
        self.high_rxt = una
        if retransmit:
            self.high_rxt = (una + self.retransmit_head(now)) & MASK
        self.rxt_mark = c.snd.max
        c.timers.tlp = None
        self.tlp_end = None                  # the recovery's reduction answers the loss (RFC 8985 §7.4)
        self.recovering = True
        self._report(now, kind, prior_cwnd)

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
        if self.loss.name == "rack" and self.scoreboard.blocks:
            return      # RACK decides from the SACK blocks, not by counting (RFC 8985 §6)
        cwnd = c.cc.cwnd
        if c.cc.on_dup_ack(now, flight=flight, snd_max=snd.max, ack=ack, threshold=threshold):
            self._start_fast_recovery(now, cwnd, RecoveryKind.FAST_RETRANSMIT)

    # -- loss detection (rack.py) -----------------------------------------------------------------
    def after_ack(self, now: float, delivered: int, new_sack: bool) -> bool:
        """An ACK was processed (SND.UNA and the scoreboard updated; ``delivered``: bytes
        cumulatively ACKed + newly SACKed).  With SACK, the loss detection looks at it
        and may start recovery; PRR counts the delivery.  True: output is due."""
        c = self.conn
        if not c.neg.sack_ok:
            return False
        snd = c.snd
        cc = c.cc
        ld = self.loss
        in_rec = cc.in_recovery
        ld.on_ack(now, snd.una, self.scoreboard, new_sack, c.rto.srtt, in_rec)
        c.timers.reo = ld.deadline
        if in_rec:
            self.prr.on_ack(delivered)
            return delivered > 0 or ld.lost(now)
        if not ld.lost(now):
            return False
        return self._maybe_recover(now, delivered)

    def _maybe_recover(self, now: float, delivered: int = 0) -> bool:
        c = self.conn
        snd = c.snd
        ld = self.loss
        if c.cc.in_recovery or self.frto or snd.max == snd.una or not ld.lost(now):
            return False
        cwnd = c.cc.cwnd
        if c.cc.enter_recovery(now, flight=snd.in_flight, snd_max=snd.max, ack=snd.una):
            c.host.count("tcp.sack_recoveries")
            self._start_fast_recovery(now, cwnd, RecoveryKind.SACK_RECOVERY, retransmit=ld.name != "rack")
            self.prr.on_ack(delivered)           # RFC 6937: the ACK that starts recovery counts
            return True
        return False

    def retransmit_lost(self, now: float) -> None:
        """Outside fast recovery (after a timeout, or while the congestion control declines
        a second reduction for the same window, RFC 6582 §4.1), segments RACK marks lost
        still go again, first, as cwnd allows (RFC 8985 §6.3; Linux's Loss state)."""
        c = self.conn
        snd = c.snd
        if snd.wnd == 0:
            return                               # a closed window: the persist probes go instead
        ld = self.loss
        sb = self.scoreboard
        pipe = snd.in_flight - sb.sacked_bytes - ld.lost_bytes(snd.una)
        cwnd = c.cc.cwnd
        maxseg = snd.segment_size
        while pipe < cwnd:
            hole = ld.next_lost(snd.una)
            if hole is None:
                break
            a, b = hole
            avail = snd.unsent(a)
            n = min(seq_diff(b, a), maxseg, avail)
            if n <= 0:
                break
            flags = ACK
            if n == avail:
                flags |= PSH
                if snd.fin_queued and seq_diff(snd.max, snd.fin_seq) > 0:
                    flags |= FIN                 # the FIN went with this data: again with it
            c.sender.send(now, a, flags, snd.buf.view(a, n))
            self.count_retransmission(now)
            pipe += n
        if snd.max != snd.una:
            c.arm_rto(now)

    def on_reorder_timeout(self, now: float) -> None:
        """RACK's reordering timer (RFC 8985 §6.2 step 5): look again; recover if now lost."""
        c = self.conn
        ld = self.loss
        ld.on_reorder_timeout(now)
        c.timers.reo = ld.deadline
        if c.cc.in_recovery or self._maybe_recover(now):
            c.sender.output(now)

    # -- spurious retransmissions (RFC 2883, RFC 3522, RFC 3708, RFC 4015, RFC 5682) --------------
    def _begin_episode(self, kind: RecoveryKind) -> None:
        """A reduction that may later be found spurious: remember where it began."""
        if self.episode is not None and kind is RecoveryKind.RTO and self.conn.snd.una == self.undo_marker:
            return                       # a further backoff of the same episode
        self.episode = kind
        self.undo_marker = self.conn.snd.una
        self.undo_retrans = 0
        self.rexmit_time = None
        self.eifel_checked = False

    def take_dsack(self, blocks, ack: int, now: float):
        """RFC 2883 §4: the first SACK block is a D-SACK if it lies below the cumulative ACK
        or inside the second block.  Counts it, lets the loss detection widen its reordering
        window, and undoes the episode once every retransmission of it was reported
        duplicate (RFC 3708 §3).  Returns the blocks that are proper SACK information."""
        first = blocks[0]
        left, right = first
        dup = seq_diff(right, ack) <= 0 and seq_diff(right, left) > 0
        if not dup and len(blocks) > 1:
            l2, r2 = blocks[1]
            dup = seq_diff(left, l2) >= 0 and seq_diff(right, r2) <= 0
        if not dup:
            return blocks
        c = self.conn
        self.dsacks += 1
        c.host.count("tcp.in.dsack")
        self.loss.on_dsack()
        if (self.episode is not None and self.undo_retrans > 0
                and seq_diff(left, self.undo_marker) >= 0 and seq_diff(right, c.snd.max) <= 0):
            self.undo_retrans -= 1
            if self.undo_retrans == 0:
                self._undo(now, UndoMethod.DSACK)
        return blocks[1:]

    def check_spurious(self, now: float, ecr) -> None:
        """The first ACK of new data after the episode's first retransmission: Eifel
        detection (RFC 3522 §3.2): it echoes a timestamp older than that retransmission,
        so it was sent for the original transmission and the retransmission was spurious."""
        if self.episode is None or self.eifel_checked or self.rexmit_time is None:
            return
        self.eifel_checked = True
        c = self.conn
        if ecr and c.neg.ts_enabled and seq_diff(ecr, c.neg.tsval(self.rexmit_time)) < 0:
            self._undo(now, UndoMethod.EIFEL)

    def _undo(self, now: float, how: UndoMethod) -> None:
        """The Eifel response (RFC 4015 §3.2): the reduction was spurious; restore cwnd and
        ssthresh, forget the loss marks, and after a timeout resume with new data instead of
        resending what arrived (SND.NXT = SND.MAX)."""
        c = self.conn
        kind = self.episode
        self.episode = None
        self.frto = 0
        cwnd = c.cc.cwnd
        if not c.cc.undo(now):
            return
        self.undos += 1
        self.recovering = False
        c.host.count(f"tcp.undo.{how.value}")
        if kind is RecoveryKind.RTO:
            self.spurious_rtos += 1
            c.host.count("tcp.spurious_rtos")
            snd = c.snd
            if seq_diff(snd.nxt, snd.max) < 0:
                snd.nxt = snd.max
        self.loss.undo_marks()
        self.high_rxt = c.snd.una
        self._report(now, RecoveryKind.UNDO, cwnd, how, kind)

    def frto_ack(self, now: float, acked: int) -> bool:
        """F-RTO (RFC 5682 §2) after a timeout, for peers without timestamps.  True: the
        ACK was handled here (go-back-N was started or new data sent)."""
        c = self.conn
        snd = c.snd
        step = self.frto
        if acked <= 0 or seq_diff(snd.una, self.frto_recover) >= 0:
            # 2a / 3a: a duplicate ACK (or everything acknowledged): the timeout was
            # genuine: conventional recovery, go back N (3a: cwnd 3 SMSS at most).
            self.frto = 0
            if step == 3 and c.cc.cwnd > 3 * snd.mss:
                c.cc.cwnd = 3 * snd.mss
            if acked <= 0 and snd.max != snd.una:
                snd.nxt = snd.una
                c.sender.output(now)
                return True
            return False
        if step == 2:
            # 2b: new data acknowledged: send up to two new segments and look at the next ACK.
            if not snd.unsent(snd.max) or snd.wnd <= seq_diff(snd.max, snd.una):
                self.frto = 0                       # nothing new to send: conventional recovery
                snd.nxt = snd.una
                c.sender.output(now)
                return True
            self.frto = 3
            cwnd = c.cc.cwnd
            c.cc.cwnd = snd.in_flight + 2 * snd.mss
            c.sender.output(now)
            c.cc.cwnd = cwnd
            return True
        # 3b: new data acknowledged again: the timeout was spurious.
        self.frto = 0
        c.host.count("tcp.frto_spurious")
        self._undo(now, UndoMethod.FRTO)
        return False

    # -- SACK-based recovery ----------------------------------------------------------------------
    def sack_recovery(self, now: float) -> None:
        """SACK-based loss recovery (RFC 6675 §5, simplified).

        While pipe < ssthresh: retransmit the next hole below the highest
        SACKed byte (NextSeg rule 1), else send new data (rule 2).
        """
        c = self.conn
        snd = c.snd
        if snd.wnd == 0:
            return                               # a closed window: the persist probes go instead
        sb = self.scoreboard
        una = snd.una
        buf = snd.buf
        maxseg = snd.segment_size
        send = c.sender.send
        if seq_diff(self.high_rxt, una) < 0:
            self.high_rxt = una
        ld = self.loss
        if (not ld.marks_lost_retransmissions and sb.next_hole(self.high_rxt) is None
                and sb.next_hole(una) is not None and seq_diff(sb.high_sacked, self.rxt_mark) > 0):
            # RFC 6675 mode, a lost retransmission: data first sent after our retransmissions
            # was SACKed, yet a retransmitted hole is still open.  Retransmit the holes again
            # (the idea of Linux's tcp_mark_lost_retrans; RACK finds these by time itself).
            c.host.count("tcp.lost_retransmits")
            self.high_rxt = una
            self.rxt_mark = snd.max
        pipe = snd.in_flight - sb.sacked_bytes - ld.lost_bytes(self.high_rxt)
        prr = self.prr
        budget = prr.budget(pipe, c.cc.ssthresh, snd.mss)     # RFC 6937 sndcnt
        while budget > 0:
            hole = ld.next_lost(self.high_rxt)
            if hole is not None:
                a, b = hole
                n = min(seq_diff(b, a), maxseg, snd.unsent(a))
                if n <= 0:
                    break
                send(now, a, ACK, buf.view(a, n))
                self.count_retransmission(now)
                self.high_rxt = (a + n) & MASK
                self.rxt_mark = snd.max
                prr.on_sent(n)
                budget -= n
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
            prr.on_sent(n)
            budget -= n
        if snd.max != snd.una:
            c.arm_rto(now)

    # -- tail loss probe --------------------------------------------------------------------------
    def arm_tlp(self, now: float) -> None:
        """Schedule a tail loss probe (RFC 8985 §7.2): PTO = 2*SRTT (+ the delayed-ACK
        allowance when one segment is in flight), only if it comes before the RTO."""
        c = self.conn
        t = c.timers
        srtt = c.rto.srtt
        if (not c.config.tlp or srtt is None or self.tlp_pending or c.cc.in_recovery
                or self.tlp_end is not None
                or (c.state is not ESTABLISHED and c.state is not CLOSE_WAIT)):
            t.tlp = None                     # (one probe per episode: RFC 8985 §7.3)
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
            self.tlp_retrans = False
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
            self.count_retransmission(now)
            self.tlp_retrans = True
        self.tlp_end = snd.max               # TLP.end_seq = SND.NXT after the probe (RFC 8985 §7.3)
        c.timers.arm(_RETRANSMIT, now + c.rto.rto)
        self._report(now, RecoveryKind.TLP, c.cc.cwnd)

    def tlp_ack(self, now: float, ack: int, dsack: bool, pure_dup: bool) -> None:
        """Was a loss repaired by the probe? (RFC 8985 §7.4.2, as Linux's tcp_process_tlp_ack.)

        Called for every acceptable ACK while an episode is open (``tlp_end`` set).  An ACK
        below TLP.end_seq says nothing yet.  A probe of new data ends the episode.  A D-SACK
        (``dsack``), or a pure duplicate ACK at TLP.end_seq (``pure_dup``, a receiver
        without D-SACK), says both the original and the probe arrived: no loss.  An ACK
        beyond TLP.end_seq without either says the probe filled a hole the original left:
        the congestion control reduces the window once, as for a loss (RFC 5681 §3.1,
        Linux's CWR), and the event is reported (``tlp-repair``)."""
        end = self.tlp_end
        if end is None:
            return
        d = seq_diff(ack, end)
        if d < 0:
            return
        if not self.tlp_retrans or dsack:
            self.tlp_end = None
            return
        if d > 0:
            self.tlp_end = None
            c = self.conn
            cc = c.cc
            if cc.in_recovery:               # a recovery under way already answers the loss
                return
            c.host.count("tcp.tlp_recoveries")
            prior = cc.cwnd
            cc.on_loss(now, flight=c.snd.in_flight)
            self._report(now, RecoveryKind.TLP_REPAIR, prior)
        elif pure_dup:
            self.tlp_end = None

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
            self.count_retransmission(now)
            c.sender.send_syn(now, synack=st is SYN_RECEIVED)
            self._report(now, RecoveryKind.RTO, c.cc.cwnd)
            return None
        if snd.max == snd.una:
            return None
        if self.retries > c.config.data_retries:
            c.host.count("tcp.timeouts")
            return TimeoutError(errno.ETIMEDOUT, "connection timed out (retransmission limit)")
        c.host.count("tcp.rto_expirations")
        self.tlp_end = None                      # the timeout's own reduction answers the loss
        self._begin_episode(RecoveryKind.RTO)
        cwnd = c.cc.cwnd
        c.cc.on_timeout(now, flight=snd.in_flight, snd_max=snd.max)
        self.recovering = False                  # the timeout ended any fast recovery
        self._report(now, RecoveryKind.RTO, cwnd)
        self.dupacks = 0
        if self.retries >= 2:
            self.scoreboard.clear()              # the peer may have reneged (RFC 2018 §8)
        if c.neg.sack_ok:
            self.loss.on_timeout(now)            # RFC 8985 §6.3
            c.timers.reo = None
        una = snd.una
        if (self.retries == 1 and c.config.frto and not c.neg.ts_enabled
                and snd.unsent(snd.max) > 0):
            # F-RTO (RFC 5682 §2 step 1): retransmit only the first segment; the next two
            # ACKs tell whether the timeout was spurious (without timestamps Eifel cannot).
            self.frto = 2
            self.frto_recover = snd.max
            n = self.retransmit_head(now)
            if n:
                c.timers.arm(_RETRANSMIT, now + c.rto.rto)
                return None
            self.frto = 0
        self.frto = 0
        if c.neg.sack_ok and self.loss.marks_lost_retransmissions:
            # RACK (RFC 8985 §6.3): every segment not SACKed is now marked lost, and the
            # marks lead the retransmissions (Sender.output -> retransmit_lost), as cwnd allows.
            before = self.retrans_segs
            c.sender.output(now)
            if self.retrans_segs == before:
                self.retransmit_head(now)
            c.timers.arm(_RETRANSMIT, now + c.rto.rto)
            return None
        snd.nxt = una                            # go back N (RFC 5681 §3.1 loss window)
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
