"""Reliable transfer: delayed ACK, out-of-order queue, segmentation, Nagle, SWS avoidance,
zero-window probing, RTO/Karn/retry limit, fast retransmit, window scaling, wraparound."""
import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ConnEvent
from tests.support.tcp_script import Script

MSS = 1448   # 1460 - 12 (timestamps)


def opened(cfg=None, *, ts=True, wscale=None, win=65535, nodelay=None):
    s = Script(cfg)
    conn, synack = s.passive_open(ts=(100, 0) if ts else None, wscale=wscale, win=win)
    if nodelay is not None:
        conn.set_nodelay(nodelay)
    return s, conn, synack.seq + 1, 1001


# ---------------------------------------------------------------- delayed ACK

NO_QUICKACK = TCPConfig(quickack_segments=0)      # the plain RFC 1122 delayed ACK


def test_delayed_ack_every_second_full_segment():
    s, conn, us, them = opened(NO_QUICKACK)
    s.peer(".", seq=them, ack=us, data=b"a" * MSS, ts=(101, 0))
    s.expect_nothing()
    assert conn.timers.delack == pytest.approx(0.04)      # delack_min: the timer starts low
    s.peer(".", seq=them + MSS, ack=us, data=b"b" * MSS, ts=(102, 0))
    s.expect(".", ack=them + 2 * MSS)
    assert conn.timers.delack is None


def test_delayed_ack_timer_fires_within_200ms():
    # The timer pinned at its maximum (min = max = 200 ms): the ACK comes exactly then.
    s, conn, us, them = opened(TCPConfig(quickack_segments=0, delack_min=0.2))
    s.at(1.0)
    s.peer("P.", seq=them, ack=us, data=b"ping", ts=(101, 0))
    s.expect_nothing()
    s.at(1.19)
    s.expect_nothing()
    s.at(1.2)
    s.expect(".", ack=them + 4)
    assert s.counters.get("tcp.delayed_acks") == 1


def test_delack_timeout_configurable():
    s, conn, us, them = opened(TCPConfig(delack_min=0.01, delack_timeout=0.05, quickack_segments=0))
    s.peer("P.", seq=them, ack=us, data=b"ping", ts=(101, 0))
    assert conn.timers.delack == pytest.approx(0.01)
    s.at(0.01)
    s.expect(".", ack=them + 4)
    assert conn.acks.ato == pytest.approx(0.02)               # doubled: bounded by delack_timeout
    s2, conn2, us2, them2 = opened(TCPConfig(delack_timeout=0.03, quickack_segments=0))
    assert conn2.acks.ato == pytest.approx(0.03)              # min (40 ms) above max: the max wins
    s2.peer("P.", seq=them2, ack=us2, data=b"a", ts=(101, 0))
    s2.at(1.0)
    s2.peer("P.", seq=them2 + 1, ack=us2, data=b"b", ts=(102, 0))
    assert conn2.acks.ato == pytest.approx(0.03) and conn2.timers.delack == pytest.approx(1.03)


def test_delayed_ack_timeout_adapts_between_40_and_200_ms():
    # RFC 1122 §4.2.3.2 (< 0.5 s) and our bound (<= 200 ms): the adaptive timer (Linux ATO)
    # starts at 40 ms, doubles each time it expires, and never exceeds 200 ms.
    s, conn, us, them = opened(NO_QUICKACK)
    delays = []
    seq = them
    for i in range(6):
        s.at(s.now + 5.0)                                # sparse requests, never answered
        s.peer("P.", seq=seq, ack=us, data=b"req", ts=(101 + i, 0))
        seq += 3
        s.expect_nothing()
        t0 = s.now
        while not s.layer.outbox:
            s.at(conn.timers.delack)
        s.expect(".", ack=seq)
        delays.append(round(s.now - t0, 6))
    assert delays == [0.04, 0.08, 0.16, 0.2, 0.2, 0.2]


