"""Loss recovery, each mechanism alone with the fake clock: RACK (RFC 8985), D-SACK
(RFC 2883) both ways, spurious-retransmission undo (Eifel RFC 3522 / RFC 4015, D-SACK,
F-RTO RFC 5682), PRR (RFC 6937), and the connection table's figures."""
import pytest

from netstack.tcp import TCPConfig
from netstack.tcp.rack import Rack, Rfc6675
from netstack.tcp.sack import SackScoreboard
from netstack.wire.tcp_options import build_options
from tests.support.tcp_script import Script

MSS = 1448
M32 = 0xFFFFFFFF


def opened(cfg=None, *, ts=True):
    s = Script(cfg)
    conn, synack = s.passive_open(ts=(100, 0) if ts else None)
    conn.set_nodelay(True)
    return s, conn, synack.seq + 1, 1001


def sack_ack(s, them, ack, blocks, tsval, ecr):
    s.peer(".", seq=them, ack=ack, options=build_options(ts=(tsval, ecr) if ecr is not None else None,
                                                        sack_blocks=tuple(blocks)))


# ---------------------------------------------------------------------------- RACK alone
def test_rack_marks_lost_after_one_reordering_window():
    r = Rack(MSS)
    sb = SackScoreboard()
    seg = lambda i: i * MSS
    r.on_transmit(seg(0), MSS, 0.0, False)
    r.on_ack(0.1, seg(1), sb, False, 0.1, False)                 # min_RTT = 0.1
    assert r.min_rtt == pytest.approx(0.1)
    for i in range(1, 5):
        r.on_transmit(seg(i), MSS, 1.0 + 0.001 * i, False)
    # segments 3 and 4 SACKed at 1.1041: 1 and 2 were sent before them, but with fewer
    # than DupThresh SACKed and no reordering seen yet, reo_wnd = min_RTT / 4 = 25 ms
    sb.update([(seg(3), seg(5))], seg(1), seg(5))
    r.on_ack(1.1041, seg(1), sb, True, 0.1, False)
    assert r.reo_wnd() == pytest.approx(0.025)
    assert not r.lost(1.1041) and r.deadline is not None
    # each is lost once its xmit_ts + RACK.rtt + reo_wnd has passed: one window, not sooner
    window = r.rtt + r.reo_wnd()
    assert r.deadline == pytest.approx(1.002 + window)
    r.on_reorder_timeout(1.001 + window - 0.0005)
    assert not r.lost(0) and r.deadline is not None
    r.on_reorder_timeout(1.001 + window)
    assert r.next_lost(0) == (seg(1), seg(2)) and r.lost_bytes(0) == MSS
    r.on_reorder_timeout(r.deadline)
    assert r.lost_bytes(0) == 2 * MSS and r.deadline is None
    # the retransmission carries a new time: no longer lost, and lost again only if a
    # later-sent segment is delivered and a window passes (lost retransmission)
    r.on_transmit(seg(1), MSS, 1.2, True)
    assert r.next_lost(0) == (seg(2), seg(3))


