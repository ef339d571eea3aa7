"""TCPLayer plumbing (Transport protocol), user-facing events, info(), timers, listener close,
and the remaining state transitions."""
import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.timers import Timer, Timers
from netstack.tcp.events import ConnEvent, ListenerEvent
from tests.support.tcp_script import PEER, Script


def test_user_write_kicks_and_flushes_on_poll():
    s = Script(TCPConfig(tlp=False))
    conn, synack = s.passive_open()
    kicks = []
    s.layer.on_output = lambda: kicks.append(1)
    conn.send(b"hello")
    assert kicks and not s.layer.outbox          # nothing sent without a "now"
    assert s.layer.next_deadline() == s.now      # ... but the layer asks for a poll at once
    s.at(0.5)
    s.expect("P.", data=b"hello")
    assert s.layer.next_deadline() == pytest.approx(0.5 + conn.rto.rto)


def test_connect_kicks_output():
    s = Script()
    kicks = []
    s.layer.on_output = lambda: kicks.append(1)
    s.layer.connect(PEER, 80, 0.0)
    assert kicks and len(s.layer.outbox) == 1


def test_writes_from_event_callbacks_go_out_in_the_same_pass():
    s = Script()
    conn, synack = s.passive_open()
    kicks = []
    s.layer.on_output = lambda: kicks.append(1)
    conn.on_event = lambda ev: ev == ConnEvent.READABLE and conn.send(b"pong")
    s.peer("P.", seq=1001, ack=synack.seq + 1, data=b"ping", ts=(102, 0))
    s.expect("P.", data=b"pong")
    assert not kicks                             # inside on_datagram: no kick needed


def test_event_sequence_for_a_whole_connection():
    s = Script()
    lst = s.layer.listen(80)
    lev = []
    lst.on_event = lev.append
    conn, synack = s.passive_open()
    assert lev == [ListenerEvent.ACCEPTABLE]
    ev = []
    conn.on_event = ev.append
    us, them = synack.seq + 1, 1001
    s.peer("P.", seq=them, ack=us, data=b"abc", ts=(102, 0))
    s.expect(".", ack=them + 3)                # quick-ACK: first data after the handshake
    conn.send(b"xyz"); s.poll()
    seg = s.expect("P.")
    s.peer(".", seq=them + 3, ack=us + 3, ts=(103, seg.options.ts_val))
    s.peer("F.", seq=them + 3, ack=us + 3, ts=(104, seg.options.ts_val))
    conn.close(); s.poll()
    s.sent()
    s.peer(".", seq=them + 4, ack=us + 4, ts=(105, seg.options.ts_val))
    assert ev == [ConnEvent.READABLE, ConnEvent.WRITABLE, ConnEvent.EOF, ConnEvent.CLOSED]
    assert list(conn.events)[0] == ConnEvent.ESTABLISHED


def test_callback_exception_does_not_break_the_stack():
    s = Script()
    conn, synack = s.passive_open()
    conn.on_event = lambda ev: 1 / 0
    s.peer("P.", seq=1001, ack=synack.seq + 1, data=b"x", ts=(102, 0))
    assert conn.readable == 1


def test_info_like_ss():
    s = Script()
    conn, synack = s.passive_open()
    i = conn.info()
    assert i["state"] == "ESTABLISHED" and i["remote"] == "192.0.2.2:40000"
    assert i["snd_una"] == synack.seq + 1 and i["rcv_nxt"] == 1001
    assert i["mss"] == 1448 and i["timestamps"] and i["sack_ok"] and i["wscale_ok"]
    assert i["rto"] == 1.0 and i["cwnd"] == 10 * 1448
    assert {"srtt", "rttvar", "retrans", "ssthresh", "snd_wnd", "rcv_wnd"} <= set(i)
    assert s.layer.table() == [i]


def test_counters_in_and_out():
    s = Script()
    s.passive_open()
    assert s.counters.get("tcp.in_segs") == 2 and s.counters.get("tcp.out_segs") == 1