def test_delayed_ack_timeout_shrinks_for_closely_spaced_data():
    s, conn, us, them = opened(NO_QUICKACK)
    conn.acks.ato = 0.2                                       # as after sparse traffic
    s.at(1.0)
    s.peer(".", seq=them, ack=us, data=b"a" * 100, ts=(101, 0))
    s.sent()
    s.at(1.01)                                           # 10 ms later: m <= delack_min / 2
    s.peer(".", seq=them + 100, ack=us, data=b"b" * 100, ts=(102, 0))
    assert conn.acks.ato == pytest.approx(0.2 / 2 + 0.02)
    s.at(1.06)                                           # 50 ms later, m < ato: ato/2 + m
    s.peer(".", seq=them + 200, ack=us, data=b"c" * 100, ts=(103, 0))
    assert conn.acks.ato == pytest.approx(0.12 / 2 + 0.05)


# ---------------------------------------------------------------- quick-ACK

def test_quickack_first_segments_after_handshake_are_acked_at_once():
    s, conn, us, them = opened()
    # window 65535 / (2 * 1448) = 22 -> capped at quickack_segments = 16
    assert conn.acks.quickack == 16
    for i in range(16):
        s.peer("P.", seq=them + 10 * i, ack=us, data=b"q" * 10, ts=(101 + i, 0))
        s.expect(".", ack=them + 10 * (i + 1))
        assert conn.timers.delack is None
    s.peer("P.", seq=them + 160, ack=us, data=b"q" * 10, ts=(200, 0))
    s.expect_nothing()                                   # 17th: the ordinary delayed ACK
    assert conn.timers.delack == pytest.approx(s.now + 0.04)
    assert s.counters.get("tcp.quickacks") == 16


def test_quickack_count_follows_a_small_window():
    s, conn, us, them = opened(TCPConfig(rcvbuf=6 * 1460))
    assert conn.acks.quickack == (6 * 1460) // (2 * MSS)         # = 3, below the cap of 16
    s2, conn2, _, _ = opened(TCPConfig(rcvbuf=1000))
    assert conn2.acks.quickack == 2                               # at least 2


def test_quickack_after_idle_longer_than_rto():
    s, conn, us, them = opened()
    conn.acks.quickack = 0                                    # quick-ACK credit used up
    s.at(1.0)
    s.peer("P.", seq=them, ack=us, data=b"one", ts=(101, 0))
    s.expect_nothing()                                   # delayed
    s.at(1.5)
    s.expect(".", ack=them + 3)
    assert conn.rto.rto == pytest.approx(1.0)
    s.at(1.9)                                            # idle 0.9 s < RTO: still delayed
    s.peer("P.", seq=them + 3, ack=us, data=b"two", ts=(102, 0))
    s.expect_nothing()
    s.at(2.5)
    s.expect(".", ack=them + 6)
    s.at(4.0)                                            # idle 2.1 s > RTO: quick-ACK again
    s.peer("P.", seq=them + 6, ack=us, data=b"three", ts=(103, 0))
    s.expect(".", ack=them + 11)
    assert conn.acks.quickack == 16 - 1


def test_quickack_disabled_by_config():
    s, conn, us, them = opened(NO_QUICKACK)
    assert conn.acks.quickack == 0
    s.peer("P.", seq=them, ack=us, data=b"x", ts=(101, 0))
    s.expect_nothing()
    s.at(10.0)
    s.sent()
    s.peer("P.", seq=them + 1, ack=us, data=b"y", ts=(102, 0))
    s.expect_nothing()                                   # not after idle either


def test_reply_data_piggybacks_the_ack():
    s, conn, us, them = opened()
    conn.on_event = lambda ev: ev == ConnEvent.READABLE and conn.send(conn.recv(100).upper())
    s.peer("P.", seq=them, ack=us, data=b"echo", ts=(101, 0))
    s.expect("P.", seq=us, ack=them + 4, data=b"ECHO")
    s.expect_nothing()
    assert conn.timers.delack is None


def test_large_gro_segment_accepted_and_acked_at_once():
    s, conn, us, them = opened()
    blob = bytes(range(256)) * 40             # 10240 bytes, ~7 MSS in one segment
    s.peer(".", seq=them, ack=us, data=blob, ts=(101, 0))
    s.expect(".", ack=them + len(blob))
    assert conn.recv(20000) == blob


