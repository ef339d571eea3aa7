"""Blind in-window attacks: RFC 5961 (RST §3, SYN §4, data/ACK §5, rate limits §7) and RFC 1337."""
from __future__ import annotations

import pytest

from netstack.tcp import State, TCPConfig
from tests.support.tcp_script import Script


def opened(cfg=None, ts=False):
    s = Script(cfg or TCPConfig(rcvbuf=4000, wscale=None, challenge_ack_interval=0.5))
    conn, synack = s.passive_open(ts=(100, 0) if ts else None, wscale=None)
    s.sent()
    return s, conn, synack.seq + 1, 1001


@pytest.mark.parametrize("offset", [1, 100, 3999])
def test_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack(offset):
    s, conn, us, them = opened()
    s.peer("R", seq=them + offset)
    s.expect(".", seq=us, ack=them)                  # the challenge: <SEQ=SND.NXT><ACK=RCV.NXT>
    assert conn.state is State.ESTABLISHED and conn.error is None
    assert s.counters.get("tcp.in.rst_in_window") == 1 and s.counters.get("tcp.in.challenge_ack") == 1
    # the real peer answers the challenge with an exact RST: that one resets
    s.after(1.0)
    s.peer("R", seq=them)
    assert conn.state is State.CLOSED and isinstance(conn.error, ConnectionResetError)


def test_rst_outside_the_window_is_silently_dropped():
    s, conn, us, them = opened()
    s.peer("R", seq=them + 4000)
    s.peer("R", seq=them - 1)
    s.expect_nothing()
    assert conn.state is State.ESTABLISHED


def test_ack_older_than_max_snd_wnd_is_dropped_with_a_challenge_ack():
    s, conn, us, them = opened()
    wnd = conn.snd.max_wnd
    s.peer("P.", seq=them, ack=us - wnd - 1, data=b"evil")     # RFC 5961 §5.2: outside the ACK range
    s.expect(".", seq=us, ack=them)
    assert conn.readable == 0 and s.counters.get("tcp.in.drop.ack_too_old") == 1
    s.after(1.0)
    s.peer("P.", seq=them, ack=us - wnd, data=b"fine")         # SND.UNA - MAX.SND.WND is acceptable
    assert conn.recv(10) == b"fine"


def test_challenge_acks_are_rate_limited_per_connection():
    s, conn, us, them = opened()
    for _ in range(5):
        s.peer("R", seq=them + 7)
    s.expect(".", ack=them)
    s.expect_nothing()                                          # one per 0.5 s
    assert s.counters.get("tcp.challenge_acks_limited") == 4
    s.after(0.6)
    s.peer("S", seq=them + 9)
    s.expect(".", ack=them)


def test_global_challenge_ack_budget_is_randomised_and_bounded():
    limit = 20
    budgets = set()
    for seed in range(6):
        s = Script(TCPConfig(challenge_ack_limit=limit, challenge_ack_interval=0.0))
        s.layer._rng.seed(seed)
        conn, synack = s.passive_open(ts=None, wscale=None)
        them = 1001
        s.sent()
        s.at(10.0)
        for _ in range(100):
            s.peer("R", seq=them + 5)
        budgets.add(len(s.sent()))
    assert all(limit // 2 <= b <= limit + limit // 2 for b in budgets)
    assert len(budgets) > 1                                     # not a fixed, probeable count


def test_time_wait_is_not_assassinated_by_rst():
    s, conn, us, them = opened()
    conn.shutdown_write()
    s.poll()
    s.peer("F.", seq=them, ack=us + 1)
    assert conn.state is State.TIME_WAIT
    s.sent()
    s.peer("R", seq=them + 1)                                   # RFC 1337: ignored
    assert conn.state is State.TIME_WAIT and s.counters.get("tcp.in.rst_in_time_wait") == 1
    s.at(2 * s.config.msl + 0.1)
    assert conn.state is State.CLOSED


# --- the window never shrinks (RFC 9293 §3.8.6, RFC 7323 §2.4) -------------------------------------

@pytest.mark.parametrize("shift", range(15))
def test_advertised_right_edge_never_moves_left_at_every_scale(shift):
    import random
    from netstack.tcp.recv_space import ReceiveSpace
    rng = random.Random(shift)
    r = ReceiveSpace(256 * 1024, 256 * 1024, 1448)
    r.wscale = shift
    r.start(0xFFFFFFFF - 70000)                          # also across the 2^32 wrap
    edge = None
    for _ in range(3000):
        op = rng.random()
        if op < 0.5 and r.wnd:                           # data arrives (within the window)
            n = rng.randrange(1, min(r.wnd, 4000) + 1)
            r.buf.data += bytes(n)
            r.nxt = (r.nxt + n) & 0xFFFFFFFF
        elif r.buf.data:                                 # the user reads some
            del r.buf.data[:rng.randrange(1, len(r.buf.data) + 1)]
        field = r.advertise()
        peer_edge = (r.nxt + (field << shift)) & 0xFFFFFFFF   # what the peer computes
        if edge is not None:
            assert ((peer_edge - edge) & 0xFFFFFFFF) < 0x80000000, "the right edge moved left"
        edge = peer_edge
        assert peer_edge == r.adv                        # we accept exactly what we advertised


def test_promised_data_is_stored_past_the_buffer_within_its_slack_and_trimmed_beyond():
    from netstack.tcp.recv_space import ReceiveSpace
    r = ReceiveSpace(8000, 8000, 1000)
    r.buf.data += bytes(8000)                            # full: what the rounding promised must still fit
    assert r.room == 1000                                # an eighth of the buffer
    s = Script(TCPConfig(rcvbuf=8000, wscale=None))
    conn, synack = s.passive_open(ts=None, wscale=None)
    us, them = synack.seq + 1, 1001
    conn.rcv.buf.data += bytes(8000)                     # as if the application had not read,
    conn.rcv.committed = conn.rcv.nxt                    # nothing is backed by the buffer any more,
    conn.rcv.adv = (conn.rcv.nxt + 2000) & 0xFFFFFFFF    # and 2000 bytes had been promised by rounding
    s.peer("P.", seq=them, ack=us, data=b"y" * 1500)
    assert conn.readable == 9000                         # 1000 stored, 500 left for the peer to resend
    assert s.counters.get("tcp.in.drop.rcvbuf_full") == 1
    s.expect(".", ack=them + 1000)


@pytest.mark.parametrize("shift", [0, 7, 14])
def test_a_window_update_always_opens_the_window(shift):
    """An update sent because the user read must carry a larger window than the last one:
    with an unchanged window it would be a duplicate ACK to the peer (RFC 5681 §2)."""
    import random
    from netstack.tcp.recv_space import ReceiveSpace
    rng = random.Random(shift)
    r = ReceiveSpace(64 * 1024, 64 * 1024, 1448)
    r.wscale = shift
    r.start(1000)
    last = r.advertise()
    for _ in range(3000):
        if rng.random() < 0.6 and r.wnd:
            n = rng.randrange(1, min(r.wnd, 3000) + 1)
            r.take_in_order(bytes(n), n)
            last = r.advertise()                     # the ACK of that data
        elif r.buf.data:
            del r.buf.data[:rng.randrange(1, len(r.buf.data) + 1)]
            if r.window_update_due():
                field = r.advertise()
                assert field > last, "a window update that does not open the window"
                last = field
