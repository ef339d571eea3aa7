"""TLP's own loss detection (RFC 8985 §7.4), with the fake clock: a tail loss probe that
resent data opens an episode ending at SND.NXT; an ACK beyond it with no D-SACK says the
probe repaired a loss (cwnd reduced once, reported, counted), a D-SACK or a pure duplicate
ACK says the original arrived too (no reduction), and a probe of new data never reduces."""
from netstack.tcp import TCPConfig
from netstack.tcp.events import RecoveryKind
from netstack.wire.tcp_options import build_options
from tests.support.tcp_script import Script

MSS = 1448


def probed():
    """Three segments out at t=1.0; only the first is acknowledged (an RTT sample of 0.1 s);
    the tail loss probe resends the third.  Returns the script, the connection, our and the
    peer's next sequence numbers, the echo for timestamps, the recovery events seen and the
    cwnd before the probe."""
    s = Script(TCPConfig())
    conn, synack = s.passive_open(ts=(100, 0))
    conn.set_nodelay(True)
    us, them = synack.seq + 1, 1001
    seen = []
    s.layer.on_recovery = lambda c, ev: seen.append(ev)
    s.at(1.0)
    conn.send(b"t" * (3 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    s.at(1.1)
    s.peer(".", seq=them, ack=us + MSS, ts=(101, ecr))
    cwnd = conn.cc.cwnd
    s.at(conn.timers.tlp)
    s.expect("P.", seq=us + 2 * MSS, len=MSS)                 # the probe: the last segment again
    assert conn.recovery.tlp_end == us + 3 * MSS and conn.recovery.tlp_retrans
    return s, conn, us, them, ecr, seen, cwnd


def more_data_acked(s, conn, us, them, ecr, tsval):
    """One more segment sent and acknowledged: an ACK beyond the probe's episode."""
    conn.send(b"n" * MSS); s.poll()
    s.expect("P.", seq=us + 3 * MSS, len=MSS)
    assert conn.timers.tlp is None or conn.recovery.tlp_end is None   # one probe per episode
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 4 * MSS, ts=(tsval, ecr))


def test_an_ack_beyond_the_probe_without_dsack_means_it_repaired_a_loss():
    s, conn, us, them, ecr, seen, cwnd = probed()
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 3 * MSS, ts=(102, ecr))       # the probe filled the hole
    assert conn.recovery.tlp_end == us + 3 * MSS                  # at TLP.end_seq: not yet known
    assert conn.cc.cwnd >= cwnd and s.counters.get("tcp.tlp_recoveries") == 0
    more_data_acked(s, conn, us, them, ecr, 103)
    assert conn.recovery.tlp_end is None
    assert s.counters.get("tcp.tlp_recoveries") == 1
    repair = [e for e in seen if e.kind is RecoveryKind.TLP_REPAIR]
    assert len(repair) == 1 and repair[0].cwnd < repair[0].prior_cwnd   # reduced once
    assert repair[0].ssthresh == conn.cc.ssthresh and conn.cc.cwnd <= repair[0].prior_cwnd
    assert [e.kind for e in seen] == [RecoveryKind.TLP, RecoveryKind.TLP_REPAIR]


def test_a_dsack_of_the_probe_means_no_loss():
    s, conn, us, them, ecr, seen, cwnd = probed()
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 3 * MSS, ts=(102, ecr))       # the originals, late
    s.peer(".", seq=them, ack=us + 3 * MSS,                       # then the probe, a copy: D-SACK
           options=build_options(ts=(103, ecr), sack_blocks=((us + 2 * MSS, us + 3 * MSS),)))
    assert conn.recovery.tlp_end is None
    more_data_acked(s, conn, us, them, ecr, 104)
    assert s.counters.get("tcp.tlp_recoveries") == 0
    assert [e.kind for e in seen] == [RecoveryKind.TLP] and conn.cc.cwnd >= cwnd


def test_a_pure_duplicate_ack_from_a_receiver_without_dsack_means_no_loss():
    s, conn, us, them, ecr, seen, cwnd = probed()
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 3 * MSS, ts=(102, ecr))
    s.peer(".", seq=them, ack=us + 3 * MSS, ts=(103, ecr))       # the probe's duplicate ACK
    assert conn.recovery.tlp_end is None
    more_data_acked(s, conn, us, them, ecr, 104)
    assert s.counters.get("tcp.tlp_recoveries") == 0
    assert [e.kind for e in seen] == [RecoveryKind.TLP]


def test_an_ack_below_the_episode_end_says_nothing_yet():
    s, conn, us, them, ecr, seen, cwnd = probed()
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 2 * MSS, ts=(102, ecr))
    assert conn.recovery.tlp_end == us + 3 * MSS
    assert s.counters.get("tcp.tlp_recoveries") == 0


def test_a_probe_of_new_data_never_reduces():
    s = Script(TCPConfig(initial_cwnd_segments=2))
    conn, synack = s.passive_open(ts=(100, 0))
    conn.set_nodelay(True)
    us, them = synack.seq + 1, 1001
    conn.send(b"n" * (10 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    s.at(0.1)
    s.peer(".", seq=them, ack=us + MSS, ts=(101, ecr))
    s.sent()
    s.at(conn.timers.tlp)
    assert [x.seq for x in s.sent()] == [us + 4 * MSS]           # new data beyond cwnd
    assert conn.recovery.tlp_end == us + 5 * MSS and not conn.recovery.tlp_retrans
    s.after(0.1)
    s.peer(".", seq=them, ack=us + 5 * MSS, ts=(102, ecr))
    assert conn.recovery.tlp_end is None
    assert s.counters.get("tcp.tlp_recoveries") == 0


def test_an_rto_ends_the_episode():
    s, conn, us, them, ecr, seen, cwnd = probed()
    s.at(conn.timers.retransmit)                                   # nothing came back
    assert conn.recovery.tlp_end is None
    assert s.counters.get("tcp.rto_expirations") == 1