# ---------------------------------------------------------------- out of order

def test_out_of_order_immediate_dup_ack_then_fill():
    s, conn, us, them = opened()
    s.peer(".", seq=them + 100, ack=us, data=b"B" * 100, ts=(101, 0))
    s.expect(".", ack=them)                   # immediate duplicate ACK
    s.peer(".", seq=them + 300, ack=us, data=b"D" * 100, ts=(102, 0))
    s.expect(".", ack=them)
    assert conn.readable == 0 and conn.rcv.ooo.nbytes == 200
    s.peer(".", seq=them, ack=us, data=b"A" * 100, ts=(103, 0))
    s.expect(".", ack=them + 200)             # hole filled: immediate ACK
    s.peer(".", seq=them + 200, ack=us, data=b"C" * 100, ts=(104, 0))
    s.expect(".", ack=them + 400)
    assert conn.recv(1000) == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100


def test_out_of_order_fin_held_until_hole_filled():
    s, conn, us, them = opened()
    s.peer("F.", seq=them + 5, ack=us, data=b"world", ts=(101, 0))
    s.expect(".", ack=them)
    assert conn.state is State.ESTABLISHED
    s.peer(".", seq=them, ack=us, data=b"hello", ts=(102, 0))
    s.expect(".", ack=them + 11)
    assert conn.state is State.CLOSE_WAIT
    assert conn.recv(100) == b"helloworld" and conn.recv(1) == b""


def test_out_of_order_queue_byte_bound():
    s, conn, us, them = opened(TCPConfig(ooo_max=150))
    s.peer(".", seq=them + 100, ack=us, data=b"x" * 100, ts=(101, 0))
    s.peer(".", seq=them + 300, ack=us, data=b"y" * 100, ts=(102, 0))
    assert conn.rcv.ooo.nbytes == 100
    assert s.counters.get("tcp.in.drop.ooo_full") == 1


# ---------------------------------------------------------------- sending

def test_segmentation_at_mss_and_max_segment_knob():
    s, conn, us, them = opened(nodelay=True)
    conn.send(b"z" * 4000); s.poll()
    segs = s.sent()
    assert [len(x.payload) for x in segs] == [MSS, MSS, 4000 - 2 * MSS]
    assert [x.seq for x in segs] == [us, us + MSS, us + 2 * MSS]
    s2, conn2, us2, _ = opened(nodelay=True)
    conn2.snd.max_segment = 3 * MSS                # TSO later: bigger than MSS
    conn2.send(b"z" * 4000); s2.poll()
    assert [len(x.payload) for x in s2.sent()] == [4000]


def test_send_buffer_bound():
    s, conn, us, them = opened(TCPConfig(sndbuf=1000))
    assert conn.send(b"x" * 5000) == 1000
    assert conn.send(b"y") == 0 and conn.writable == 0
    s.poll()
    seg = s.sent()[0]
    s.peer(".", seq=them, ack=us + 1000, ts=(101, seg.options.ts_val))
    assert conn.writable == 1000 and conn.events[-1] == ConnEvent.WRITABLE


def test_nagle_holds_small_segment_until_ack():
    s, conn, us, them = opened()
    conn.send(b"a"); s.poll()
    first = s.expect("P.", data=b"a")
    conn.send(b"b"); s.poll()
    conn.send(b"c"); s.poll()
    s.expect_nothing()                         # Nagle: a small segment is outstanding
    s.peer(".", seq=them, ack=us + 1, ts=(101, first.options.ts_val))
    s.expect("P.", seq=us + 1, data=b"bc")


