"""NewReno congestion control: RFC 5681 + RFC 6582.

Slow start (cwnd < ssthresh: cwnd += min(acked, SMSS) per ACK, §3.1 eqn 2),
congestion avoidance (cwnd += SMSS*SMSS/cwnd per ACK, eqn 3, done in bytes
with an accumulator), fast retransmit on the third duplicate ACK and fast
recovery with NewReno partial-ACK handling (RFC 6582 §3.2).

Every reduction remembers the window before it, so that a reduction later
found spurious (Eifel, D-SACK, F-RTO: recovery.py) can be undone
(:meth:`NewReno.undo`, RFC 4015 §3.2 / Linux tcp_undo_cwnd_reduction).

Subclasses (cubic.py) change only the reduction factor (:meth:`_reduction`),
the growth (:meth:`_grow`) and what a new epoch or an undo resets.
"""
from __future__ import annotations

from . import CongestionControl

from ..seq import seq_ge

DUPACK_THRESHOLD = 3


class NewReno(CongestionControl):
    name = "newreno"
    __slots__ = ("mss", "cwnd", "ssthresh", "in_recovery", "recover", "recover_valid", "dupacks", "_ca_acc",
                 "fast_retransmits", "timeouts", "prior_cwnd", "prior_ssthresh", "undos")

    def __init__(self, mss: int = 1460, initial_segments: int = 10):
        self.mss = mss
        # RFC 6928 IW; RFC 5681 §3.1: ssthresh initially arbitrarily high.
        self.cwnd = initial_segments * mss
        self.ssthresh = 0x7FFFFFFF
        self.in_recovery = False
        self.recover = 0
        self.recover_valid = False
        self.dupacks = 0
        self._ca_acc = 0
        self.fast_retransmits = 0
        self.timeouts = 0
        self.prior_cwnd = 0               #: cwnd before the last reduction (0: nothing to undo)
        self.prior_ssthresh = 0           #: ssthresh before the last reduction
        self.undos = 0                    #: reductions undone

    def set_mss(self, mss: int) -> None:
        if mss != self.mss:
            segs = max(1, self.cwnd // self.mss)
            self.mss = mss
            self.cwnd = segs * mss

    # -- hooks for subclasses ---------------------------------------------------------------------
    def _reduction(self, flight: int, now: float) -> int:
        """The new ssthresh after a congestion event: RFC 5681 eqn 4."""
        return max(flight // 2, 2 * self.mss)

    def _grow(self, acked_bytes: int, rtt, now: float, ack: int, snd_max) -> None:
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked_bytes, self.mss)       # slow start
        else:
            self._ca_acc += acked_bytes                   # congestion avoidance
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += self.mss

    def _recovery_done(self, now: float) -> None:
        """Fast recovery ended (a full ACK)."""

    def _save_prior(self) -> None:
        self.prior_cwnd = self.cwnd
        self.prior_ssthresh = self.ssthresh

    # -- the interface ----------------------------------------------------------------------------
    def on_ack(self, acked_bytes: int, rtt, now, *, ack: int = 0, flight: int = 0,
               snd_max: int | None = None) -> bool:
        self.dupacks = 0
        mss = self.mss
        if self.in_recovery:
            if seq_ge(ack, self.recover):                  # a full ACK
                # RFC 6582 §3.2 step 3: deflate (RFC 6937: PRR ends at ssthresh too).
                self.cwnd = max(min(self.ssthresh, flight + mss), mss)
                self.in_recovery = False
                self._ca_acc = 0
                self._recovery_done(now)
                return False
            # Partial ACK, step 5: retransmit, deflate by the amount acked,
            # add back one SMSS if that amount was >= SMSS.
            self.cwnd -= acked_bytes
            if acked_bytes >= mss:
                self.cwnd += mss
            if self.cwnd < mss:
                self.cwnd = mss
            return True
        self._grow(acked_bytes, rtt, now, ack, snd_max)
        return False

    def on_dup_ack(self, now, *, flight: int = 0, snd_max: int = 0, ack: int | None = None,
                   threshold: int = DUPACK_THRESHOLD) -> bool:
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += self.mss                          # step 4: inflate
            return False
        if self.dupacks == threshold:      # 3, or fewer for early retransmit (RFC 5827)
            # RFC 6582 §3.2 step 2 / §4.1: no new fast retransmit unless the
            # cumulative ACK covers more than "recover" (set at the last
            # recovery or timeout): old duplicate ACKs must not cut cwnd again.
            return self.enter_recovery(now, flight=flight, snd_max=snd_max, ack=ack)
        return False

    def enter_recovery(self, now, *, flight: int = 0, snd_max: int = 0, ack: int | None = None) -> bool:
        """Loss detected (3 dup ACKs, or SACK/RACK says so): fast retransmit/recovery."""
        if self.in_recovery:
            return False
        # (recover is one past the highest byte then sent, so "covers" is ack >= recover.)
        if ack is not None and self.recover_valid and not seq_ge(ack, self.recover):
            return False
        self._save_prior()
        self.ssthresh = self._reduction(flight, now)
        self.cwnd = self.ssthresh + DUPACK_THRESHOLD * self.mss
        self.recover = snd_max
        self.recover_valid = True
        self.in_recovery = True
        self.fast_retransmits += 1
        return True

    def on_timeout(self, now, *, flight: int = 0, snd_max: int | None = None) -> None:
        if snd_max is not None:                                    # RFC 6582 §3.2 step 1
            self.recover = snd_max
            self.recover_valid = True
        if not self.in_recovery or not self.prior_cwnd:
            self._save_prior()          # (a timeout during recovery keeps the pre-recovery window)
        self.ssthresh = self._reduction(flight, now)               # eqn 4
        self.cwnd = self.mss                                       # loss window
        self.in_recovery = False
        self.dupacks = 0
        self._ca_acc = 0
        self.timeouts += 1

    def on_loss(self, now, *, flight: int = 0) -> None:
        self._save_prior()
        self.ssthresh = self._reduction(flight, now)
        self.cwnd = self.ssthresh
        self._ca_acc = 0

    def undo(self, now) -> bool:
        """The last reduction was spurious (RFC 4015 §3.2, as Linux tcp_undo_cwnd_reduction):
        cwnd and ssthresh go back to at least what they were before it.  False if there is
        nothing to undo."""
        if not self.prior_cwnd:
            return False
        if self.cwnd < self.prior_cwnd:
            self.cwnd = self.prior_cwnd
        if self.ssthresh < self.prior_ssthresh:
            self.ssthresh = self.prior_ssthresh
        self.prior_cwnd = 0
        self.in_recovery = False
        self.recover_valid = False        # the reduction is gone: a new loss may reduce again
        self.dupacks = 0
        self._ca_acc = 0
        self.undos += 1
        return True

    def state_dict(self) -> dict:
        """The algorithm's own figures, for ``Connection.info()``."""
        return {}
