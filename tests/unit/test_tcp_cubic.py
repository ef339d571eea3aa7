"""CUBIC (RFC 9438) and HyStart++ (RFC 9406) against the RFCs' formulas, fake clock."""
import pytest

from netstack.tcp.congestion import ALGORITHMS, DEFAULT, create
from netstack.tcp.congestion.cubic import BETA, C, CSS_ROUNDS, Cubic, k_of, w_cubic

M = 1000


def ack_clock(cc, t0, seconds, rtt, *, seq=0):
    """One ACK per segment, a window's worth per RTT, for ``seconds`` from ``t0``:
    yields (now, cwnd in segments) after each round trip."""
    now = t0
    while now < t0 + seconds:
        n = cc.cwnd // M
        for i in range(n):
            seq += M
            cc.on_ack(M, rtt, now + rtt * i / n, ack=seq, flight=cc.cwnd, snd_max=seq + cc.cwnd)
        now += rtt
        yield now, cc.cwnd / M


def reduced_cubic(w=100):
    cc = Cubic(M, 10)
    cc.hystart = False
    cc.cwnd = w * M
    cc.ssthresh = 10 * M
    assert cc.enter_recovery(0.0, flight=w * M, snd_max=w * M, ack=0)
    cc.on_ack(w * M, None, 0.0, ack=w * M, flight=int(w * BETA) * M)       # full ACK: recovery ends
    return cc


def test_cubic_is_the_default_and_newreno_selectable():
    assert DEFAULT == "cubic" and set(ALGORITHMS) == {"cubic", "newreno"}
    assert create().name == "cubic" and create("newreno").name == "newreno"
    with pytest.raises(ValueError):
        create("vegas")


def test_multiplicative_decrease_beta_0_7_and_w_max():
    cc = reduced_cubic(100)
    assert cc.ssthresh == 70 * M                    # §4.6: flight * beta_cubic
    assert cc.cwnd == 70 * M and not cc.in_recovery
    assert cc.w_max == 100


def test_window_follows_w_cubic_of_rfc_9438():
    cc = reduced_cubic(100)
    rtt = 0.1
    k = k_of(100, 70)
    assert k == pytest.approx(((100 - 70) / C) ** (1 / 3))          # eqn 2: ~4.22 s
    curve = list(ack_clock(cc, 1.0, 9.0, rtt))
    epoch = cc.epoch_start
    assert epoch is not None
    for now, w in curve:
        t = now - epoch
        # Per ACK the window moves towards the target W_cubic(t + RTT) (§4.2); counted in
        # whole ACKs of whole segments it stays within 3 % of it.
        expect = w_cubic(t + rtt, k, 100)
        assert abs(w - expect) <= 0.03 * expect, (t, w, expect)
    # concave up to K: it plateaus at W_max ...
    plateau = [w for now, w in curve if abs(now - epoch - k) < 0.3]
    assert plateau and all(abs(w - 100) < 2 for w in plateau)
    # ... then the convex part grows beyond it
    assert curve[-1][1] > 100 + 0.4 * (curve[-1][0] - epoch - k) ** 3 - 3


def test_fast_convergence_lowers_w_max():
    cc = reduced_cubic(100)
    list(ack_clock(cc, 1.0, 1.0, 0.1))               # grows a little, stays below W_max
    w = cc.cwnd / M
    assert w < 100
    cc.enter_recovery(3.0, flight=cc.cwnd, snd_max=10 ** 6, ack=10 ** 6)
    assert cc.w_max == pytest.approx(w * (1 + BETA) / 2)      # §4.7


def test_reno_friendly_region_with_short_rtt_small_window():
    # Small W_max and short RTT: W_est (alpha = 3(1-beta)/(1+beta)) beats the cubic curve.
    cc = reduced_cubic(10)
    curve = list(ack_clock(cc, 1.0, 0.5, 0.001))
    # 500 RTTs of Reno-friendly growth: about alpha = 0.53 segment per RTT
    assert curve[-1][1] > 7 + 0.4 * 500 * 0.5
    assert cc.w_est >= w_cubic(curve[-1][0] - cc.epoch_start, cc.k, cc.w_max)


def test_timeout_and_undo_restore_cwnd_ssthresh_w_max():
    cc = reduced_cubic(100)
    list(ack_clock(cc, 1.0, 2.0, 0.1))
    before = (cc.cwnd, cc.ssthresh, cc.w_max, cc.k)
    cc.on_timeout(5.0, flight=cc.cwnd, snd_max=10 ** 6)
    assert cc.cwnd == M and cc.ssthresh == int(before[0] * BETA)
    assert cc.undo(5.1)                                         # §4.9 spurious
    assert (cc.cwnd, cc.ssthresh, cc.w_max, cc.k) == before
    assert not cc.undo(5.2)                                     # only once


def test_hystart_plus_plus_leaves_slow_start_on_rtt_increase():
    cc = Cubic(M, 10)
    seq = 0
    now = 0.0
    rtt = 0.050
    rounds = 0
    # rounds with a flat RTT: plain slow start (cwnd doubles, at most L = 8 SMSS per ACK)
    for rounds in range(4):
        start = cc.cwnd
        end = seq + cc.cwnd
        while seq < end:
            seq += M
            cc.on_ack(M, rtt, now, ack=seq, flight=0, snd_max=end + cc.cwnd)
        now += rtt
        assert cc.cwnd == 2 * start and not cc.css
    # the queue builds: the RTT rises by more than max(4 ms, lastMinRTT / 8)
    rtt = 0.060
    for _ in range(CSS_ROUNDS + 1):
        assert cc.cwnd < cc.ssthresh
        end = seq + cc.cwnd
        start = cc.cwnd
        while seq < end:
            seq += M
            cc.on_ack(M, rtt, now, ack=seq, flight=0, snd_max=end + cc.cwnd)
        now += rtt
        if cc.css:
            assert cc.cwnd < 2 * start          # Conservative Slow Start: growth / 4
    assert cc.ssthresh == cc.cwnd and not cc.hystart and cc.hystart_exits == 1


def test_hystart_back_to_slow_start_when_rtt_falls_below_baseline():
    cc = Cubic(M, 10)
    seq = 0
    for rtt in (0.05, 0.05, 0.07, 0.04):
        end = seq + cc.cwnd
        while seq < end:
            seq += M
            cc.on_ack(M, rtt, 0.0, ack=seq, flight=0, snd_max=end + cc.cwnd)
        if rtt == 0.07:
            assert cc.css
    assert not cc.css and cc.hystart
