"""Opening connections: three-way handshake, options negotiation, RSTs to closed ports,
listener queues, SYN retransmission (RFC 9293 §3.5, §3.10.7.1-3; RFC 7323; RFC 2018)."""
import itertools

import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ConnEvent, ListenerEvent
from netstack.tcp.syncookies import SynCookieMode
from tests.support.tcp_script import PEER, Script


def test_passive_open_synack_fields_and_events():
    s = Script()
    lst = s.layer.listen(80)
    s.peer("S", seq=1000, win=29200, mss=1460, wscale=7, sackok=True, ts=(100, 0))
    syn_ack = s.expect("S.", ack=1001, win=65535, mss=1460, wscale=7, sackok=True, ts_ecr=100)
    assert syn_ack.options.ts_val is not None
    assert lst.accept() is None and len(lst.syn_queue) == 1
    s.peer(".", seq=1001, ack=syn_ack.seq + 1, win=229, ts=(101, syn_ack.options.ts_val))
    assert lst.events[-1] == ListenerEvent.ACCEPTABLE
    conn = lst.accept()
    assert conn.state is State.ESTABLISHED and ConnEvent.ESTABLISHED in conn.events
    assert conn.snd.wnd == 229 << 7                  # scaled after the handshake
    assert conn.snd.una == syn_ack.seq + 1 and conn.rcv.nxt == 1001
    assert s.counters.get("tcp.passive_opens") == 1
    s.expect_nothing()


OFFERS = list(itertools.product([None, 7], [False, True], [False, True]))


@pytest.mark.parametrize("wscale,sackok,ts", OFFERS)
def test_synack_options_only_for_what_the_peer_offered(wscale, sackok, ts):
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1, mss=1400, wscale=wscale, sackok=sackok, ts=(7, 0) if ts else None)
    syn_ack = s.expect("S.", ack=2, mss=1460, wscale=7 if wscale is not None else None,
                       sackok=sackok, ts=ts)
    conn = s.layer.connections[(PEER, 40000, 80)]
    assert conn.neg.ts_enabled == ts and conn.neg.sack_ok == sackok
    assert conn.snd.wscale == (7 if wscale is not None else 0)
    assert conn.rcv.wscale == (7 if wscale is not None else 0)
    assert conn.snd.mss == 1400 - (12 if ts else 0)
    if ts:
        assert syn_ack.options.ts_ecr == 7


@pytest.mark.parametrize("wscale,sackok,ts", OFFERS)
def test_config_disables_options(wscale, sackok, ts):
    cfg = TCPConfig(wscale=wscale, sack=sackok, timestamps=ts)
    s = Script(cfg)
    s.layer.listen(80)
    s.peer("S", seq=1, mss=1460, wscale=3, sackok=True, ts=(7, 0))
    s.expect("S.", wscale=wscale, sackok=sackok, ts=ts)
    conn = s.layer.connections[(PEER, 40000, 80)]
    assert conn.snd.wscale == (3 if wscale is not None else 0)


def test_peer_window_scale_above_14_is_clamped():
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1, options=bytes([1, 3, 3, 15]))      # NOP, WS shift 15
    s.expect("S.", wscale=7)
    assert s.layer.connections[(PEER, 40000, 80)].snd.wscale == 14


def test_default_peer_mss_is_536_without_option():
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1)
    s.expect("S.", mss=1460)
    assert s.layer.connections[(PEER, 40000, 80)].snd.mss == 536


