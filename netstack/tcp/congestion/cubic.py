"""CUBIC congestion control (RFC 9438) with HyStart++ slow start (RFC 9406).

The window is counted in segments here, as in the RFCs, and kept in bytes
(``cwnd``) for the connection.

RFC 9438:
  §4.2  W_cubic(t) = C * (t - K)^3 + W_max,  K = cbrt((W_max - cwnd_epoch) / C)
        (t: seconds since the congestion-avoidance epoch began; C = 0.4).
        Per ACK the target is W_cubic(t + RTT), clamped to [cwnd, 1.5 * cwnd];
        cwnd grows by (target - cwnd) / cwnd per acknowledged segment.
  §4.3  Reno-friendly region: W_est starts at cwnd_epoch and grows by
        alpha_cubic * segments_acked / cwnd, alpha_cubic = 3 (1 - beta) / (1 + beta)
        (1 once W_est >= W_max); where W_cubic(t) < W_est, cwnd = W_est.
  §4.6  Multiplicative decrease: ssthresh = max(flight * beta_cubic, 2 SMSS), beta_cubic = 0.7.
  §4.7  Fast convergence: a W_max lower than the last one is lowered further,
        W_max = cwnd * (1 + beta_cubic) / 2.
  §4.8  Timeout: the same reduction, cwnd = 1 SMSS, a new epoch after slow start.
  §4.9  Spurious congestion events: :meth:`Cubic.undo` restores cwnd, ssthresh, W_max and K.

RFC 9406 (HyStart++), in the initial slow start only: per round trip (a
round ends when the ACK passes the SND.MAX of its start) the minimum RTT of
at least N_RTT_SAMPLE samples is compared with the previous round's; a rise
of at least clamp(lastRoundMinRTT / 8, 4 ms, 16 ms) moves to Conservative
Slow Start (growth divided by CSS_GROWTH_DIVISOR) and, after CSS_ROUNDS
rounds of it, to congestion avoidance (ssthresh = cwnd); an RTT back below
the CSS baseline returns to slow start.  Without pacing, slow start grows by
at most L = 8 SMSS per ACK.
"""
from __future__ import annotations

from .newreno import NewReno
from ..seq import seq_ge

C = 0.4
BETA = 0.7
ALPHA = 3 * (1 - BETA) / (1 + BETA)

# RFC 9406 §4.3 constants
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5
L_NO_PACING = 8

_INF = float("inf")


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 §4.2 eqn 1: the cubic window (segments) t seconds into the epoch."""
    return C * (t - k) ** 3 + w_max


def k_of(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 §4.2 eqn 2: the time the cubic function takes to reach W_max again."""
    d = (w_max - cwnd_epoch) / C
    return d ** (1 / 3) if d >= 0 else -((-d) ** (1 / 3))