def test_minshall_nagle_sends_the_tail_of_a_write_larger_than_mss_at_once():
    # RFC 896 as modified by Minshall (RFC 1122 §4.2.3.4): only an unACKed *small* segment
    # holds the next small one.  Classic Nagle would hold the 600-byte tail behind the full
    # segment, and the peer's delayed ACK (one full segment only) would stall it ~200 ms.
    s, conn, us, them = opened()
    assert not conn.nodelay
    conn.send(b"m" * (MSS + 600)); s.poll()
    s.expect(".", seq=us, len=MSS)
    tail = s.expect("P.", seq=us + MSS, len=600)
    assert conn.snd.sml == us + MSS + 600
    # A second small write while that small segment is unACKed: classic Nagle applies.
    conn.send(b"x" * 10); s.poll()
    s.expect_nothing()
    # An ACK of the full segment alone is not enough: the small one is still in flight.
    s.peer(".", seq=them, ack=us + MSS, ts=(101, tail.options.ts_val))
    s.expect_nothing()
    s.peer(".", seq=them, ack=us + MSS + 600, ts=(102, tail.options.ts_val))
    s.expect("P.", seq=us + MSS + 600, data=b"x" * 10)


def test_minshall_nagle_small_segment_may_follow_unacked_full_segments():
    s, conn, us, them = opened()
    conn.send(b"f" * MSS); s.poll()
    s.expect("P.", seq=us, len=MSS)           # full-sized: Nagle never holds it
    conn.send(b"s" * 100); s.poll()
    # Data is outstanding, but no small segment: Minshall lets this one go.
    s.expect("P.", seq=us + MSS, data=b"s" * 100)
    conn.send(b"t" * 100); s.poll()
    s.expect_nothing()                        # now a small segment is in flight


def test_minshall_nagle_across_sequence_wrap():
    s = Script()
    s.layer._isn = lambda conn, now: 0xFFFFFFFF - MSS - 50
    conn, synack = s.passive_open()
    us, them = synack.seq + 1, 1001
    conn.send(b"w" * (MSS + 600)); s.poll()
    assert [len(x.payload) for x in s.sent()] == [MSS, 600]   # tail crosses 2^32
    conn.send(b"y"); s.poll()
    s.expect_nothing()
    s.peer(".", seq=them, ack=us + MSS + 600, ts=(101, 0))
    s.expect("P.", seq=(us + MSS + 600) & 0xFFFFFFFF, data=b"y")


def test_nodelay_sends_small_segments_at_once():
    s, conn, us, them = opened(nodelay=True)
    conn.send(b"a"); s.poll()
    conn.send(b"b"); s.poll()
    assert [bytes(x.payload) for x in s.sent()] == [b"a", b"b"]


def test_config_nodelay_default():
    s, conn, us, them = opened(TCPConfig(nodelay=True))
    assert conn.nodelay


def test_sender_sws_avoidance():
    s, conn, us, them = opened(nodelay=True)          # peer offered 65535 unscaled
    s.peer(".", seq=them, ack=us, win=1000, ts=(101, 0))
    conn.send(b"q" * 5000); s.poll()
    s.expect_nothing()                         # 1000 < MSS and < max window / 2: wait
    s.peer(".", seq=them, ack=us, win=40000, ts=(102, 0))
    assert [len(x.payload) for x in s.sent()] == [MSS, MSS, MSS, 5000 - 3 * MSS]


def test_receiver_sws_avoidance_and_window_update():
    cfg = TCPConfig(rcvbuf=8 * MSS, wscale=None)
    s, conn, us, them = opened(cfg)
    rcvbuf = 8 * MSS
    for i in range(8):
        s.peer(".", seq=them + i * MSS, ack=us, data=b"r" * MSS, ts=(101, 0))
    acks = s.sent()
    assert acks[-1].window == 0 and acks[-1].ack == them + rcvbuf
    conn.recv(100); s.poll()
    s.expect_nothing()                         # a tiny opening is not advertised
    assert conn.rcv.advertise() == 0      # ... nor piggybacked (SWS: < min(buf/2, MSS))
    conn.recv(MSS); s.poll()
    upd = s.expect(".", ack=them + rcvbuf)     # now at least one MSS: update at once
    assert upd.window == 100 + MSS
    conn.recv(MSS); s.poll()
    s.expect_nothing()                         # a further small increase waits (< 2*MSS)
    conn.recv(2 * MSS); s.poll()
    upd = s.expect(".", ack=them + rcvbuf)
    assert upd.window == 100 + 4 * MSS


