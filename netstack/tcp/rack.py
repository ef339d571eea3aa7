"""Loss detection behind one small interface: RACK-TLP (RFC 8985) or RFC 6675.

A connection with SACK asks its :class:`LossDetection` which outstanding
bytes are lost; loss recovery (recovery.py) retransmits them under the
congestion control's budget (PRR, prr.py).  Without SACK, duplicate ACKs
decide (RFC 5681 / RFC 6582 in recovery.py) and neither is used.

The interface (:class:`LossDetection`, a Protocol):

  on_transmit(seq, n, now, retransmission)   a data segment [seq, seq+n) went out
  on_ack(now, ack, scoreboard, newly_sacked, srtt, in_recovery)
                                             an ACK was processed (SND.UNA moved to
                                             ``ack``; the scoreboard holds its SACK blocks)
  on_dsack()                                 the peer reported a duplicate (RFC 2883)
  lost(now) -> bool                          bytes are deemed lost and not yet retransmitted
  next_lost(start) -> (a, b) | None          the first such range at or after ``start``
  lost_bytes(start) -> int                   their total (for RFC 6675's pipe)
  on_timeout(now)                            the RTO fired (RFC 8985 §6.3)
  undo_marks()                               the losses were spurious (recovery undone)
  deadline                                   when :meth:`on_reorder_timeout` is due, or None
  on_reorder_timeout(now)                    RACK's reordering timer (RFC 8985 §6.2 step 5)
  marks_lost_retransmissions                 True if it finds lost retransmissions itself
                                             (RACK; then its marks also lead after an RTO)

:class:`Rack`, RFC 8985 §6: time-based.  Every data segment sent is
remembered with its transmission time.  An ACK delivers segments (by the
cumulative ACK or a SACK block); the most recently *sent* of them sets
RACK.xmit_ts and RACK.rtt ("most recently" by transmission order, which also
orders sends made within one tick of the clock: RFC 8985's RACK_sent_after
breaks such ties by sequence number, which misorders a retransmission).  A segment sent before it and still not
delivered is lost once

    seg.xmit_ts + RACK.rtt + RACK.reo_wnd <= now

(§6.2 step 5), else the reordering timer fires when that comes.  RACK.reo_wnd
is 0 until reordering has been seen (a segment delivered below the highest
SACKed one without having been retransmitted, §6.2 step 3), then
min(reo_wnd_mult * min_RTT / 4, SRTT); each round trip with a D-SACK widens
it by one more min_RTT / 4 (up to SRTT) for the next 16 recoveries (§6.2
step 4).  Lost retransmissions are found by the same rule: a retransmission
carries its new transmission time.

:class:`Rfc6675`: the conservative rule kept as the alternative: loss once
more than (DupThresh - 1) * SMSS bytes are SACKed above SND.UNA (IsLost,
RFC 6675 §4), and then every hole below the highest SACKed byte is lost.
"""
from __future__ import annotations

from collections import deque
from typing import Protocol

from .seq import HALF, MASK, seq_diff

DUPTHRESH = 3
REO_WND_PERSIST = 16          #: recoveries a D-SACK-widened reo_wnd lasts (RFC 8985 §6.2 step 4)


class LossDetection(Protocol):
    name: str
    deadline: float | None
    #: finds lost retransmissions itself (RACK); else recovery.py's HighRxt rule does
    marks_lost_retransmissions: bool

    def on_transmit(self, seq: int, n: int, now: float, retransmission: bool) -> None: ...
    def on_ack(self, now: float, ack: int, scoreboard, newly_sacked: bool, srtt: float | None,
               in_recovery: bool) -> None: ...
    def on_dsack(self) -> None: ...
    def lost(self, now: float) -> bool: ...
    def next_lost(self, start: int) -> tuple[int, int] | None: ...
    def lost_bytes(self, start: int) -> int: ...
    def on_timeout(self, now: float) -> None: ...
    def on_reorder_timeout(self, now: float) -> None: ...
    def undo_marks(self) -> None: ...
    def clear(self) -> None: ...