def test_rack_one_record_per_burst_cut_by_sack_blocks():
    r = Rack(MSS)
    sb = SackScoreboard()
    r.on_transmit(0, MSS, 0.0, False)
    r.on_ack(0.1, MSS, sb, False, 0.1, False)
    for i in range(1, 6):                                    # a burst: one record
        r.on_transmit(i * MSS, MSS, 1.0, False)
    assert len(r.segs) == 1 and (r.segs[0].start, r.segs[0].end) == (MSS, 6 * MSS)
    sb.update([(3 * MSS, 4 * MSS), (5 * MSS, 6 * MSS)], MSS, 6 * MSS)
    r.on_ack(1.1, MSS, sb, True, 0.1, False)
    assert [(s.start // MSS, s.end // MSS, s.sacked) for s in r.segs] == [
        (1, 3, False), (3, 4, True), (4, 5, False), (5, 6, True)]
    # within the burst, lower sequence numbers went first: 1-2 and 4 are "sent before" 5
    r.on_reorder_timeout(1.0 + r.rtt + r.reo_wnd())
    assert r.next_lost(0) == (MSS, 3 * MSS) and r.lost_bytes(0) == 3 * MSS


def test_rack_reordering_seen_widens_and_dsack_multiplies_the_window():
    r = Rack(MSS)
    sb = SackScoreboard()
    for i in range(6):
        r.on_transmit(i * MSS, MSS, 0.0, False)
    sb.update([(3 * MSS, 6 * MSS)], 0, 6 * MSS)
    r.on_ack(0.1, 0, sb, True, 0.1, True)
    assert r.reo_wnd() == 0                                  # in recovery, no reordering seen
    r.on_ack(0.1, 3 * MSS, sb, False, 0.1, True)             # 0..2 arrive late, never resent
    assert r.reordering_seen and r.reordering > 0
    base = r.reo_wnd()
    assert base == pytest.approx(0.1 / 4)
    r.on_dsack()
    r.on_transmit(6 * MSS, MSS, 0.2, False)
    r.on_ack(0.3, 7 * MSS, sb, False, 0.1, False)
    assert r.reo_wnd_mult == 2 and r.reo_wnd() == pytest.approx(2 * base)


def test_rfc6675_is_the_alternative_behind_the_same_interface():
    d = Rfc6675(MSS)
    sb = SackScoreboard()
    sb.update([(2 * MSS, 4 * MSS)], 0, 6 * MSS)
    d.on_ack(0.0, 0, sb, True, 0.1, False)
    assert not d.lost(0)                                    # 2 segments SACKed: not yet (IsLost)
    sb.update([(2 * MSS, 5 * MSS)], 0, 6 * MSS)
    assert d.lost(0) and d.next_lost(0) == (0, 2 * MSS) and d.lost_bytes(0) == 2 * MSS


def test_rack_connection_retransmits_at_the_reordering_timer_without_rto():
    s, conn, us, them = opened()
    s.at(1.0)
    conn.send(b"r" * (5 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    seg = lambda i: (us + i * MSS) & M32
    s.at(1.1)
    s.peer(".", seq=them, ack=seg(1), ts=(101, ecr))                 # RTT 0.1 s
    s.at(1.11)
    sack_ack(s, them, seg(1), [(seg(3), seg(5))], 102, ecr)          # 1, 2 missing (or late)
    assert not [x for x in s.sent() if x.payload]                    # not yet: reordering window
    assert conn.timers.reo is not None and conn.timers.reo < conn.timers.retransmit
    assert "reorder" in conn.info()["timers"]
    s.at(conn.timers.reo)
    rex = [x.seq for x in s.sent() if x.payload]
    assert rex[:1] == [seg(1)] and conn.cc.in_recovery
    assert s.counters.get("tcp.rto_expirations") == 0


# ---------------------------------------------------------------------------- D-SACK
def test_dsack_generated_for_a_duplicate_in_order_segment():
    s, conn, us, them = opened()
    s.peer("P.", seq=them, ack=us, data=b"d" * 100, ts=(101, 0))
    s.sent()
    s.peer("P.", seq=them, ack=us, data=b"d" * 100, ts=(102, 0))        # again: a duplicate
    ack = s.expect(".", ack=them + 100)
    assert ack.options.sack_blocks[0] == (them, them + 100)
    assert s.counters.get("tcp.out.dsack") == 1
    s.peer("P.", seq=them + 50, ack=us, data=b"d" * 100, ts=(103, 0))   # half old, half new
    ack = s.expect(".", ack=them + 150)
    assert ack.options.sack_blocks[0] == (them + 50, them + 100)


def test_dsack_generated_for_a_duplicate_out_of_order_segment():
    s, conn, us, them = opened()
    s.peer("P.", seq=them + 1000, ack=us, data=b"o" * 100, ts=(101, 0))
    first = s.expect(".", ack=them)
    assert list(first.options.sack_blocks) == [(them + 1000, them + 1100)]
    s.peer("P.", seq=them + 1000, ack=us, data=b"o" * 100, ts=(102, 0))
    again = s.expect(".", ack=them)
    # RFC 2883 §4: the D-SACK block first, then the SACK block containing it
    assert list(again.options.sack_blocks) == [(them + 1000, them + 1100), (them + 1000, them + 1100)]


def spurious_fast_recovery(s, conn, us, them):
    """Segment 1 is late, not lost: SACKs for 2..9 make RACK (no reordering seen yet,
    >= DupThresh SACKed: reo_wnd 0) retransmit it; then its original arrives."""
    s.at(1.0)
    conn.send(b"x" * (10 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    seg = lambda i: (us + i * MSS) & M32
    s.at(1.1)
    s.peer(".", seq=them, ack=seg(1), ts=(101, ecr))
    before = (conn.cc.cwnd, conn.cc.ssthresh)
    s.at(1.15)
    for k in range(3, 10):
        sack_ack(s, them, seg(1), [(seg(2), seg(k))], 100 + k, ecr)
    assert conn.cc.in_recovery
    rex = [x for x in s.sent() if x.payload and x.seq == seg(1)]
    assert rex
    return before, seg, rex[0].options.ts_val


def test_dsack_received_undoes_a_spurious_fast_recovery():
    s, conn, us, them = opened()
    before, seg, rex_ts = spurious_fast_recovery(s, conn, us, them)
    assert (conn.cc.cwnd, conn.cc.ssthresh) != before
    s.at(1.2)
    # the original arrived: everything is ACKed; then the retransmission arrives: D-SACK
    # (the ACK echoes the retransmission's timestamp, so Eifel alone would not tell)
    s.peer(".", seq=them, ack=seg(10), ts=(120, rex_ts))
    assert conn.recovery.undos == 0
    sack_ack(s, them, seg(10), [(seg(1), seg(2))], 121, rex_ts)
    assert s.counters.get("tcp.in.dsack") == 1 and conn.recovery.dsacks == 1
    assert s.counters.get("tcp.undo.dsack") == 1 and conn.recovery.undos == 1
    assert conn.cc.cwnd >= before[0] and conn.cc.ssthresh == before[1]
    info = conn.info()
    assert info["dsack"] == 1 and info["undo"] == 1
    assert conn.recovery.loss.reo_wnd_mult == 2             # RFC 8985 §6.2 step 4


def test_eifel_undoes_a_spurious_fast_recovery():
    s, conn, us, them = opened()
    before, seg, rex_ts = spurious_fast_recovery(s, conn, us, them)
    s.at(1.2)
    # the late original fills the hole: the ACK echoes *its* (older) timestamp
    orig_ts = rex_ts - 150
    s.peer(".", seq=them, ack=seg(10), ts=(120, orig_ts))
    assert s.counters.get("tcp.undo.eifel") == 1 and not conn.cc.in_recovery
    assert conn.cc.ssthresh == before[1] and conn.cc.cwnd >= before[0]


def test_undo_after_a_spurious_rto_with_timestamps():
    s, conn, us, them = opened()
    s.at(1.0)
    conn.send(b"u" * (4 * MSS)); s.poll()
    first = s.sent()
    orig_ts = first[0].options.ts_val
    cc = conn.cc
    before = (cc.cwnd, cc.ssthresh)
    s.at(conn.timers.retransmit)                                    # the ACKs are only slow
    rex = s.sent()
    assert rex and rex[0].seq == us and cc.cwnd == MSS and cc.ssthresh < before[0]
    # the ACK for the original transmission arrives: TSecr older than the retransmission
    s.after(0.05)
    s.peer(".", seq=them, ack=us + 4 * MSS, ts=(150, orig_ts))
    assert s.counters.get("tcp.spurious_rtos") == 1 and s.counters.get("tcp.undo.eifel") == 1
    # RFC 4015: restored (and the ACK then grew the window as usual)
    assert cc.ssthresh == before[1] and cc.cwnd >= before[0]
    assert conn.info()["spurious_rto"] == 1
    assert conn.snd.nxt == conn.snd.max


def test_genuine_rto_is_not_undone():
    s, conn, us, them = opened()
    s.at(1.0)
    conn.send(b"g" * (4 * MSS)); s.poll()
    s.sent()
    s.at(conn.timers.retransmit)
    rex = s.sent()
    s.after(0.05)
    s.peer(".", seq=them, ack=us + MSS, ts=(150, rex[0].options.ts_val))   # the retransmission's echo
    assert conn.recovery.undos == 0 and conn.cc.cwnd <= 2 * MSS


def frto_setup(spurious: bool):
    s, conn, us, them = opened(TCPConfig(timestamps=False), ts=False)
    s.at(1.0)
    conn.send(b"f" * (20 * MSS)); s.poll()
    sent = s.sent()
    assert len(sent) == 10                                           # IW10 (RFC 6928)
    mss = conn.snd.mss
    before = (conn.cc.cwnd, conn.cc.ssthresh)
    s.at(conn.timers.retransmit)
    rex = s.sent()
    assert [x.seq for x in rex] == [us]                              # step 1: the head only
    s.after(0.05)
    s.peer(".", seq=them, ack=us + 2 * mss)                          # step 2b: new data ACKed
    new = [x.seq for x in s.sent() if x.payload]
    assert new == [us + 10 * mss, us + 11 * mss]                     # two new segments
    return s, conn, us, them, before, mss


def test_frto_declares_a_spurious_timeout_and_undoes_it():
    s, conn, us, them, before, mss = frto_setup(True)
    s.peer(".", seq=them, ack=us + 4 * mss)                          # step 3b: new data again
    assert s.counters.get("tcp.frto_spurious") == 1 and s.counters.get("tcp.spurious_rtos") == 1
    assert conn.cc.ssthresh == before[1] and conn.cc.cwnd >= before[0]


def test_frto_genuine_timeout_goes_back_n():
    s, conn, us, them, before, mss = frto_setup(False)
    s.peer(".", seq=them, ack=us + 2 * mss)                          # step 3a: a duplicate ACK
    again = [x.seq for x in s.sent() if x.payload]
    assert us + 2 * mss in again                                     # conventional recovery
    assert conn.recovery.undos == 0 and conn.cc.cwnd <= 3 * mss


# ---------------------------------------------------------------------------- PRR
def test_prr_sends_in_proportion_to_what_is_delivered():
    s, conn, us, them = opened(TCPConfig(congestion="newreno"))
    s.at(1.0)
    conn.cc.cwnd = 20 * MSS
    conn.send(b"p" * (60 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    seg = lambda i: (us + i * MSS) & M32
    s.at(1.1)
    # segment 0 is lost; 1..19 arrive: each ACK delivers one segment
    out = []
    for k in range(2, 21):
        sack_ack(s, them, seg(0), [(seg(1), seg(k))], 100 + k, ecr)
        out.append(sum(len(x.payload) for x in s.sent()))
    assert conn.cc.in_recovery and conn.cc.ssthresh == 10 * MSS
    total = sum(out)
    # RFC 6937: over the recovery, about ssthresh / RecoverFS (1/2) of what was delivered
    # (19 segments) goes out, spread over the ACKs instead of a burst or a silence
    assert 9 * MSS <= total <= 11 * MSS
    assert max(out) <= 2 * MSS and sum(1 for n in out if n) >= 8
