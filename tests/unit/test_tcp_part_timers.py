"""Timers (timers.py): the exclusive slot, the TLP that lives only in front of the
retransmission timer, the delayed-ACK timer, next_deadline and as_dict."""
import pytest

from netstack.tcp.timers import EXCLUSIVE, Timer, Timers

READERS = {Timer.RETRANSMIT: "retransmit", Timer.PERSIST: "persist", Timer.KEEPALIVE: "keepalive",
           Timer.TIME_WAIT: "timewait", Timer.FIN_WAIT_2: "timewait"}


def armed_readers(t):
    return {name: getattr(t, name) for name in ("retransmit", "persist", "keepalive", "timewait")
            if getattr(t, name) is not None}


@pytest.mark.parametrize("kind", sorted(EXCLUSIVE, key=lambda k: k.value))
def test_only_the_armed_kind_shows_in_the_readers(kind):
    t = Timers()
    t.arm(kind, 5.0)
    assert t.holds(kind) and t.kind is kind
    assert armed_readers(t) == {READERS[kind]: 5.0}


@pytest.mark.parametrize("first,second", [
    (Timer.RETRANSMIT, Timer.PERSIST), (Timer.PERSIST, Timer.RETRANSMIT),
    (Timer.RETRANSMIT, Timer.KEEPALIVE), (Timer.KEEPALIVE, Timer.TIME_WAIT),
    (Timer.TIME_WAIT, Timer.RETRANSMIT),
])
def test_arming_one_replaces_the_other(first, second):
    t = Timers()
    t.arm(first, 1.0)
    t.arm(second, 2.0)
    assert not t.holds(first) and t.holds(second)
    assert armed_readers(t) == {READERS[second]: 2.0}


def test_exclusive_set_is_the_five_slot_timers():
    assert EXCLUSIVE == {Timer.RETRANSMIT, Timer.PERSIST, Timer.KEEPALIVE, Timer.TIME_WAIT, Timer.FIN_WAIT_2}


@pytest.mark.parametrize("kind", [Timer.DELAYED_ACK, Timer.TLP])
def test_arm_refuses_the_independent_timers(kind):
    t = Timers()
    t.arm(Timer.RETRANSMIT, 3.0)
    with pytest.raises(ValueError):
        t.arm(kind, 1.0)
    assert t.kind is Timer.RETRANSMIT and t.deadline == 3.0


def test_stop_with_a_kind_only_stops_that_kind():
    t = Timers()
    t.arm(Timer.PERSIST, 3.0)
    t.stop(Timer.RETRANSMIT)
    assert t.persist == 3.0
    t.stop(Timer.PERSIST)
    assert t.kind is None and t.deadline is None


def test_stop_without_a_kind_empties_the_slot():
    t = Timers()
    t.arm(Timer.KEEPALIVE, 3.0)
    t.stop()
    assert t.kind is None and armed_readers(t) == {}


# -- the TLP --------------------------------------------------------------------------------------

def test_tlp_refused_without_the_retransmission_timer():
    t = Timers()
    assert t.arm_tlp(1.0) is False and t.tlp is None
    t.arm(Timer.PERSIST, 5.0)
    assert t.arm_tlp(1.0) is False and t.tlp is None


def test_tlp_armed_only_before_the_rto():
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    assert t.arm_tlp(5.0) is False and t.tlp is None         # not before the RTO
    assert t.arm_tlp(4.0) is True and t.tlp == 4.0
    assert t.arm_tlp(6.0) is False and t.tlp is None         # a refused re-arm clears it


def test_tlp_survives_rearming_the_retransmission_timer():
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.arm(Timer.RETRANSMIT, 6.0)
    assert t.tlp == 2.0


@pytest.mark.parametrize("other", [Timer.PERSIST, Timer.KEEPALIVE, Timer.TIME_WAIT, Timer.FIN_WAIT_2])
def test_tlp_cleared_when_the_slot_changes_kind(other):
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.arm(other, 9.0)
    assert t.tlp is None


@pytest.mark.parametrize("stop_arg", [None, Timer.RETRANSMIT])
def test_tlp_cleared_when_the_retransmission_timer_stops(stop_arg):
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.stop(stop_arg)
    assert t.tlp is None


def test_tlp_kept_when_stopping_another_kind():
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.stop(Timer.PERSIST)
    assert t.tlp == 2.0 and t.retransmit == 5.0


# -- all of them ----------------------------------------------------------------------------------

@pytest.mark.parametrize("slot,delack,tlp,expected", [
    (None, None, None, None),
    (5.0, None, None, 5.0),
    (None, 0.2, None, 0.2),
    (5.0, 0.2, None, 0.2),
    (5.0, 7.0, 3.0, 3.0),
    (5.0, 1.0, 3.0, 1.0),
])
def test_next_deadline_is_the_minimum(slot, delack, tlp, expected):
    t = Timers()
    if slot is not None:
        t.arm(Timer.RETRANSMIT, slot)
    if tlp is not None:
        assert t.arm_tlp(tlp)
    t.delack = delack
    assert t.next_deadline() == expected


def test_stop_all_clears_everything():
    t = Timers()
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.delack = 0.2
    t.stop_all()
    assert t.next_deadline() is None and t.as_dict() == {}


def test_as_dict_names_the_armed_timers():
    t = Timers()
    assert t.as_dict() == {}
    t.arm(Timer.RETRANSMIT, 5.0)
    t.arm_tlp(2.0)
    t.delack = 0.2
    assert t.as_dict() == {"retransmit": 5.0, "delack": 0.2, "tlp": 2.0}
    t.arm(Timer.FIN_WAIT_2, 60.0)
    assert t.as_dict() == {"finwait2": 60.0, "delack": 0.2}