def test_advertised_window_is_scaled():
    s, conn, us, them = opened(wscale=7)
    s.peer("P.", seq=them, ack=us, data=b"x" * 10, ts=(101, 0))
    s.at(0.2)
    ack = s.expect(".")
    # rounded up (the edge never moves left), with 16 granules of the buffer kept back as headroom
    assert ack.window == -(-(256 * 1024 - 10 - 16 * 127) >> 7)


def test_zero_window_persist_probes_with_backoff():
    s, conn, us, them = opened(nodelay=True)
    s.peer(".", seq=them, ack=us, win=0, ts=(101, 0))
    conn.send(b"hello"); s.poll()
    s.expect_nothing()
    assert conn.timers.persist is not None and conn.timers.retransmit is None
    t1 = conn.timers.persist
    s.at(t1)
    s.expect(".", seq=us, data=b"h")           # one byte beyond the zero window
    t2 = conn.timers.persist
    s.at(t2)
    s.expect(".", seq=us, data=b"h")
    t3 = conn.timers.persist
    assert t3 - t2 == pytest.approx(2 * (t2 - t1))   # exponential backoff
    s.peer(".", seq=them, ack=us + 1, win=1000, ts=(102, 0))   # window opens, probe byte taken
    s.expect("P.", seq=us + 1, data=b"ello")
    assert conn.timers.persist is None
    assert s.counters.get("tcp.window_probes") == 2


# ---------------------------------------------------------------- retransmission

def test_rto_retransmits_head_with_backoff_and_karn():
    s, conn, us, them = opened(TCPConfig(tlp=False), ts=False, nodelay=True)
    conn.send(b"data"); s.poll()
    s.expect("P.", seq=us, data=b"data")
    assert conn.timers.retransmit == 1.0
    s.at(1.0)
    s.expect("P.", seq=us, data=b"data")
    assert conn.timers.retransmit == 3.0 and conn.rto.rto == 2.0
    s.at(1.5)
    samples = conn.rto.samples                 # (one from the handshake)
    s.peer(".", seq=them, ack=us + 4)
    assert conn.rto.samples == samples         # Karn: no sample from a retransmitted segment
    assert conn.timers.retransmit is None and conn.recovery.retrans_segs == 1
    conn.send(b"more"); s.poll(); s.sent()
    s.at(1.8)
    s.peer(".", seq=them, ack=us + 8)
    assert conn.rto.samples == samples + 1      # a fresh segment is timed: R = 0.3
    assert conn.rto.srtt == pytest.approx(0.875 * 0.0 + 0.125 * 0.3)
    assert s.counters.get("tcp.retrans_segs") == 1


def test_rtt_from_timestamp_echo():
    s, conn, us, them = opened(nodelay=True)
    conn.send(b"data"); s.poll()
    seg = s.expect("P.")
    s.at(0.25)
    s.peer(".", seq=them, ack=us + 4, ts=(150, seg.options.ts_val))
    # handshake sample R=0, then R=0.25 (RFC 6298 §2.3): SRTT = 7/8*0 + 1/8*0.25
    assert conn.rto.samples == 2
    assert conn.rto.srtt == pytest.approx(0.125 * 0.25, abs=0.001)


def test_retry_limit_aborts_with_timeout_error():
    s, conn, us, them = opened(TCPConfig(data_retries=3), ts=False, nodelay=True)
    conn.send(b"lost"); s.poll()
    s.expect("P.")
    for t in (1.0, 3.0, 7.0):
        s.at(t)
        s.expect("P.", seq=us, data=b"lost")
    s.at(15.0)
    s.expect("R", seq=us + 4)
    assert conn.state is State.CLOSED and isinstance(conn.error, TimeoutError)
    assert ConnEvent.TIMEOUT in conn.events
    with pytest.raises(TimeoutError):
        conn.send(b"x")


def test_rto_bounds_configurable():
    s, conn, us, them = opened(TCPConfig(rto_initial=0.5, rto_min=0.2, rto_max=1.0), ts=False,
                               nodelay=True)
    conn.send(b"x"); s.poll(); s.sent()
    assert conn.timers.retransmit == pytest.approx(0.2 + s.now)   # handshake R=0 -> RTO = min
    for _ in range(4):
        s.at(conn.timers.retransmit)
    assert conn.rto.rto == 1.0