def test_timers_next_deadline_over_slot_delack_and_tlp():
    t = Timers()
    assert t.next_deadline() is None
    t.arm(Timer.RETRANSMIT, 1.0)
    t.delack = 0.3
    assert t.arm_tlp(0.2) and t.next_deadline() == 0.2
    t.tlp = None
    assert t.next_deadline() == 0.3
    t.stop_all()
    assert t.next_deadline() is None and t.as_dict() == {}


def test_listener_close_resets_unaccepted():
    s = Script()
    lst = s.layer.listen(80)
    s.peer("S", seq=1)
    a = s.expect("S.")
    s.peer(".", seq=2, ack=a.seq + 1)
    lst.close()
    s.expect("R", seq=a.seq + 1)
    assert 80 not in s.layer.listeners and not s.layer.connections
    s.peer("S", seq=1, sport=999)
    s.expect("R.")


def test_close_in_syn_sent_and_shutdown_in_syn_received():
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    s.sent()
    conn.close()
    assert conn.state is State.CLOSED and not s.layer.connections
    # passive side: the user shuts down before the handshake completes -> FIN after ESTABLISHED
    s = Script()
    s.layer.listen(80)
    s.peer("S", seq=1)
    a = s.expect("S.")
    c = s.layer.connections[(PEER, 40000, 80)]
    c.shutdown_write()
    assert c.state is State.SYN_RECEIVED
    s.peer(".", seq=2, ack=a.seq + 1)
    assert c.state is State.FIN_WAIT_1
    s.expect("F.", seq=a.seq + 1)


def test_ephemeral_ports_distinct():
    s = Script()
    ports = {s.layer.connect(PEER, 80, 0.0).local_port for _ in range(50)}
    assert len(ports) == 50
    assert all(49152 <= p <= 65535 for p in ports)


def _quote(conn_src, conn_dst, sport, dport, seq):
    from netstack.wire.ipv4 import ipv4_packet
    tcp8 = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    return memoryview(ipv4_packet(src=conn_src, dst=conn_dst, protocol=6, payload=tcp8))


def test_icmp_frag_needed_lowers_mss_and_resends():
    from tests.support.tcp_script import US
    s = Script()
    conn, synack = s.passive_open()
    us = synack.seq + 1
    conn.send(b"m" * 3000); s.poll()
    assert [len(x.payload) for x in s.sent()] == [1448, 1448, 104]   # Minshall: the tail goes too
    s.layer.on_icmp_error(3, 4, 1000, _quote(US, PEER, 80, 40000, us), s.now)
    assert conn.snd.mss == 1000 - 40 - 12
    segs = s.sent()
    assert segs[0].seq == us and all(len(x.payload) <= 948 for x in segs)
    # a quoted sequence number outside SND.UNA..SND.MAX is ignored (RFC 5927)
    s.layer.on_icmp_error(3, 4, 600, _quote(US, PEER, 80, 40000, us + 100000), s.now)
    assert conn.snd.mss == 948
    assert s.counters.get("tcp.in.icmp.drop.out_of_window") == 1


def test_icmp_port_unreachable_refuses_syn_sent():
    from tests.support.tcp_script import US
    s = Script()
    conn = s.layer.connect(PEER, 8080, 0.0)
    syn = s.expect("S")
    s.layer.on_icmp_error(3, 3, 0, _quote(US, PEER, conn.local_port, 8080, syn.seq), 0.1)
    assert conn.state is State.CLOSED and isinstance(conn.error, ConnectionRefusedError)


def test_connection_segments_ask_for_df_and_reach_the_wire_with_it():
    """A connection's segments go out with DF set (path-MTU discovery, RFC 1191 / RFC 1122 §4.2.2.6),
    all the way through the IP layer."""
    from netstack.counters import Counters
    from netstack.ip.layer import IPLayer
    from netstack.wire.ipv4 import PROTO_TCP, parse_ipv4

    s = Script()
    s.layer.connect(PEER, 80, 0.0)
    dst, seg, df, *_offload = s.layer.outbox[0]
    assert dst == PEER and df is True
    ip = IPLayer(s.layer.local_addr, counters=Counters())
    ip.send(dst, PROTO_TCP, seg, 0.0, df=df)
    assert parse_ipv4(ip.outbox.popleft()).df