class Rfc6675:
    """RFC 6675's IsLost over the SACK scoreboard (recovery.py keeps HighRxt)."""

    name = "rfc6675"
    deadline = None
    marks_lost_retransmissions = False

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.sb = None

    def on_transmit(self, seq, n, now, retransmission) -> None:
        pass

    def on_ack(self, now, ack, scoreboard, newly_sacked, srtt, in_recovery) -> None:
        self.sb = scoreboard

    def on_dsack(self) -> None:
        pass

    def lost(self, now) -> bool:
        sb = self.sb
        return sb is not None and bool(sb.blocks) and sb.sacked_bytes > (DUPTHRESH - 1) * self.mss

    def next_lost(self, start):
        return self.sb.next_hole(start) if self.sb is not None else None

    def lost_bytes(self, start) -> int:
        return self.sb.lost_bytes(start) if self.sb is not None else 0

    def on_timeout(self, now) -> None:
        pass

    def on_reorder_timeout(self, now) -> None:
        pass

    def undo_marks(self) -> None:
        pass

    def clear(self) -> None:
        pass


class Segment:
    """Data as sent: [start, end), when, and what became of it.  One record holds a burst
    (segments sent back to back at one time) until an ACK, a SACK block or a
    retransmission cuts it; its pieces keep the burst's transmission number."""

    __slots__ = ("start", "end", "xmit", "order", "retrans", "sacked", "lost")

    def __init__(self, start: int, end: int, xmit: float, order: int) -> None:
        self.start = start
        self.end = end
        self.xmit = xmit
        self.order = order        #: transmission number: orders sends made within one clock tick
        self.retrans = False
        self.sacked = False
        self.lost = False

    def __repr__(self) -> str:
        flags = "".join(c for c, f in (("R", self.retrans), ("S", self.sacked), ("L", self.lost)) if f)
        return f"<seg {self.start}-{self.end} @{self.xmit:.3f} {flags}>"