def test_fast_retransmit_on_third_duplicate_ack():
    s, conn, us, them = opened(nodelay=True)
    conn.send(b"f" * (6 * MSS)); s.poll()
    segs = s.sent()
    assert len(segs) == 6
    ecr = segs[0].options.ts_val
    s.peer(".", seq=them, ack=us + MSS, ts=(101, ecr))      # new data acked
    for i in range(2):
        s.peer(".", seq=them, ack=us + MSS, ts=(102 + i, ecr))
        s.expect_nothing()
    s.peer(".", seq=them, ack=us + MSS, ts=(105, ecr))
    s.expect(".", seq=us + MSS, len=MSS)                     # the lost segment, at once
    assert s.counters.get("tcp.fast_retransmits") == 1
    assert conn.cc.in_recovery


# ---------------------------------------------------------------- wraparound

def test_receive_across_sequence_wrap():
    s = Script()
    conn, synack = s.passive_open(isn=0xFFFFFF00)
    us = synack.seq + 1
    them = 0xFFFFFF01
    data = bytes(range(256)) * 8
    for i in range(0, len(data), 500):
        s.peer(".", seq=them + i, ack=us, data=data[i:i + 500], ts=(101 + i, 0))
    assert conn.recv(5000) == data
    assert conn.rcv.nxt == (them + len(data)) & 0xFFFFFFFF
    s.peer("F.", seq=them + len(data), ack=us, ts=(9000, 0))
    assert conn.state is State.CLOSE_WAIT


def test_send_across_sequence_wrap():
    s = Script()
    s.layer._isn = lambda conn, now: 0xFFFFFFFF - 1000
    conn, synack = s.passive_open()
    us = synack.seq + 1
    assert us == 0xFFFFFFFF - 999
    conn.set_nodelay(True)
    conn.send(b"w" * 3000); s.poll()
    segs = s.sent()
    assert sum(len(x.payload) for x in segs) == 3000
    assert segs[-1].seq < 3000                  # wrapped
    s.peer(".", seq=1001, ack=us + 3000, ts=(200, segs[-1].options.ts_val))
    assert conn.snd.una == (us + 3000) & 0xFFFFFFFF and conn.bytes_unacked == 0
    assert conn.timers.retransmit is None


def test_unanswered_zero_window_probes_abort():
    s, conn, us, them = opened(TCPConfig(data_retries=3), nodelay=True)
    s.peer(".", seq=them, ack=us, win=0, ts=(101, 0))
    conn.send(b"stuck"); s.poll()
    probes = 0
    while conn.state is State.ESTABLISHED and probes < 10:
        s.at(conn.timers.persist)
        probes += 1
        if probes == 2:                       # one answer (still zero window) resets the count
            s.peer(".", seq=them, ack=us, win=0, ts=(102, 0))
    assert isinstance(conn.error, TimeoutError)
    assert probes == 6


def test_sack_blocks_reported_when_negotiated():
    s, conn, us, them = opened()                     # passive_open offers SACK-permitted
    assert conn.neg.sack_ok
    s.peer(".", seq=them + 100, ack=us, data=b"B" * 100, ts=(101, 0))
    ack = s.expect(".", ack=them)
    assert ack.options.sack_blocks == ((them + 100, them + 200),)
    s.peer(".", seq=them + 300, ack=us, data=b"D" * 100, ts=(102, 0))
    ack = s.expect(".", ack=them)
    # the block with the most recent segment first (RFC 2018 §4)
    assert ack.options.sack_blocks == ((them + 300, them + 400), (them + 100, them + 200))
    assert ack.options.ts_ecr == 101               # RFC 7323 §4.3: OOO does not update TS.Recent
    s.peer(".", seq=them, ack=us, data=b"A" * 100, ts=(103, 0))
    ack = s.expect(".", ack=them + 200)
    assert ack.options.sack_blocks == ((them + 300, them + 400),)


def test_no_sack_blocks_without_negotiation():
    s = Script()
    conn, synack = s.passive_open(sackok=False)
    s.peer(".", seq=1101, ack=synack.seq + 1, data=b"B" * 100, ts=(101, 0))
    assert s.expect(".", ack=1001).options.sack_blocks == ()


