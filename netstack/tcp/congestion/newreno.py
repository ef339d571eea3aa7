"""NewReno congestion control: RFC 5681 + RFC 6582.

Slow start (cwnd < ssthresh: cwnd += min(acked, SMSS) per ACK, §3.1 eqn 2),
congestion avoidance (cwnd += SMSS*SMSS/cwnd per ACK, eqn 3, done in bytes
with an accumulator), fast retransmit on the third duplicate ACK and fast
recovery with NewReno partial-ACK handling (RFC 6582 §3.2).
"""
from __future__ import annotations

from . import CongestionControl

from ..seq import seq_ge

DUPACK_THRESHOLD = 3


class NewReno(CongestionControl):
    name = "newreno"
    __slots__ = ("mss", "cwnd", "ssthresh", "in_recovery", "recover", "recover_valid", "dupacks", "_ca_acc",
                 "fast_retransmits", "timeouts")

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

    def set_mss(self, mss: int) -> None:
        if mss != self.mss:
            segs = max(1, self.cwnd // self.mss)
            self.mss = mss
            self.cwnd = segs * mss

    def on_ack(self, acked_bytes: int, rtt, now, *, ack: int = 0, flight: int = 0) -> bool:
        self.dupacks = 0
        mss = self.mss
        if self.in_recovery:
            if seq_ge(ack, self.recover):                  # a full ACK
                # RFC 6582 §3.2 step 3: deflate.
                self.cwnd = max(min(self.ssthresh, flight + mss), mss)
                self.in_recovery = False
                self._ca_acc = 0
                return False
            # Partial ACK, step 5: retransmit, deflate by the amount acked,
            # add back one SMSS if that amount was >= SMSS.
            self.cwnd -= acked_bytes
            if acked_bytes >= mss:
                self.cwnd += mss
            if self.cwnd < mss:
                self.cwnd = mss
            return True
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked_bytes, mss)            # slow start
        else:
            self._ca_acc += acked_bytes                   # congestion avoidance
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += mss
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
        """Loss detected (3 dup ACKs, or SACK says so, RFC 6675 §5): fast retransmit/recovery."""
        if self.in_recovery:
            return False
        # (recover is one past the highest byte then sent, so "covers" is ack >= recover.)
        if ack is not None and self.recover_valid and not seq_ge(ack, self.recover):
            return False
        self.ssthresh = max(flight // 2, 2 * self.mss)          # eqn 4
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
        self.ssthresh = max(flight // 2, 2 * self.mss)             # eqn 4
        self.cwnd = self.mss                                       # loss window
        self.in_recovery = False
        self.dupacks = 0
        self._ca_acc = 0
        self.timeouts += 1

    def on_loss(self, now, *, flight: int = 0) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh
        self._ca_acc = 0
