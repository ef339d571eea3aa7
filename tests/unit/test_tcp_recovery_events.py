"""Congestion and recovery events (events.py's RecoveryEvent): raised by recovery.py through the
host's recovery_event, handed to the layer's on_recovery observer, in the order they happen."""
import io
import json

import pytest

from netstack.scenarios.testbed import B_ADDR, Testbed
from netstack.statelog import StateLogWriter, parse_log, parse_state_log
from netstack.tcp import TCPConfig
from netstack.tcp.events import RecoveryEvent, RecoveryKind, UndoMethod
from tests.support.tcp_script import Script

MSS = 1448
SEG = 1000


def bed_with_loss(config_a: TCPConfig, config_b: TCPConfig, drop_nth: int, nbytes: int = 8 * SEG):
    """A sends ``nbytes`` to B; the ``drop_nth`` data segment from A is lost once."""
    tb = Testbed(config_a=config_a, config_b=config_b)
    seen = []
    tb.a.on_recovery = lambda conn, ev: seen.append(ev)
    lst = tb.b.listen(8000)
    a = tb.a.connect(B_ADDR, 8000, tb.now, src_port=40000)
    tb.run_until(lambda: a.established and lst.pending > 0)
    b = lst.accept()
    tb.drop_nth_data("A", drop_nth)
    a.send(bytes(nbytes))
    got = bytearray()

    def done() -> bool:
        while b.readable:
            got.extend(b.recv())
        return len(got) >= nbytes
    tb.run_until(done)
    tb.run_idle()
    return tb, a, seen


def test_three_dup_acks_report_fast_retransmit_then_recovery_exit():
    tb, a, seen = bed_with_loss(TCPConfig(mss=SEG, sack=False, tlp=False), TCPConfig(mss=SEG, sack=False), 3)
    assert [e.kind for e in seen] == [RecoveryKind.FAST_RETRANSMIT, RecoveryKind.RECOVERY_EXIT]
    enter, leave = seen
    assert all(isinstance(e, RecoveryEvent) for e in seen)
    assert enter.cc == "cubic" and enter.prior_cwnd > enter.cwnd          # the window was cut
    assert enter.ssthresh < enter.prior_cwnd and enter.retries == 0
    assert leave.time > enter.time and leave.cwnd <= enter.ssthresh      # deflated at the full ACK
    assert leave.snd_una == leave.snd_max                                 # everything acknowledged
    assert tb.counters_a.get("tcp.fast_retransmits") == 1


def test_newreno_reduction_is_reported_too():
    _, _, seen = bed_with_loss(TCPConfig(mss=SEG, sack=False, tlp=False, congestion="newreno"),
                               TCPConfig(mss=SEG, sack=False), 3)
    assert [e.kind for e in seen] == [RecoveryKind.FAST_RETRANSMIT, RecoveryKind.RECOVERY_EXIT]
    assert seen[0].cc == "newreno" and seen[0].prior_cwnd > seen[0].ssthresh


def test_sack_loss_detection_reports_sack_recovery_then_exit():
    _, _, seen = bed_with_loss(TCPConfig(mss=SEG, tlp=False), TCPConfig(mss=SEG), 3)
    assert [e.kind for e in seen] == [RecoveryKind.SACK_RECOVERY, RecoveryKind.RECOVERY_EXIT]


def test_a_lost_tail_is_probed_and_the_probe_reported():
    _, _, seen = bed_with_loss(TCPConfig(mss=SEG), TCPConfig(mss=SEG), 5, nbytes=4 * SEG)   # the 48-byte tail
    kinds = [e.kind for e in seen]
    assert kinds[0] is RecoveryKind.TLP and RecoveryKind.RTO not in kinds


def opened(cfg=None):
    s = Script(cfg)
    conn, synack = s.passive_open(ts=(100, 0))
    conn.set_nodelay(True)
    seen = []
    s.layer.on_recovery = lambda c, ev: seen.append(ev)
    return s, conn, synack.seq + 1, 1001, seen


def test_rto_backoff_is_reported_per_timeout():
    s, conn, us, them, seen = opened(TCPConfig(tlp=False))
    s.at(1.0)
    conn.send(b"r" * (4 * MSS)); s.poll()
    s.sent()
    cwnd0 = conn.cc.cwnd
    for _ in range(3):
        s.at(conn.timers.retransmit)
    assert [e.kind for e in seen] == [RecoveryKind.RTO] * 3
    assert [e.retries for e in seen] == [1, 2, 3]
    assert seen[0].prior_cwnd == cwnd0 and seen[0].cwnd == conn.snd.mss
    assert seen[1].rto == pytest.approx(2 * seen[0].rto) and seen[2].rto == pytest.approx(2 * seen[1].rto)
    assert all(e.snd_una == us for e in seen)


def test_undo_after_a_spurious_rto_with_timestamps_is_reported():
    s, conn, us, them, seen = opened(TCPConfig(tlp=False))
    s.at(1.0)
    conn.send(b"u" * (4 * MSS)); s.poll()
    orig_ts = s.sent()[0].options.ts_val
    before = conn.cc.cwnd
    s.at(conn.timers.retransmit)                                    # the ACKs are only slow
    s.after(0.05)
    s.peer(".", seq=them, ack=us + 4 * MSS, ts=(150, orig_ts))     # echoes the original: Eifel
    assert [e.kind for e in seen] == [RecoveryKind.RTO, RecoveryKind.UNDO]
    undo = seen[1]
    assert undo.undo is UndoMethod.EIFEL and undo.undone is RecoveryKind.RTO
    assert undo.prior_cwnd == seen[0].cwnd and undo.cwnd >= before     # the reduction is gone
    assert s.counters.get("tcp.spurious_rtos") == 1