def test_active_open_syn_options_and_established():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    assert conn.state is State.SYN_SENT
    syn = s.expect("S", mss=1460, wscale=7, sackok=True, ts=True, ts_ecr=0, win=65535, dport=8080)
    s.local_port, s.peer_port = conn.local_port, 8080
    assert 49152 <= conn.local_port <= 65535
    s.peer("S.", seq=9000, ack=syn.seq + 1, win=1000, mss=1200, ts=(50, syn.options.ts_val))
    s.expect(".", seq=syn.seq + 1, ack=9001, ts_ecr=50)
    assert conn.state is State.ESTABLISHED and conn.events[-1] == ConnEvent.ESTABLISHED
    # the SYN-ACK carried no window scale: neither side scales
    assert conn.snd.wscale == 0 and conn.rcv.wscale == 0 and conn.snd.wnd == 1000
    assert not conn.neg.sack_ok and conn.neg.ts_enabled and conn.snd.mss == 1188
    assert s.counters.get("tcp.active_opens") == 1


def test_active_open_data_queued_before_established_is_sent_after():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    syn = s.expect("S")
    assert conn.send(b"early") == 5
    s.poll()
    s.expect_nothing()
    s.local_port, s.peer_port = conn.local_port, 8080
    s.peer("S.", seq=9000, ack=syn.seq + 1, mss=1460)
    s.expect("P.", seq=syn.seq + 1, ack=9001, data=b"early")


def test_connection_refused():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    syn = s.expect("S")
    s.local_port, s.peer_port = conn.local_port, 8080
    s.peer("R", seq=0, ack=0)                        # no ACK: ignored (§3.10.7.3)
    assert conn.state is State.SYN_SENT
    s.peer("R.", seq=0, ack=syn.seq + 1)
    assert conn.state is State.CLOSED
    assert isinstance(conn.error, ConnectionRefusedError)
    assert ConnEvent.REFUSED in conn.events and conn.events[-1] == ConnEvent.CLOSED
    with pytest.raises(ConnectionRefusedError):
        conn.send(b"x")
    assert not s.layer.connections


def test_syn_sent_bad_ack_gets_rst():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    syn = s.expect("S")
    s.local_port, s.peer_port = conn.local_port, 8080
    s.peer("S.", seq=9000, ack=syn.seq + 5)
    s.expect("R", seq=syn.seq + 5)
    assert conn.state is State.SYN_SENT
    s.peer("R.", seq=0, ack=syn.seq + 5)             # unacceptable ACK on RST: ignored
    assert conn.state is State.SYN_SENT
    s.expect_nothing()


def test_syn_retransmission_backoff_and_timeout():
    s = Script(TCPConfig(syn_retries=3))
    conn = s.layer.connect(PEER, 8080, 0.0)
    s.expect("S")
    times = []
    t = 0.0
    while conn.state is State.SYN_SENT:
        t = s.layer.next_deadline()
        s.at(t)
        if s.layer.outbox:
            s.expect("S")
            times.append(t)
    assert times == [1.0, 3.0, 7.0]                  # 1 s, then doubled each time
    assert t == 15.0
    assert isinstance(conn.error, TimeoutError) and ConnEvent.TIMEOUT in conn.events
    assert s.counters.get("tcp.attempt_fails") == 1


def test_simultaneous_open():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    syn = s.expect("S")
    s.local_port, s.peer_port = conn.local_port, 8080
    s.peer("S", seq=7000, mss=1460, wscale=2, ts=(10, 0))   # crossing SYN
    assert conn.state is State.SYN_RECEIVED
    s.expect("S.", seq=syn.seq, ack=7001, wscale=7, ts_ecr=10, sackok=False)
    s.peer("S.", seq=7000, ack=syn.seq + 1, mss=1460, wscale=2, ts=(11, syn.options.ts_val))
    assert conn.state is State.ESTABLISHED
    assert conn.snd.wscale == 2 and conn.neg.ts_enabled
    conn.send(b"hi")
    s.poll()
    s.expect("P.", seq=syn.seq + 1, ack=7001, data=b"hi")


