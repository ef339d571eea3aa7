"""The retransmission timeout estimator, RFC 6298.

This is where the *value* of the retransmission timer comes from; the timer
itself is the RETRANSMIT timer of timers.py's exclusive slot and it fires in
``LossRecovery.on_retransmit_timeout`` (recovery.py).

RFC 6298 §2:
  first sample R:   SRTT = R, RTTVAR = R/2
  later samples R': RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R'|
                    SRTT   = (1 - alpha) * SRTT + alpha * R'
  RTO = SRTT + max(G, K * RTTVAR), clamped to [rto_min, rto_max]
  alpha = 1/8, beta = 1/4, K = 4.
§5.5: on expiry the RTO doubles ("back off the timer"), up to rto_max.
Karn's rule (§3): samples are never taken from retransmitted segments; the
connection enforces that (it cancels the timed segment on retransmission,
and with timestamps the echoed TSval identifies the transmission).
"""
from __future__ import annotations

from .seq import seq_gt

ALPHA = 1 / 8
BETA = 1 / 4
K = 4


class RTOEstimator:
    __slots__ = ("srtt", "rttvar", "rto", "backoff_count", "rto_min", "rto_max",
                 "granularity", "samples", "min_rtt", "_base_rto", "timed_seq", "timed_at")

    def __init__(self, initial: float = 1.0, rto_min: float = 1.0, rto_max: float = 60.0,
                 granularity: float = 0.001):
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.granularity = granularity
        self._base_rto = min(max(initial, rto_min), rto_max)
        self.rto = self._base_rto
        self.backoff_count = 0
        self.samples = 0
        #: the smallest RTT sample seen (seconds), or None: ss's minrtt
        self.min_rtt: float | None = None
        #: Karn's rule without timestamps: the one segment being timed (its first sequence
        #: number) and when it was sent; None when nothing is timed.
        self.timed_seq: int | None = None
        self.timed_at = 0.0

    def sample(self, r: float) -> None:
        """Feed one RTT measurement R (seconds), RFC 6298 §2.2/§2.3."""
        if r < 0:
            return
        if self.min_rtt is None or r < self.min_rtt:
            self.min_rtt = r
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - r)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * r
        self.samples += 1
        rto = self.srtt + max(self.granularity, K * self.rttvar)
        if rto < self.rto_min:
            rto = self.rto_min
        elif rto > self.rto_max:
            rto = self.rto_max
        self._base_rto = rto
        # A new sample after a backed-off timer ends the backoff (§5.7 note).
        self.backoff_count = 0
        self.rto = rto

    def backoff(self) -> float:
        """The timer expired: double the RTO, at most rto_max (RFC 6298 §5.5)."""
        self.backoff_count += 1
        self.rto = min(self.rto * 2, self.rto_max)
        return self.rto

    @property
    def base(self) -> float:
        """The RTO the estimator computes, before any backoff."""
        return self._base_rto

    def time_segment(self, seq: int, now: float) -> None:
        """Start timing the segment at ``seq`` if none is timed (one sample per RTT)."""
        if self.timed_seq is None:
            self.timed_seq = seq
            self.timed_at = now

    def cancel_timing(self) -> None:
        """Karn (RFC 6298 §3): a retransmission makes the timed segment ambiguous."""
        self.timed_seq = None

    def sample_timed(self, ack: int, now: float) -> float | None:
        """The ACK covers the timed segment: its RTT (not yet fed to the estimator), else None."""
        t = self.timed_seq
        if t is not None and seq_gt(ack, t):
            self.timed_seq = None
            return now - self.timed_at
        return None

    def after_syn_timeout(self) -> None:
        """RFC 6298 §5.7: the SYN timed out and no RTT was measured: RTO 3 s when data begins."""
        self._base_rto = self.rto = max(3.0, self.rto_min)

    def reset_backoff(self) -> None:
        """New data was acknowledged: return to the estimator's RTO."""
        self.backoff_count = 0
        self.rto = self._base_rto
