"""Proportional Rate Reduction for TCP, RFC 6937 (with SSRB, §3.1).

During SACK-based fast recovery the congestion window is not cut at once:
every ACK that reports data delivered (``DeliveredData``: the bytes SND.UNA
moved by plus the bytes newly SACKed) lets a proportional amount go out, so
that the amount in flight glides down to ssthresh (or, when it fell below,
climbs back with slow-start-like growth), and recovery ends at ssthresh::

    on entering recovery:  prr_delivered = prr_out = 0, RecoverFS = SND.NXT - SND.UNA
    per ACK:               prr_delivered += DeliveredData
      if pipe > ssthresh:  sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out
      else (SSRB):         sndcnt = MIN(ssthresh - pipe,
                                        MAX(prr_delivered - prr_out, DeliveredData) + SMSS)
    per transmission:      prr_out += data sent

:meth:`Prr.budget` gives sndcnt in bytes on the first call after an ACK, and
sets the recovery window to ``pipe + sndcnt`` (as Linux's tcp_cwnd_reduction
does); later calls before the next ACK -- the sender asked again, or RACK's
reordering timer marked more segments lost, which lowers pipe -- allow what
still fits under that window.  Used by recovery.py's ``sack_recovery``.
"""
from __future__ import annotations


class Prr:
    __slots__ = ("delivered", "out", "recover_fs", "last_delivered", "fresh", "cwnd")

    def __init__(self) -> None:
        self.delivered = 0            #: prr_delivered
        self.out = 0                  #: prr_out
        self.recover_fs = 1           #: RecoverFS
        self.last_delivered = 0       #: DeliveredData of the latest ACK
        self.fresh = False            #: an ACK came since the last budget
        self.cwnd = 0                 #: pipe + sndcnt as of the latest ACK

    def start(self, flight: int) -> None:
        """Recovery begins (RFC 6937 §3, initialization)."""
        self.delivered = 0
        self.out = 0
        self.recover_fs = flight if flight > 0 else 1
        self.last_delivered = 0
        self.fresh = True
        self.cwnd = 0

    def on_ack(self, delivered: int) -> None:
        """An ACK in recovery reported ``delivered`` bytes (cumulatively ACKed + newly SACKed)."""
        if delivered < 0:
            delivered = 0
        self.delivered += delivered
        self.last_delivered = delivered
        self.fresh = True

    def budget(self, pipe: int, ssthresh: int, mss: int) -> int:
        """Bytes that may be sent now, never negative."""
        if not self.fresh:
            room = self.cwnd - pipe
            return room if room > 0 else 0
        self.fresh = False
        if pipe > ssthresh:
            cnt = -(-self.delivered * ssthresh // self.recover_fs) - self.out
        else:
            limit = max(self.delivered - self.out, self.last_delivered) + mss     # PRR-SSRB
            cnt = min(ssthresh - pipe, limit)
        if cnt < 0:
            cnt = 0
        self.cwnd = pipe + cnt
        return cnt

    def on_sent(self, n: int) -> None:
        self.out += n
