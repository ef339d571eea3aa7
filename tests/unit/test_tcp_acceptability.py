"""The segment acceptability test (RFC 9293 §3.10.7.4 first), PAWS (RFC 7323 §5),
SYN/RST/ACK checks in synchronized states."""
import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.recv_space import ReceiveSpace
from tests.support.tcp_script import Script


@pytest.mark.parametrize("seg_len,wnd,seq_off,ok", [
    (0, 0, 0, True), (0, 0, 1, False), (0, 0, -1, False),
    (0, 100, 0, True), (0, 100, 99, True), (0, 100, 100, False), (0, 100, -1, False),
    (10, 0, 0, False),
    (10, 100, 0, True), (10, 100, 99, True), (10, 100, 100, False),
    (10, 100, -5, True),                         # tail inside the window
    (10, 100, -10, False),                       # entirely old
    (10, 100, -9, True),
])
def test_acceptability_table(seg_len, wnd, seq_off, ok):
    r = ReceiveSpace(4096, 4096, 1460)
    for base in (1000, 0xFFFFFFF0):              # also across the 2**32 boundary
        r.nxt = base
        r.adv = (base + wnd) & 0xFFFFFFFF        # RCV.WND = wnd
        assert r.acceptable((base + seq_off) & 0xFFFFFFFF, seg_len) is ok


def opened(ts=True, cfg=None):
    s = Script(cfg or TCPConfig(rcvbuf=4000, wscale=None))
    conn, synack = s.passive_open(ts=(100, 0) if ts else None, wscale=None)
    return s, conn, synack.seq + 1, 1001


def test_unacceptable_data_is_acked_not_delivered():
    s, conn, us, them = opened(ts=False)
    s.peer("P.", seq=them + 5000, ack=us, data=b"far")
    s.expect(".", seq=us, ack=them)
    s.peer("P.", seq=them - 10, ack=us, data=b"old")
    s.expect(".", seq=us, ack=them)
    assert conn.readable == 0
    assert s.counters.get("tcp.in.drop.unacceptable") == 2


def test_overlapping_old_data_is_trimmed():
    s, conn, us, them = opened(ts=False)
    s.peer("P.", seq=them, ack=us, data=b"hello")
    s.sent()
    s.peer("P.", seq=them + 3, ack=us, data=b"lo world")
    s.expect(".", ack=them + 11)                 # partly duplicate: ACK at once (RFC 5681 §4.2)
    assert conn.recv(100) == b"hello world"


def test_data_beyond_window_is_trimmed_and_fin_dropped():
    s, conn, us, them = opened(ts=False)
    wnd = conn.info()["rcv_wnd"]
    s.peer("FP.", seq=them, ack=us, data=b"x" * (wnd + 10))
    assert conn.readable == wnd
    assert conn.state is State.ESTABLISHED      # the FIN was beyond the window
    s.expect(".", ack=them + wnd, win=0)


def test_zero_window_still_processes_ack():
    s, conn, us, them = opened(ts=False)
    wnd = conn.info()["rcv_wnd"]
    conn.send(b"abc"); s.poll(); s.sent()
    s.peer("P.", seq=them, ack=us, data=b"x" * wnd)
    s.poll()                                     # (a segment beyond the MSS: ACKed at the round's end)
    s.expect(".", ack=them + wnd, win=0)
    s.peer("P.", seq=them + wnd, ack=us + 3, data=b"more")  # zero window: text dropped, ACK used
    assert conn.snd.una == us + 3
    assert conn.readable == wnd
    s.expect(".", ack=them + wnd, win=0)


def test_rst_must_be_in_window():
    s, conn, us, them = opened(ts=False)
    s.peer("R", seq=them + 100000)
    assert conn.state is State.ESTABLISHED
    s.peer("R", seq=them + 10)                   # in window, not exact: a challenge ACK (RFC 5961 §3.2)
    s.expect(".", seq=us, ack=them)
    assert conn.state is State.ESTABLISHED
    s.peer("R", seq=them)                        # exactly RCV.NXT: reset
    assert conn.state is State.CLOSED


def test_syn_in_synchronized_state_gets_challenge_ack():
    s, conn, us, them = opened(ts=False)
    s.peer("S", seq=them + 10)
    s.expect(".", seq=us, ack=them)
    assert conn.state is State.ESTABLISHED
    assert s.counters.get("tcp.in.challenge_ack") == 1


def test_ack_of_unsent_data_is_answered_and_dropped():
    s, conn, us, them = opened(ts=False)
    s.peer("P.", seq=them, ack=us + 50, data=b"data")
    s.expect(".", seq=us, ack=them)
    assert conn.readable == 0 and conn.snd.una == us


def test_segment_without_ack_dropped():
    s, conn, us, them = opened(ts=False)
    s.peer("P", seq=them, data=b"noack")
    assert conn.readable == 0
    s.expect_nothing()


def test_paws_drops_old_timestamp_and_acks():
    s, conn, us, them = opened()
    s.peer("P.", seq=them, ack=us, data=b"a", ts=(200, 0))
    assert conn.neg.ts_recent == 200
    s.peer("P.", seq=them + 1, ack=us, data=b"b", ts=(150, 0))   # older TSval: PAWS
    assert conn.readable == 1
    assert s.counters.get("tcp.in.drop.paws") == 1
    seg = s.sent()[-1]
    assert seg.ack == them + 1 and seg.options.ts_ecr == 200
    # TSval wraps: 2**32-10 -> 5 is newer
    s.peer("P.", seq=them + 1, ack=us, data=b"c", ts=(0xFFFFFFF0, 0))
    assert conn.readable == 1                                       # that one IS old (modular)


def test_paws_24_day_rule():
    s, conn, us, them = opened()
    s.peer("P.", seq=them, ack=us, data=b"a", ts=(1000, 0))
    s.at(s.now + 25 * 24 * 3600)
    s.sent()
    s.peer("P.", seq=them + 1, ack=us, data=b"b", ts=(10, 0))
    assert conn.readable == 2 and conn.neg.ts_recent == 10


def test_ts_recent_updated_only_for_segments_at_or_before_last_ack():
    s, conn, us, them = opened()
    s.peer("P.", seq=them + 10, ack=us, data=b"later", ts=(300, 0))   # out of order
    assert conn.neg.ts_recent != 300
    s.peer("P.", seq=them, ack=us, data=b"x" * 10, ts=(250, 0))
    assert conn.neg.ts_recent == 250
    seg = s.sent()[-1]
    assert seg.options.ts_ecr == 250
