"""RFC 6298 estimator values, backoff and bounds."""
import pytest

from netstack.tcp.rto import RTOEstimator


def test_initial_rto_is_one_second():
    assert RTOEstimator().rto == 1.0
    assert RTOEstimator().srtt is None


def test_first_and_second_sample_formulas():
    e = RTOEstimator(rto_min=0.0)
    e.sample(0.5)
    assert e.srtt == 0.5 and e.rttvar == 0.25
    assert e.rto == pytest.approx(0.5 + 4 * 0.25)          # 1.5
    e.sample(0.1)
    rttvar = 0.75 * 0.25 + 0.25 * abs(0.5 - 0.1)           # 0.2875
    srtt = 0.875 * 0.5 + 0.125 * 0.1                       # 0.45
    assert e.rttvar == pytest.approx(rttvar) and e.srtt == pytest.approx(srtt)
    assert e.rto == pytest.approx(srtt + 4 * rttvar)


def test_min_bound_and_granularity():
    e = RTOEstimator()                   # min 1 s
    e.sample(0.01)
    assert e.rto == 1.0
    e = RTOEstimator(rto_min=0.2)
    e.sample(0.01)
    assert e.rto == pytest.approx(0.2)
    e = RTOEstimator(rto_min=0.0, granularity=0.05)
    for _ in range(200):
        e.sample(0.01)
    assert e.rto == pytest.approx(0.01 + 0.05, rel=0.05)  # G dominates once RTTVAR -> 0


def test_backoff_doubles_up_to_max_and_sample_resets():
    e = RTOEstimator(rto_max=60.0)
    seq = [e.backoff() for _ in range(8)]
    assert seq == [2, 4, 8, 16, 32, 60, 60, 60]
    assert e.backoff_count == 8
    e.sample(0.1)
    assert e.backoff_count == 0 and e.rto == 1.0