def test_newreno_partial_ack_retransmits_next_hole():
    s, conn, us, them = opened(nodelay=True)
    conn.send(b"f" * (8 * MSS)); s.poll()
    segs = s.sent()
    ecr = segs[0].options.ts_val
    # segments 1 and 3 are lost; the peer ACKs segment 0, then dup-ACKs
    s.peer(".", seq=them, ack=us + MSS, ts=(101, ecr))
    for i in range(3):
        s.peer(".", seq=them, ack=us + MSS, ts=(102 + i, ecr))
    s.expect(".", seq=us + MSS, len=MSS)                 # fast retransmit of segment 1
    s.sent()
    # partial ACK: up to segment 3 (still below "recover") -> segment 3 resent at once
    s.peer(".", seq=them, ack=us + 3 * MSS, ts=(110, ecr))
    seg = s.sent()[0]
    assert seg.seq == us + 3 * MSS and len(seg.payload) == MSS
    assert conn.cc.in_recovery
    s.peer(".", seq=them, ack=us + 8 * MSS, ts=(111, ecr))   # full ACK ends recovery
    assert not conn.cc.in_recovery


def test_tail_loss_probe_retransmits_last_segment_before_rto():
    s, conn, us, them = opened(nodelay=True)
    s.at(1.0)
    conn.send(b"t" * (3 * MSS)); s.poll()
    segs = s.sent()
    ecr = segs[0].options.ts_val
    s.at(1.1)
    s.peer(".", seq=them, ack=us + MSS, ts=(101, ecr))      # RTT sample 0.1 s; the tail is lost
    assert conn.rto.srtt is not None
    pto = conn.timers.tlp
    assert pto is not None and pto < conn.timers.retransmit
    assert pto == pytest.approx(1.1 + 2 * conn.rto.srtt)
    s.at(pto)
    probe = s.expect("P.", seq=us + 2 * MSS, len=MSS)         # the last segment again
    assert s.counters.get("tcp.tlp_probes") == 1 and conn.timers.tlp is None
    # its ACK (SACKing the probe, a round trip later) starts SACK recovery for the
    # remaining hole, no RTO
    from netstack.wire.tcp_options import build_options
    s.after(0.1)
    for i in range(3):
        s.peer(".", seq=them, ack=us + MSS,
               options=build_options(ts=(102 + i, ecr), sack_blocks=((us + 2 * MSS, us + 3 * MSS),)))
    rex = [x.seq for x in s.sent() if x.payload]
    assert us + MSS in rex and s.counters.get("tcp.rto_expirations") == 0


def test_tail_loss_probe_prefers_new_data():
    s, conn, us, them = opened(TCPConfig(initial_cwnd_segments=2), nodelay=True)
    conn.send(b"n" * (10 * MSS)); s.poll()
    segs = s.sent()
    assert len(segs) == 2
    s.at(0.1)
    s.peer(".", seq=them, ack=us + MSS, ts=(101, segs[0].options.ts_val))
    assert [x.seq for x in s.sent()] == [us + 2 * MSS, us + 3 * MSS]   # slow start: cwnd 3
    s.at(conn.timers.tlp)
    assert [x.seq for x in s.sent()] == [us + 4 * MSS]                  # new data beyond cwnd
    assert s.counters.get("tcp.tlp_probes") == 1 and conn.recovery.retrans_segs == 0


def test_tlp_can_be_disabled():
    s, conn, us, them = opened(TCPConfig(tlp=False), nodelay=True)
    conn.send(b"x" * MSS); s.poll()
    s.sent()
    assert conn.timers.tlp is None