class Cubic(NewReno):
    name = "cubic"
    __slots__ = ("w_max", "k", "epoch_start", "cwnd_epoch", "w_est", "srtt", "_seg_acc",
                 "hystart", "css", "css_rounds", "css_baseline", "window_end", "cur_min_rtt",
                 "last_min_rtt", "rtt_samples", "prior_w_max", "prior_k", "hystart_exits")

    def __init__(self, mss: int = 1460, initial_segments: int = 10):
        super().__init__(mss, initial_segments)
        self.w_max = 0.0                 #: segments: the window at the last congestion event
        self.k = 0.0                     #: seconds (eqn 2)
        self.epoch_start: float | None = None
        self.cwnd_epoch = 0.0            #: segments: cwnd when the epoch began
        self.w_est = 0.0                 #: segments: the Reno-friendly estimate (§4.3)
        self.srtt: float | None = None   #: smoothed RTT of the samples seen (the "RTT" of §4.2)
        self._seg_acc = 0.0              #: fractional segments of growth not yet in cwnd
        self.hystart = True              #: HyStart++ runs (initial slow start only)
        self.css = False                 #: in Conservative Slow Start
        self.css_rounds = 0
        self.css_baseline = _INF
        self.window_end: int | None = None
        self.cur_min_rtt = _INF
        self.last_min_rtt = _INF
        self.rtt_samples = 0
        self.prior_w_max = 0.0
        self.prior_k = 0.0
        self.hystart_exits = 0           #: slow starts HyStart++ ended before any loss

    # -- reduction ----------------------------------------------------------------------------------
    def _save_prior(self) -> None:
        super()._save_prior()
        self.prior_w_max = self.w_max
        self.prior_k = self.k

    def _reduction(self, flight: int, now: float) -> int:
        mss = self.mss
        cwnd_segs = self.cwnd / mss
        if cwnd_segs < self.w_max:                              # §4.7 fast convergence
            self.w_max = cwnd_segs * (1 + BETA) / 2
        else:
            self.w_max = cwnd_segs
        self.epoch_start = None
        self.hystart = False
        self.css = False
        return max(int(flight * BETA), 2 * mss)                 # §4.6

    def undo(self, now) -> bool:
        """§4.9: restore cwnd, ssthresh, W_max and K as before the spurious event."""
        w, k = self.prior_w_max, self.prior_k
        if not super().undo(now):
            return False
        self.w_max = w
        self.k = k
        self.epoch_start = None
        return True

    def _recovery_done(self, now: float) -> None:
        self.epoch_start = None

    # -- growth -------------------------------------------------------------------------------------
    def _grow(self, acked_bytes: int, rtt, now: float, ack: int, snd_max) -> None:
        mss = self.mss
        if rtt is not None and rtt > 0:
            s = self.srtt
            self.srtt = rtt if s is None else s + (rtt - s) / 8
        if self.cwnd < self.ssthresh:
            if self.hystart:
                self._hystart(acked_bytes, rtt, ack, snd_max)
            else:
                self.cwnd += min(acked_bytes, L_NO_PACING * mss)
            return
        self._congestion_avoidance(acked_bytes / mss, now)

    def _hystart(self, acked_bytes: int, rtt, ack: int, snd_max) -> None:
        """RFC 9406 §4.2 for one ACK in slow start."""
        mss = self.mss
        if self.window_end is None or (snd_max is not None and seq_ge(ack, self.window_end)):
            # a new round
            if self.window_end is not None and self.css:
                self.css_rounds += 1
            self.last_min_rtt = self.cur_min_rtt
            self.cur_min_rtt = _INF
            self.rtt_samples = 0
            self.window_end = snd_max if snd_max is not None else ack
        if rtt is not None and rtt > 0:
            if rtt < self.cur_min_rtt:
                self.cur_min_rtt = rtt
            self.rtt_samples += 1
        grow = min(acked_bytes, L_NO_PACING * mss)
        enough = self.rtt_samples >= N_RTT_SAMPLE and self.cur_min_rtt != _INF
        if not self.css:
            self.cwnd += grow
            if enough and self.last_min_rtt != _INF:
                thresh = min(max(self.last_min_rtt / MIN_RTT_DIVISOR, MIN_RTT_THRESH), MAX_RTT_THRESH)
                if self.cur_min_rtt >= self.last_min_rtt + thresh:
                    self.css = True
                    self.css_rounds = 0
                    self.css_baseline = self.cur_min_rtt
            return
        self.cwnd += grow // CSS_GROWTH_DIVISOR
        if enough and self.cur_min_rtt < self.css_baseline:
            self.css = False                      # the RTT rise was spurious: back to slow start
            self.css_baseline = _INF
        elif self.css_rounds >= CSS_ROUNDS:
            self.ssthresh = self.cwnd             # on to congestion avoidance
            self.css = False
            self.hystart = False
            self.hystart_exits += 1

    def _congestion_avoidance(self, segs_acked: float, now: float) -> None:
        """RFC 9438 §4.2-§4.4 for one ACK in congestion avoidance."""
        mss = self.mss
        cwnd = self.cwnd / mss
        if self.epoch_start is None:
            self.epoch_start = now
            self.cwnd_epoch = cwnd
            self.w_est = cwnd
            if self.w_max < cwnd:
                self.w_max = cwnd
            self.k = k_of(self.w_max, cwnd)
            self._seg_acc = 0.0
        t = now - self.epoch_start
        rtt = self.srtt or 0.0
        target = w_cubic(t + rtt, self.k, self.w_max)
        if target < cwnd:
            target = cwnd
        elif target > 1.5 * cwnd:
            target = 1.5 * cwnd
        alpha = 1.0 if self.w_est >= self.w_max else ALPHA
        self.w_est += alpha * segs_acked / cwnd
        if w_cubic(t, self.k, self.w_max) < self.w_est:
            new = self.w_est                       # Reno-friendly region (§4.3)
        else:
            new = cwnd + (target - cwnd) / cwnd * segs_acked      # concave / convex (§4.4, §4.5)
        if new > cwnd:
            self._seg_acc += new - cwnd
            whole = int(self._seg_acc * mss)
            if whole > 0:
                self.cwnd += whole
                self._seg_acc -= whole / mss

    def state_dict(self) -> dict:
        return {"w_max": round(self.w_max, 2), "k": round(self.k, 3),
                "hystart": "css" if self.css else ("on" if self.hystart else "off")}
