"""NewReno (RFC 5681 + RFC 6582)."""
from netstack.tcp.congestion import create
from netstack.tcp.congestion.newreno import NewReno

M = 1000


def test_slow_start_then_congestion_avoidance():
    cc = create("newreno", mss=M, initial_segments=2)
    assert cc.cwnd == 2 * M
    cc.on_ack(M, None, 0, ack=M, flight=0)
    cc.on_ack(3 * M, None, 0, ack=4 * M, flight=0)     # at most SMSS per ACK (eqn 2)
    assert cc.cwnd == 4 * M
    cc.ssthresh = 4 * M
    for i in range(4):                                 # one cwnd's worth of ACKs: +1 SMSS
        cc.on_ack(M, None, 0, ack=(5 + i) * M, flight=0)
    assert cc.cwnd == 5 * M


def test_timeout_sets_loss_window():
    cc = NewReno(M, 10)
    cc.on_timeout(0, flight=8 * M)
    assert cc.cwnd == M and cc.ssthresh == 4 * M
    cc.on_timeout(0, flight=M)
    assert cc.ssthresh == 2 * M                         # max(FlightSize/2, 2*SMSS)


def test_fast_retransmit_recovery_partial_and_full_ack():
    cc = NewReno(M, 10)
    assert not cc.on_dup_ack(0, flight=10 * M, snd_max=10 * M)
    assert not cc.on_dup_ack(0, flight=10 * M, snd_max=10 * M)
    assert cc.on_dup_ack(0, flight=10 * M, snd_max=10 * M)      # third: fast retransmit
    assert cc.in_recovery and cc.ssthresh == 5 * M and cc.cwnd == 8 * M
    cc.on_dup_ack(0, flight=10 * M, snd_max=10 * M)
    assert cc.cwnd == 9 * M                                       # inflate
    # partial ACK: retransmit next hole, deflate by acked, add back SMSS
    assert cc.on_ack(2 * M, None, 0, ack=2 * M, flight=8 * M)
    assert cc.in_recovery and cc.cwnd == 8 * M
    # full ACK (>= recover): leave recovery, cwnd = min(ssthresh, flight + SMSS)
    assert not cc.on_ack(8 * M, None, 0, ack=10 * M, flight=0)
    assert not cc.in_recovery and cc.cwnd == M


def test_no_second_fast_retransmit_for_dupacks_below_recover():
    cc = NewReno(M, 10)
    cc.on_timeout(0, flight=10 * M, snd_max=10 * M)      # RFC 6582: recover = highest sent
    for _ in range(3):
        fr = cc.on_dup_ack(0, flight=5 * M, snd_max=12 * M, ack=4 * M)
    assert not fr and not cc.in_recovery
    cc.dupacks = 0
    for _ in range(3):
        fr = cc.on_dup_ack(0, flight=2 * M, snd_max=12 * M, ack=10 * M)
    assert fr and cc.in_recovery