def test_sack_blocks_never_grow_a_data_segment_past_the_mss():
    """RFC 6691: the MSS counts no options, so SACK blocks come out of the payload's budget.

    While we hold out-of-order data, a full-sized data segment carries only the
    timestamps (1448 + 12 option bytes = the 1460 the peer allows; with a SACK
    block it would be 1472 and need fragmenting), a short one carries the
    blocks that fit, and a pure ACK carries them all.
    """
    s, conn, us, them = opened(nodelay=True)
    mss = conn.snd.mss
    assert conn.neg.sack_ok and conn.neg.ts_enabled and mss == 1448
    s.peer(".", seq=them + 300, ack=us, data=b"D" * 100, ts=(101, 0))
    s.peer(".", seq=them + 100, ack=us, data=b"B" * 100, ts=(102, 0))
    assert s.expect(".", ack=them).options.sack_blocks
    assert s.expect(".", ack=them).options.sack_blocks == ((them + 100, them + 200), (them + 300, them + 400))
    conn.send(b"x" * (2 * mss + 100))
    s.poll()
    segs = s.sent()
    assert [len(g.payload) for g in segs] == [mss, mss, 100]
    for g in segs:
        opt_len = g.data_offset * 4 - 20
        assert len(g.payload) + opt_len <= mss + 12, (len(g.payload), opt_len)   # never past the peer's 1460
    assert segs[0].options.sack_blocks == () and segs[0].options.ts_val is not None
    assert segs[2].options.sack_blocks == ((them + 100, them + 200), (them + 300, them + 400))


def test_window_reopening_on_a_partial_ack_resets_the_persist_backoff():
    s, conn, us, them = opened(TCPConfig(tlp=False), ts=False, nodelay=True)
    conn.send(b"x" * 3000); s.poll(); s.sent()
    s.peer(".", seq=them, ack=us + 1000, win=0)            # part acked, window closed
    for _ in range(3):
        s.at(conn.timers.persist)
        s.sent()
    assert conn.sender.persist_backoff == 3
    s.peer(".", seq=them, ack=us + 2000, win=65535)         # more acked, the window opens
    assert conn.sender.persist_backoff == 0 and conn.timers.persist is None
    assert conn.timers.retransmit is not None               # data in flight: the RTO watches again


def test_a_zero_window_ack_keeps_the_persist_deadline():
    s, conn, us, them = opened(TCPConfig(tlp=False), ts=False, nodelay=True)
    conn.send(b"x" * 3000); s.poll(); s.sent()
    s.peer(".", seq=them, ack=us + 1000, win=0)
    t = conn.timers.persist
    s.at(s.now + 0.05)
    s.peer(".", seq=them, ack=us + 2000, win=0)             # still closed: the probe keeps its time
    assert conn.timers.persist == t and conn.timers.retransmit is None


def test_zero_window_during_sack_recovery_is_probed_not_timed_out():
    """A live peer whose window closes while we recover: the persist timer probes it for as
    long as it answers (RFC 1122 §4.2.2.17); the retransmission timer does not back off to a
    timeout (nor retransmit into the closed window)."""
    from netstack.wire.tcp_options import build_options
    MSS = 1460
    s, conn, us, them = opened(TCPConfig(tlp=False, data_retries=5), ts=False, nodelay=True)
    conn.send(b"x" * (10 * MSS)); s.poll(); s.sent()
    s.at(0.1)
    sack = build_options(sack_blocks=((us + MSS, us + 6 * MSS),))
    s.peer(".", seq=them, ack=us, win=0, options=sack)          # segment 0 lost, window closed
    s.sent()
    assert conn.timers.persist is not None and conn.timers.retransmit is None
    for _ in range(12):                                         # twice data_retries probes, answered
        s.at(conn.next_deadline())
        out = s.sent()
        assert all(len(seg.payload) <= 1 for seg in out)         # probes only, no retransmissions
        s.peer(".", seq=them, ack=us, win=0, options=sack)
    assert conn.state is State.ESTABLISHED and conn.error is None
    assert conn.recovery.retries == 0
    s.peer(".", seq=them, ack=us, win=65535, options=sack)      # the window opens
    assert conn.sender.persist_backoff == 0 and conn.timers.retransmit is not None
    s.at(conn.timers.retransmit)                                # (PRR sends only as ACKs deliver)
    covered = sum(len(seg.payload) for seg in s.sent() if 0 <= seg.seq - us < MSS)
    assert covered >= MSS                                       # the hole goes again
    s.peer(".", seq=them, ack=us + 10 * MSS, win=65535)
    assert conn.bytes_unacked == 0 and conn.error is None