def test_genuine_rto_has_no_undo():
    s, conn, us, them, seen = opened(TCPConfig(tlp=False))
    s.at(1.0)
    conn.send(b"g" * (4 * MSS)); s.poll()
    s.sent()
    s.at(conn.timers.retransmit)
    rex = s.sent()
    s.after(0.05)
    s.peer(".", seq=them, ack=us + MSS, ts=(150, rex[0].options.ts_val))
    assert [e.kind for e in seen] == [RecoveryKind.RTO]


def test_no_observer_costs_nothing_and_a_failing_observer_is_contained():
    s, conn, us, them, seen = opened(TCPConfig(tlp=False))
    s.layer.on_recovery = None
    s.at(1.0)
    conn.send(b"x" * MSS); s.poll()
    s.at(conn.timers.retransmit)                                    # no observer: nothing breaks
    assert s.counters.get("tcp.rto_expirations") == 1

    def boom(c, ev):
        raise RuntimeError("observer bug")
    s.layer.on_recovery = boom
    s.at(conn.timers.retransmit)
    assert s.counters.get("tcp.rto_expirations") == 2               # the connection went on


def test_state_log_writes_recovery_lines_between_transitions_in_order():
    tb = Testbed(config_a=TCPConfig(mss=SEG, sack=False, tlp=False), config_b=TCPConfig(mss=SEG, sack=False))
    buf = io.StringIO()
    writer = StateLogWriter(buf)
    tb.a.on_transition = writer
    tb.a.on_recovery = writer.recovery
    lst = tb.b.listen(8000)
    a = tb.a.connect(B_ADDR, 8000, tb.now, src_port=40000)
    tb.run_until(lambda: a.established and lst.pending > 0)
    b = lst.accept()
    tb.drop_nth_data("A", 3)
    a.send(bytes(8 * SEG))
    tb.run_until(lambda: a.bytes_acked >= 8 * SEG)
    a.close()
    tb.run_until(lambda: a.state.value == "FIN-WAIT-2")
    lines = buf.getvalue().splitlines()
    recs = [json.loads(line) for line in lines]
    assert writer.count == len(lines)
    order = [r.get("event") or f"{r['from']}>{r['to']}" for r in recs]
    assert order[:3] == ["CLOSED>SYN-SENT", "SYN-SENT>ESTABLISHED", "fast-retransmit"]
    assert order[3] == "recovery-exit" and order[4] == "ESTABLISHED>FIN-WAIT-1"
    fr = recs[2]
    assert fr["local"] == "198.18.0.1:40000" and fr["remote"] == "198.18.0.2:8000"
    assert set(fr) == {"time", "local", "remote", "event", "cc", "cwnd", "ssthresh", "prior_cwnd",
                       "snd_una", "snd_max", "rto", "retries"}
    assert "from" not in fr and "undo" not in fr
    transitions, events = parse_log(lines)
    assert [e.kind for e in events] == [RecoveryKind.FAST_RETRANSMIT, RecoveryKind.RECOVERY_EXIT]
    assert events[0].cwnd == fr["cwnd"] and events[0].conn == ("198.18.0.1:40000", "198.18.0.2:8000")
    assert "fast-retransmit: cwnd" in events[0].text()
    assert len(parse_state_log(lines)) == len(transitions) == len(recs) - 2   # transitions only


def test_dsack_undo_of_a_spurious_fast_recovery_is_reported():
    from tests.unit.test_tcp_loss_recovery import sack_ack, spurious_fast_recovery
    s, conn, us, them, seen = opened()
    before, seg, rex_ts = spurious_fast_recovery(s, conn, us, them)
    s.at(1.2)
    s.peer(".", seq=them, ack=seg(10), ts=(120, rex_ts))
    sack_ack(s, them, seg(10), [(seg(1), seg(2))], 121, rex_ts)       # D-SACK: the retransmission was a copy
    kinds = [e.kind for e in seen]
    # the tail probe went first (the ACKs were slow); the full ACK ends recovery, then the
    # D-SACK shows it was spurious and the reduction is undone
    assert kinds == [RecoveryKind.TLP, RecoveryKind.SACK_RECOVERY, RecoveryKind.RECOVERY_EXIT, RecoveryKind.UNDO]
    undo = seen[-1]
    assert undo.undo is UndoMethod.DSACK and undo.undone is RecoveryKind.SACK_RECOVERY
    assert undo.cwnd >= before[0] and undo.ssthresh == before[1]


def test_frto_undo_of_a_spurious_timeout_is_reported():
    from tests.unit.test_tcp_loss_recovery import frto_setup
    s, conn, us, them, before, mss = frto_setup(True)
    seen = []
    s.layer.on_recovery = lambda c, ev: seen.append(ev)
    s.peer(".", seq=them, ack=us + 4 * mss)                             # F-RTO step 3b: spurious
    assert [(e.kind, e.undo, e.undone) for e in seen] == [(RecoveryKind.UNDO, UndoMethod.FRTO, RecoveryKind.RTO)]
    assert seen[0].cwnd >= before[0]
