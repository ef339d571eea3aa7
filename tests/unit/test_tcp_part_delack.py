"""AckPolicy (delack.py): quick-ACK mode, every second full-sized segment, the delayed-ACK
deadline and its adaptive timeout (ato)."""
from types import SimpleNamespace

import pytest

from netstack.tcp.config import TCPConfig
from netstack.tcp.delack import AckPolicy

MSS = 1000


class Counts(dict):
    def __call__(self, name, n=1):
        self[name] = self.get(name, 0) + n


def policy(**cfg):
    counts = Counts()
    return AckPolicy(TCPConfig(**cfg), counts), counts


def rcv(unacked=0, wnd=64000, mss=MSS):
    """A receive space whose RCV.NXT is ``unacked`` bytes beyond Last.ACK.sent."""
    return SimpleNamespace(nxt=10000 + unacked, last_ack_sent=10000, wnd=wnd, mss=mss)


# -- quick-ACK mode ----------------------------------------------------------------------------

@pytest.mark.parametrize("rcv_wnd,expected", [
    (0, 2), (3 * MSS, 2),                       # at least 2
    (10 * MSS, 5),                              # rcv_wnd / (2 * MSS)
    (1000 * MSS, 16),                           # at most quickack_segments
])
def test_quickack_count_bounds(rcv_wnd, expected):
    p, _ = policy(quickack_segments=16)
    p.enter_quickack(rcv_wnd, MSS)
    assert p.quickack == expected


def test_quickack_disabled_by_zero_segments():
    p, _ = policy(quickack_segments=0)
    p.enter_quickack(100 * MSS, MSS)
    assert p.quickack == 0


def test_quickack_never_lowers_the_remaining_count():
    p, _ = policy()
    p.enter_quickack(100 * MSS, MSS)
    p.enter_quickack(0, MSS)
    assert p.quickack == 16


def test_quickack_makes_each_data_segment_due_and_counts():
    p, counts = policy()
    p.enter_quickack(0, MSS)                    # 2 segments
    for i in (1, 2):
        assert p.on_data(float(i) / 100, rcv(unacked=10), rto=1.0) is None
        assert p.due
        assert counts["tcp.quickacks"] == i
        p.due = False                           # the sender sent the ACK
    assert p.quickack == 0
    assert p.on_data(0.03, rcv(unacked=10), rto=1.0) is not None     # back to delaying
    assert counts["tcp.quickacks"] == 2


def test_an_ack_already_due_keeps_the_quickack_budget():
    p, counts = policy()
    p.enter_quickack(0, MSS)
    p.due = True
    assert p.on_data(0.0, rcv(), rto=1.0) is None
    assert p.quickack == 2 and "tcp.quickacks" not in counts


def test_idle_longer_than_rto_reenters_quickack():
    p, _ = policy()
    p.on_data(0.0, rcv(unacked=10), rto=1.0)
    assert p.quickack == 0
    assert p.on_data(1.5, rcv(unacked=10, wnd=20 * MSS), rto=1.0) is None
    assert p.due and p.quickack == 10 - 1       # 20 MSS / 2 = 10, one used on this segment


def test_idle_shorter_than_rto_does_not_reenter_quickack():
    p, _ = policy()
    p.on_data(0.0, rcv(unacked=10), rto=1.0)
    assert p.on_data(0.9, rcv(unacked=10), rto=1.0) is not None
    assert p.quickack == 0 and not p.due


# -- every second full-sized segment ------------------------------------------------------------

def test_two_full_sized_segments_unacked_make_the_ack_due():
    p, _ = policy()
    assert p.on_data(0.0, rcv(unacked=2 * MSS), rto=1.0) is None
    assert p.due


def test_less_than_two_full_sized_segments_arms_the_delayed_ack():
    p, _ = policy(delack_min=0.04)
    assert p.on_data(3.0, rcv(unacked=2 * MSS - 1), rto=1.0) == pytest.approx(3.04)
    assert not p.due


# -- the adaptive delayed-ACK timeout -----------------------------------------------------------

def test_ato_starts_at_delack_min():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    assert p.ato == 0.04


def test_on_timeout_makes_the_ack_due_and_doubles_ato_up_to_delack_timeout():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    p.on_timeout()
    assert p.due and p.ato == pytest.approx(0.08)
    p.on_timeout()
    assert p.ato == pytest.approx(0.16)
    p.on_timeout()
    assert p.ato == pytest.approx(0.2)


def test_closely_spaced_data_pulls_ato_toward_delack_min():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    p.ato = 0.2
    p.on_data(0.0, rcv(), rto=1.0)
    d = p.on_data(0.01, rcv(), rto=1.0)         # spacing <= delack_min / 2
    assert p.ato == pytest.approx(0.2 / 2 + 0.04 / 2)
    assert d == pytest.approx(0.01 + p.ato)


def test_data_in_the_same_instant_pulls_ato_toward_delack_min_then_leaves_it_there():
    """A batch of segments read at once arrives at one instant: spacing 0 halves the way to
    delack_min each time, and once there nothing moves (what on_data then skips)."""
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    p.ato = 0.2
    p.on_data(5.0, rcv(), rto=1.0)
    p.on_data(5.0, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.12)
    p.on_data(5.0, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.08)
    for _ in range(60):
        p.on_data(5.0, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.04)
    q, _ = policy(delack_min=0.04, delack_timeout=0.2)   # at delack_min from the start
    for _ in range(3):
        assert q.on_data(5.0, rcv(), rto=1.0) == 5.04 and q.ato == 0.04


def test_a_delack_min_above_delack_timeout_leaves_ato_at_delack_timeout():
    """The maximum wins over the minimum, after an interactive-mode timeout too."""
    p, _ = policy(delack_min=0.3, delack_timeout=0.2)
    assert p.ato == 0.2
    p.pingpong = True
    p.on_timeout()                              # leaves interactive mode with the minimum ato
    assert p.ato == 0.2
    p.on_data(1.0, rcv(), rto=1.0)
    p.on_data(1.0, rcv(), rto=1.0)
    assert p.ato == 0.2


def test_spacing_below_ato_moves_ato_to_half_ato_plus_spacing():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    p.ato = 0.2
    p.on_data(0.0, rcv(), rto=1.0)
    p.on_data(0.05, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.1 + 0.05)


def test_ato_never_below_delack_min():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    for i in range(20):
        p.on_data(i * 0.001, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.04)


def test_spacing_above_ato_leaves_ato_alone():
    p, _ = policy(delack_min=0.04, delack_timeout=0.2)
    p.ato = 0.1
    p.on_data(0.0, rcv(), rto=1.0)
    p.on_data(0.5, rcv(), rto=1.0)
    assert p.ato == pytest.approx(0.1)