def test_rst_for_closed_port_rules():
    s = Script()
    s.peer("S", seq=100)
    s.expect("R.", seq=0, ack=101)                   # no ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>
    s.peer("P", seq=100, data=b"abc")
    s.expect("R.", seq=0, ack=103)
    s.peer("F", seq=100, data=b"abc")
    s.expect("R.", seq=0, ack=104)
    s.peer(".", seq=100, ack=5555)
    s.expect("R", seq=5555)                          # ACK: <SEQ=SEG.ACK><CTL=RST>
    s.peer("R", seq=100)
    s.peer("R.", seq=100, ack=9)
    s.expect_nothing()                               # never answer an RST
    assert s.counters.get("tcp.out_rsts") == 4


def test_listen_state_rules():
    s = Script()
    s.layer.listen(80)
    s.peer(".", seq=1, ack=777)
    s.expect("R", seq=777)
    s.peer("R", seq=1)
    s.peer("P", seq=1, data=b"x")                    # neither SYN nor ACK: dropped
    s.expect_nothing()


def test_backlog_full_drops_syn_without_syncookies():
    s = Script(TCPConfig(syncookies=SynCookieMode.NEVER))
    lst = s.layer.listen(80, backlog=2)
    for i in range(3):
        s.peer("S", seq=100, sport=5000 + i)
    assert len(lst.syn_queue) == 2
    assert len(s.sent()) == 2
    assert s.counters.get("tcp.listen.drops") == 1


def test_accept_queue_full_drops_syn():
    s = Script()
    lst = s.layer.listen(80, backlog=1)
    s.peer("S", seq=100, sport=5000)
    a = s.expect("S.")
    s.peer(".", seq=101, ack=a.seq + 1, sport=5000)
    assert lst.pending == 1
    s.peer("S", seq=100, sport=5001)
    s.expect_nothing()
    assert s.counters.get("tcp.listen.overflows") == 1
    assert lst.accept() is not None
    s.peer("S", seq=100, sport=5001)
    s.expect("S.")


def test_duplicate_syn_resends_synack_and_synack_retransmits():
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1, mss=1460)
    a = s.expect("S.")
    s.peer("S", seq=1, mss=1460)
    b = s.expect("S.", seq=a.seq, ack=2)
    s.at(1.0)
    s.expect("S.", seq=a.seq, ack=2)


def test_syn_received_bad_ack_gets_rst_and_rst_returns_to_listen():
    s = Script()
    lst = s.layer.listen(80)
    s.peer("S", seq=1)
    a = s.expect("S.")
    s.peer(".", seq=2, ack=a.seq + 10)
    s.expect("R", seq=a.seq + 10)
    s.peer("R", seq=2)
    assert not lst.syn_queue and not s.layer.connections
    s.peer(".", seq=2, ack=a.seq + 1)                # too late now: a closed 4-tuple
    s.expect("R", seq=a.seq + 1)


def test_malformed_segment_dropped_and_counted():
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1, corrupt=True)
    s.expect_nothing()
    assert s.counters.get("tcp.in.drop.bad_checksum") == 1
    s.layer.on_datagram(PEER, 1, memoryview(b"\x00" * 7), 0.0)
    assert s.counters.get("tcp.in.drop.truncated") == 1


def test_listen_twice_and_explicit_port_in_use():
    s = Script()
    s.layer.listen(80)
    with pytest.raises(OSError):
        s.layer.listen(80)
    s.layer.connect(PEER, 9, 0.0, src_port=1234)
    with pytest.raises(OSError):
        s.layer.connect(PEER, 9, 0.0, src_port=1234)


def test_mss_from_link_mtu():
    from netstack.tcp import TCPLayer
    assert TCPConfig.for_mtu(9000).mss == 8960
    layer = TCPLayer(1, config=TCPConfig(), mtu=1280)
    assert layer.config.mss == 1240
    s = Script(TCPConfig.for_mtu(1400))
    s.layer.listen(80)
    s.peer("S", seq=1, mss=1460)
    s.expect("S.", mss=1360)
    assert s.layer.connections[(PEER, 40000, 80)].snd.mss == 1360
