"""SYN cookies (RFC 4987 §3.6): stateless SYN-ACKs, and connections made from valid returning ACKs."""
from __future__ import annotations

import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ListenerEvent
from netstack.tcp.syncookies import MAX_AGE, MSS_TABLE, TICK, SynCookieMode, SynCookies, decode_ts, encode_ts
from tests.support.tcp_script import PEER, US, Script

S, D = PEER, US


# --- the cookie itself ------------------------------------------------------------------------------

@pytest.mark.parametrize("peer_mss,expected", [(536, 536), (1299, 536), (1300, 1300), (1460, 1460), (9000, 1460),
                                               (100, 536)])
def test_cookie_round_trip_carries_the_mss(peer_mss, expected):
    c = SynCookies(b"k" * 16)
    isn = c.make(S, D, 40000, 80, 0xFFFFFFF0, peer_mss, now=1000.0)
    assert c.check(S, D, 40000, 80, 0xFFFFFFF1, (isn + 1) & 0xFFFFFFFF, now=1000.5) == expected


def test_cookie_is_bound_to_the_4_tuple_the_secret_and_the_peer_isn():
    c = SynCookies(b"k" * 16)
    isn = c.make(S, D, 40000, 80, 5000, 1460, now=10.0)
    ack = (isn + 1) & 0xFFFFFFFF
    assert c.check(S, D, 40000, 80, 5001, ack, 10.0) == 1460
    bad = [c.check(S, D, 40001, 80, 5001, ack, 10.0), c.check(S + 1, D, 40000, 80, 5001, ack, 10.0),
           c.check(S, D, 40000, 80, 5002, ack, 10.0), SynCookies(b"x" * 16).check(S, D, 40000, 80, 5001, ack, 10.0),
           c.check(S, D, 40000, 80, 5001, (ack + 1) & 0xFFFFFFFF, 10.0)]
    assert bad.count(None) >= 4          # a forged cookie passes with probability ~4 / 2^24


def test_forged_cookies_almost_never_pass():
    c = SynCookies(b"k" * 16)
    passed = sum(c.check(S, D, 40000, 80, 1, guess, 0.0) is not None for guess in range(0, 1 << 32, 1 << 16))
    assert passed <= 2                   # of 65536 guesses


def test_cookie_expires_after_its_validity_and_rotates():
    c = SynCookies(b"k" * 16)
    isn = c.make(S, D, 40000, 80, 7, 1460, now=0.0)
    ack = (isn + 1) & 0xFFFFFFFF
    assert c.check(S, D, 40000, 80, 8, ack, (MAX_AGE - 1) * TICK + 1) == 1460
    assert c.check(S, D, 40000, 80, 8, ack, MAX_AGE * TICK + 1) is None
    assert c.make(S, D, 40000, 80, 7, 1460, now=TICK) != isn       # the clock tick changes the cookie


@pytest.mark.parametrize("wscale,sack", [(None, False), (0, True), (7, False), (14, True)])
def test_options_ride_in_the_timestamp(wscale, sack):
    for tsclock in (0x12345678, 0xFFFFFFFF, 5):
        ts = encode_ts(tsclock, wscale, sack)
        assert decode_ts(ts) == (wscale, sack)
        assert 0 <= (tsclock - ts) & 0xFFFFFFFF < 64                 # never ahead of the clock


# --- the listener ----------------------------------------------------------------------------------

def _cookie_synack(s, *, sport=40000, ts=(100, 0), wscale=7, sackok=True, mss=1460):
    s.peer("S", seq=1000, sport=sport, mss=mss, wscale=wscale, sackok=sackok, ts=ts)
    return s.expect("S.", ack=1001)


def test_always_answers_without_state_and_a_valid_ack_establishes_with_the_options():
    s = Script(TCPConfig(syncookies=SynCookieMode.ALWAYS))
    lst = s.layer.listen(80)
    synack = _cookie_synack(s, mss=1400)
    assert not s.layer.connections and not lst.syn_queue        # no state kept
    assert synack.options.mss == 1460 and synack.options.wscale == 7 and synack.options.sack_permitted
    s.peer(".", seq=1001, ack=synack.seq + 1, win=1000, ts=(101, synack.options.ts_val))
    assert lst.events[-1] is ListenerEvent.ACCEPTABLE
    conn = lst.accept()
    assert conn.state is State.ESTABLISHED
    assert conn.snd.mss == 1300 - 12           # the table MSS below 1400, less the timestamps
    assert conn.snd.wscale == 7 and conn.neg.sack_ok and conn.neg.ts_enabled
    assert conn.snd.wnd == 1000 << 7
    assert [(c.old, c.new) for c in conn.transitions] == [(State.LISTEN, State.SYN_RECEIVED),
                                                          (State.SYN_RECEIVED, State.ESTABLISHED)]
    assert s.counters.get("tcp.syncookies.sent") == 1 and s.counters.get("tcp.syncookies.validated") == 1
    conn.send(b"hello"); s.poll()
    s.expect("P.", seq=synack.seq + 1, ack=1001, data=b"hello")


def test_without_timestamps_a_cookie_connection_has_no_wscale_or_sack():
    s = Script(TCPConfig(syncookies=SynCookieMode.ALWAYS))
    lst = s.layer.listen(80)
    synack = _cookie_synack(s, ts=None)
    assert synack.options.wscale is None and not synack.options.sack_permitted
    s.peer(".", seq=1001, ack=synack.seq + 1, win=5000, data=b"data")
    conn = lst.accept()
    assert conn.snd.wscale == 0 and not conn.neg.sack_ok and conn.snd.mss == 1460
    assert conn.recv(10) == b"data"           # data on the third segment is taken in


def test_auto_uses_cookies_only_once_the_syn_queue_is_full():
    s = Script()
    lst = s.layer.listen(80, backlog=2)
    for i in range(3):
        s.peer("S", seq=100, sport=5000 + i)
    sent = s.sent()
    assert len(lst.syn_queue) == 2 and len(sent) == 3
    assert s.counters.get("tcp.syncookies.sent") == 1
    s.peer(".", seq=101, ack=sent[2].seq + 1, sport=5002)
    assert lst.accept().state is State.ESTABLISHED


def test_invalid_or_expired_cookie_is_dropped_counted_and_reset():
    s = Script(TCPConfig(syncookies=SynCookieMode.ALWAYS))
    lst = s.layer.listen(80)
    synack = _cookie_synack(s, ts=None)
    s.peer(".", seq=1001, ack=synack.seq + 2)                    # forged
    s.expect("R", seq=synack.seq + 2)
    assert lst.accept() is None and s.counters.get("tcp.syncookies.failed") == 1
    s.at(MAX_AGE * TICK + 1)
    s.peer(".", seq=1001, ack=synack.seq + 1)                    # genuine but too old
    s.expect("R")
    assert lst.accept() is None and s.counters.get("tcp.syncookies.failed") == 2


def test_never_drops_when_the_syn_queue_is_full():
    s = Script(TCPConfig(syncookies=SynCookieMode.NEVER))
    lst = s.layer.listen(80, backlog=1)
    s.peer("S", seq=100, sport=5000)
    s.peer("S", seq=100, sport=5001)
    assert len(s.sent()) == 1 and s.counters.get("tcp.syncookies.sent") == 0