class Rack:
    """RACK (RFC 8985 §6) over a log of the segments in flight."""

    name = "rack"
    marks_lost_retransmissions = True

    __slots__ = ("segs", "xmit_ts", "xmit_order", "tx_count", "end_seq", "rtt", "min_rtt", "fack", "reordering_seen",
                 "reo_wnd_mult", "reo_wnd_persist", "dsack_round", "dsack_pending", "deadline",
                 "_lost", "_retrans_out", "_srtt", "_in_recovery", "_sacked", "reordering", "mss",
                 "_sacked_bytes")

    def __init__(self, mss: int = 1460) -> None:
        self.mss = mss
        self._sacked_bytes = 0
        #: in sequence order, from SND.UNA; one record per burst (segments sent at one time),
        #: cut where a SACK block, an ACK or a retransmission needs it
        self.segs: deque[Segment] = deque()
        self.xmit_ts: float | None = None     #: RACK.xmit_ts: newest transmission delivered
        self.xmit_order = -1                  #: its transmission number (RACK_sent_after's order)
        self.tx_count = 0                     #: transmissions so far
        self.end_seq = 0                      #: RACK.end_seq
        self.rtt = 0.0                        #: RACK.rtt: the RTT of that delivery
        self.min_rtt: float | None = None     #: RACK.min_RTT
        self.fack: int | None = None          #: RACK.fack: highest sequence delivered
        self.reordering_seen = False          #: RACK.reordering_seen
        self.reordering = 0                   #: deliveries seen out of order (for info())
        self.reo_wnd_mult = 1                 #: RACK.reo_wnd_mult
        self.reo_wnd_persist = 0              #: recoveries left with the widened window
        self.dsack_round: int | None = None   #: RACK.dsack_round (SND.MAX when last widened)
        self.dsack_pending = False
        self.deadline: float | None = None    #: the reordering timer
        self._lost = 0                        #: bytes marked lost, not yet retransmitted
        self._retrans_out = 0                 #: segments retransmitted and not yet delivered
        self._sacked = 0                      #: segments SACKed
        self._srtt: float | None = None
        self._in_recovery = False

    def clear(self) -> None:
        self.segs.clear()
        self._lost = self._retrans_out = self._sacked = 0
        self.deadline = None

    # -- transmissions ------------------------------------------------------------------------------
    def on_transmit(self, seq: int, n: int, now: float, retransmission: bool) -> None:
        """A data segment went out (RFC 8985 §6.1: remember its transmission time)."""
        segs = self.segs
        end = (seq + n) & MASK
        if not retransmission:
            if segs and ((seq - segs[-1].end) & MASK) >= HALF:
                retransmission = True          # (a resend of the tail, e.g. after a window probe)
            else:
                if segs:
                    last = segs[-1]
                    if last.xmit == now and last.end == seq and not (last.retrans or last.sacked or last.lost):
                        last.end = end          # sent in the same burst: one record (split later if need be)
                        return
                self.tx_count += 1
                segs.append(Segment(seq, end, now, self.tx_count))
                return
        # a retransmission: the segments it covers get the new time; split at its edges
        i = 0
        for s in segs:
            if seq_diff(s.end, seq) > 0:
                break
            i += 1
        while i < len(segs):
            s = segs[i]
            if seq_diff(s.start, end) >= 0:
                break
            if seq_diff(s.start, seq) < 0:          # split off the part before
                self._split(i, seq)
                i += 1
                continue
            if seq_diff(s.end, end) > 0:             # split off the part after
                self._split(i, end)
            if not s.sacked:
                if s.lost:
                    s.lost = False
                    self._lost -= seq_diff(s.end, s.start)
                if not s.retrans:
                    self._retrans_out += 1
                s.retrans = True
                s.xmit = now
                self.tx_count += 1
                s.order = self.tx_count
            i += 1

    def _split(self, i: int, at: int) -> None:
        """Cut segment ``i`` in two at ``at`` (inside it); both halves keep its state."""
        s = self.segs[i]
        head = Segment(s.start, at, s.xmit, s.order)
        head.retrans, head.sacked, head.lost = s.retrans, s.sacked, s.lost
        s.start = at
        self.segs.insert(i, head)
        if s.sacked:
            self._sacked += 1
        elif s.retrans:
            self._retrans_out += 1

    # -- acknowledgements ---------------------------------------------------------------------------
    def _deliver(self, s: Segment, now: float) -> None:
        """RFC 8985 §6.2 steps 2 and 3 for one delivered segment."""
        rtt = now - s.xmit
        if s.retrans:
            self._retrans_out -= 1
            # Step 2: a delivery of a retransmission may be the original's; use it only if
            # its RTT is no shorter than the minimum (else the ACK is the original's).
            if self.min_rtt is not None and rtt < self.min_rtt:
                return
        elif rtt > 0 and (self.min_rtt is None or rtt < self.min_rtt):
            self.min_rtt = rtt
        if s.order > self.xmit_order or (s.order == self.xmit_order and seq_diff(s.end, self.end_seq) > 0):
            # RACK_sent_after (by transmission order; within one burst by sequence)
            self.xmit_ts = s.xmit
            self.xmit_order = s.order
            self.end_seq = s.end
            self.rtt = rtt
        # Step 3: reordering
        fack = self.fack
        if fack is None or seq_diff(s.end, fack) > 0:
            self.fack = s.end
        elif not s.retrans:
            self.reordering_seen = True
            self.reordering += 1

    def on_ack(self, now: float, ack: int, scoreboard, newly_sacked: bool, srtt, in_recovery: bool) -> None:
        self._srtt = srtt
        if in_recovery and not self._in_recovery and self.reo_wnd_persist > 0:
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist == 0:
                self.reo_wnd_mult = 1
        self._in_recovery = in_recovery
        segs = self.segs
        if not (self._retrans_out or self._sacked or self._lost or scoreboard.blocks or self.dsack_pending):
            # The common case, nothing retransmitted, SACKed or lost: the segments the
            # cumulative ACK covers were sent in order, so the last of them is the most
            # recently sent and has the smallest RTT; it alone updates RACK (§6.2 step 2).
            last = None
            while segs and ((ack - segs[0].end) & MASK) < HALF:
                last = segs.popleft()
            if segs and ((segs[0].start - ack) & MASK) >= HALF:
                segs[0].start = ack
            if last is not None:
                self._deliver(last, now)
            self.deadline = None
            return
        while segs and seq_diff(segs[0].end, ack) <= 0:      # cumulatively acknowledged
            s = segs.popleft()
            if s.lost:
                self._lost -= seq_diff(s.end, s.start)
            if s.sacked:
                self._sacked -= 1
            else:
                self._deliver(s, now)
        if segs and seq_diff(segs[0].start, ack) < 0:
            s = segs[0]
            if s.lost:
                self._lost -= seq_diff(ack, s.start)
            s.start = ack
        self._sacked_bytes = scoreboard.sacked_bytes
        if newly_sacked and scoreboard.blocks:
            blocks = scoreboard.blocks
            bi = 0
            nb = len(blocks)
            i = 0
            while i < len(segs):
                s = segs[i]
                if s.sacked:
                    i += 1
                    continue
                while bi < nb and seq_diff(blocks[bi][1], s.start) <= 0:
                    bi += 1
                if bi == nb:
                    break
                l, r = blocks[bi]
                if seq_diff(l, s.end) >= 0:            # the block starts beyond this record
                    i += 1
                    continue
                if seq_diff(l, s.start) > 0:           # a record of one burst, SACKed in part:
                    self._split(i, l)                  # cut it at the block's edges
                    i += 1
                    continue
                if seq_diff(s.end, r) > 0:
                    self._split(i, r)
                    s = segs[i]
                s.sacked = True
                self._sacked += 1
                if s.lost:
                    s.lost = False
                    self._lost -= seq_diff(s.end, s.start)
                self._deliver(s, now)
                i += 1
        if self.dsack_pending:
            # Step 4: at most one widening per round trip (RACK.dsack_round).
            self.dsack_pending = False
            if self.dsack_round is None or (segs and seq_diff(ack, self.dsack_round) >= 0) or not segs:
                self.dsack_round = segs[-1].end if segs else ack
                self.reo_wnd_mult += 1
                self.reo_wnd_persist = REO_WND_PERSIST
        if self.xmit_ts is not None and (scoreboard.blocks or self._retrans_out or self._lost):
            self._detect(now)
        else:
            self.deadline = None

    def on_dsack(self) -> None:
        self.dsack_pending = True

    def reo_wnd(self) -> float:
        """RFC 8985 §6.2 step 4."""
        if not self.reordering_seen and (self._in_recovery or self._sacked_bytes >= DUPTHRESH * self.mss):
            return 0.0
        base = (self.min_rtt or 0.0) * self.reo_wnd_mult / 4
        srtt = self._srtt
        return min(base, srtt) if srtt is not None else base

    def _detect(self, now: float) -> None:
        """RFC 8985 §6.2 step 5: mark lost what was sent before RACK.xmit_ts and is overdue."""
        order = self.xmit_order
        end_seq = self.end_seq
        window = self.rtt + self.reo_wnd()
        timeout = 0.0
        for s in self.segs:
            if s.sacked or s.lost:
                continue
            if s.order < order or (s.order == order and seq_diff(end_seq, s.end) > 0):
                # sent before the newest delivered one (in one burst: lower sequence first)
                remaining = s.xmit + window - now
                if remaining <= 0:
                    s.lost = True
                    self._lost += seq_diff(s.end, s.start)
                elif remaining > timeout:
                    timeout = remaining
        self.deadline = now + timeout if timeout > 0 else None

    def on_reorder_timeout(self, now: float) -> None:
        self.deadline = None
        if self.xmit_ts is not None:
            self._detect(now)

    def on_timeout(self, now: float) -> None:
        """RFC 8985 §6.3: on an RTO every segment not SACKed is lost."""
        self.deadline = None
        for s in self.segs:
            if not s.sacked and not s.lost:
                s.lost = True
                self._lost += seq_diff(s.end, s.start)

    def undo_marks(self) -> None:
        """The recovery was undone: nothing is lost after all."""
        for s in self.segs:
            s.lost = False
        self._lost = 0
        self.deadline = None

    # -- what recovery asks -------------------------------------------------------------------------
    def lost(self, now: float) -> bool:
        return self._lost > 0

    def next_lost(self, start: int):
        """The first segment marked lost and not retransmitted since.  ``start`` (RFC 6675's
        HighRxt) does not matter here: a retransmission found lost again (its new
        transmission time overdue) goes again, below it or not."""
        for s in self.segs:
            if s.lost:
                return s.start, s.end
        return None

    def lost_bytes(self, start: int) -> int:
        return self._lost


def create(name: str, mss: int):
    """A loss detection by name: "rack" or "rfc6675"."""
    if name == "rack":
        return Rack(mss)
    if name == "rfc6675":
        return Rfc6675(mss)
    raise ValueError(f"unknown loss detection {name!r} (known: rack, rfc6675)")
