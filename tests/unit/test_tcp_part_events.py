"""events.py and the connection's transitions: every state change is a StateChange
(time, old, new, cause) recorded in ``conn.transitions`` and handed to
``layer.on_transition``, with the segment, timer or user call that caused it."""
import dataclasses

import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ConnEvent, SegmentCause, StateChange, TimerCause, UserCall, UserCause
from netstack.tcp.timers import Timer
from netstack.wire.tcp import ACK, FIN, PSH, SYN
from tests.support.tcp_script import PEER, Script


def observed(cfg=None):
    s = Script(cfg)
    seen = []
    s.layer.on_transition = lambda conn, change: seen.append((conn, change))
    return s, seen


def test_passive_open_data_and_passive_close_transitions():
    s, seen = observed()
    s.layer.listen(80)
    s.at(1.0)
    s.peer("S", seq=1000, mss=1460)
    synack = s.expect("S.", ack=1001)
    us = synack.seq + 1
    conn = s.layer.connections[(PEER, 40000, 80)]
    s.at(1.1)
    s.peer(".", seq=1001, ack=us)
    s.at(1.2)
    s.peer("P.", seq=1001, ack=us, data=b"hi")
    s.at(1.3)
    s.peer("F.", seq=1003, ack=us)
    assert conn.recv(10) == b"hi"
    s.at(1.4)
    conn.close()
    s.poll()
    s.sent()
    s.at(1.5)
    s.peer(".", seq=1004, ack=us + 1)
    assert conn.state is State.CLOSED
    expected = [
        StateChange(1.0, State.LISTEN, State.SYN_RECEIVED, SegmentCause(SYN, 1000, 0)),
        StateChange(1.1, State.SYN_RECEIVED, State.ESTABLISHED, SegmentCause(ACK, 1001, us)),
        StateChange(1.3, State.ESTABLISHED, State.CLOSE_WAIT, SegmentCause(FIN | ACK, 1003, us)),
        StateChange(1.4, State.CLOSE_WAIT, State.LAST_ACK, UserCause(UserCall.CLOSE)),
        StateChange(1.5, State.LAST_ACK, State.CLOSED, SegmentCause(ACK, 1004, us + 1)),
    ]
    assert list(conn.transitions) == expected
    assert [change for _, change in seen] == expected
    assert all(c is conn for c, _ in seen)
    assert all(a is b for a, (_, b) in zip(conn.transitions, seen))      # the same objects


def test_data_causes_no_transition():
    s, seen = observed()
    conn, synack = s.passive_open(ts=None, wscale=None)
    before = len(conn.transitions)
    s.peer("P.", seq=1001, ack=synack.seq + 1, data=b"x" * 10)
    s.peer("P.", seq=1011, ack=synack.seq + 1, data=b"y" * 10)
    assert len(conn.transitions) == before == len(seen)
    assert SegmentCause(PSH | ACK, 1001, synack.seq + 1) not in [c.cause for c in conn.transitions]


def test_active_close_ends_with_the_time_wait_timer():
    s, seen = observed(TCPConfig(msl=5.0))
    conn, synack = s.passive_open(ts=None, wscale=None)
    us = synack.seq + 1
    conn.close()
    s.poll()
    s.sent()
    s.peer(".", seq=1001, ack=us + 1)
    s.peer("F.", seq=1001, ack=us + 1)
    s.sent()
    s.at(10.0)
    assert conn.state is State.CLOSED
    olds_news = [(c.old, c.new) for c in conn.transitions][-4:]
    assert olds_news == [(State.ESTABLISHED, State.FIN_WAIT_1), (State.FIN_WAIT_1, State.FIN_WAIT_2),
                         (State.FIN_WAIT_2, State.TIME_WAIT), (State.TIME_WAIT, State.CLOSED)]
    assert conn.transitions[-4].cause == UserCause(UserCall.CLOSE)
    assert conn.transitions[-1] == StateChange(10.0, State.TIME_WAIT, State.CLOSED, TimerCause(Timer.TIME_WAIT))
    assert seen[-1][1] is conn.transitions[-1]


def test_rto_give_up_is_caused_by_the_retransmission_timer():
    s, seen = observed(TCPConfig(data_retries=1, rto_initial=0.5, rto_min=0.5))
    conn, synack = s.passive_open(ts=None, wscale=None)
    conn.send(b"lost")
    s.poll()
    for t in (1.0, 3.0, 10.0, 30.0):
        s.at(t)
    assert conn.state is State.CLOSED
    assert list(conn.events)[-2:] == [ConnEvent.TIMEOUT, ConnEvent.CLOSED]
    last = conn.transitions[-1]
    assert (last.old, last.new, last.cause) == (State.ESTABLISHED, State.CLOSED, TimerCause(Timer.RETRANSMIT))
    assert seen[-1][1] is last


def test_state_change_is_frozen():
    change = StateChange(1.0, State.LISTEN, State.SYN_RECEIVED, SegmentCause(SYN, 1, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.new = State.CLOSED
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.cause.seq = 2


@pytest.mark.parametrize("event", list(ConnEvent))
def test_is_failure_exactly_for_reset_refused_timeout(event):
    assert event.is_failure is (event in (ConnEvent.RESET, ConnEvent.REFUSED, ConnEvent.TIMEOUT))
