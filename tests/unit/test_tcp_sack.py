"""Sender-side loss recovery: SACK scoreboard (RFC 2018, RFC 6675), limited transmit
(RFC 3042), early retransmit (RFC 5827)."""
from netstack.tcp import TCPConfig
from netstack.tcp.sack import SackScoreboard
from tests.support.tcp_script import Script

MSS = 1448
M32 = 0xFFFFFFFF


def test_scoreboard_merge_trim_holes_across_wrap():
    una = M32 - 1000
    sb = SackScoreboard()
    a = lambda off: (una + off) & M32
    assert sb.update([(a(3000), a(4000))], una, a(10000))
    assert sb.update([(a(1000), a(2000)), (a(1900), a(2500))], una, a(10000))
    assert sb.blocks == [[a(1000), a(2500)], [a(3000), a(4000)]] and sb.sacked_bytes == 2500
    assert not sb.update([(a(1000), a(2000))], una, a(10000))       # nothing new
    assert not sb.update([(a(9000), a(20000))], una, a(10000))      # beyond SND.MAX: ignored
    assert sb.high_sacked == a(4000)
    assert sb.next_hole(una) == (una, a(1000))
    assert sb.next_hole(a(1200)) == (a(2500), a(3000))
    assert sb.next_hole(a(3500)) is None
    assert sb.lost_bytes(una) == 1000 + 500
    assert sb.sacked_end(a(1500)) == a(2500) and sb.sacked_end(a(2700)) is None
    sb.trim(a(2000))
    assert sb.blocks[0] == [a(2000), a(2500)] and sb.sacked_bytes == 1500
    sb.trim(a(5000))
    assert not sb and sb.sacked_bytes == 0


def opened(cfg=None):
    s = Script(cfg)
    conn, synack = s.passive_open()
    conn.set_nodelay(True)
    return s, conn, synack.seq + 1, 1001


def test_sack_recovery_retransmits_every_hole_without_waiting_for_partial_acks():
    s, conn, us, them = opened()
    conn.send(b"s" * (8 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    seg = lambda i: (us + i * MSS) & M32
    s.peer(".", seq=them, ack=seg(1), ts=(101, ecr))              # segment 0 arrived
    # segments 1 and 4 lost; 2,3 then 5,6,7 arrive out of order -> SACKed dup ACKs
    blocks = [((seg(2), seg(3)),), ((seg(2), seg(4)),), ((seg(5), seg(6)), (seg(2), seg(4))),
              ((seg(5), seg(7)), (seg(2), seg(4))), ((seg(5), seg(8)), (seg(2), seg(4)))]
    sent = []
    for i, b in enumerate(blocks):
        opts = __import__("netstack.wire.tcp_options", fromlist=["build_options"]).build_options(
            ts=(102 + i, ecr), sack_blocks=b)
        s.peer(".", seq=them, ack=seg(1), options=opts)
        sent += s.sent()
    assert conn.cc.in_recovery
    rexmit = [x.seq for x in sent if x.payload]
    assert rexmit[:2] == [seg(1), seg(4)]                          # both holes, no RTO needed
    assert conn.recovery.scoreboard.sacked_bytes == 5 * MSS


def test_go_back_n_after_rto_skips_sacked_data():
    s, conn, us, them = opened()
    conn.send(b"g" * (4 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    seg = lambda i: (us + i * MSS) & M32
    from netstack.wire.tcp_options import build_options
    s.peer(".", seq=them, ack=seg(0), options=build_options(ts=(101, ecr), sack_blocks=((seg(1), seg(3)),)))
    s.sent()
    s.at(conn.timers.retransmit)                                   # RTO
    first = s.sent()
    assert [x.seq for x in first] == [seg(0)]
    s.peer(".", seq=them, ack=seg(1), options=build_options(ts=(102, ecr), sack_blocks=((seg(1), seg(3)),)))
    s.peer(".", seq=them, ack=seg(1), options=build_options(ts=(103, ecr), sack_blocks=((seg(1), seg(3)),)))
    later = [x.seq for x in s.sent() if x.payload]
    assert seg(1) not in later and seg(2) not in later and seg(3) in later


def test_limited_transmit_sends_new_data_on_first_two_dupacks():
    s, conn, us, them = opened(TCPConfig(initial_cwnd_segments=2))
    conn.send(b"l" * (6 * MSS)); s.poll()
    first = s.sent()
    assert len(first) == 2
    ecr = first[0].options.ts_val
    s.peer(".", seq=them, ack=us, ts=(101, ecr))                  # duplicate ACK 1
    assert [x.seq for x in s.sent()] == [us + 2 * MSS]
    s.peer(".", seq=them, ack=us, ts=(102, ecr))                  # duplicate ACK 2
    assert [x.seq for x in s.sent()] == [us + 3 * MSS]


def test_early_retransmit_with_few_segments_outstanding():
    s, conn, us, them = opened()
    conn.send(b"e" * (2 * MSS)); s.poll()
    ecr = s.sent()[0].options.ts_val
    s.peer(".", seq=them, ack=us, ts=(101, ecr))                  # one dupack: seg 1 arrived, seg 0 lost
    seg = s.expect(".", seq=us, len=MSS)
    assert s.counters.get("tcp.fast_retransmits") == 1 and conn.timers.retransmit is not None
