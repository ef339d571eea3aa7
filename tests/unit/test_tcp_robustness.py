"""Hostile or random input never breaks the TCP layer: arbitrary segments against a listener
and an established connection raise nothing, and the core invariants hold afterwards."""
from hypothesis import HealthCheck, given, settings, strategies as st

from netstack.tcp import State
from netstack.tcp.seq import seq_le
from tests.support.tcp_script import PEER, US, Script

MASK = 0xFFFFFFFF

segment = st.fixed_dictionaries({
    "flags": st.sampled_from(["S", "S.", ".", "P.", "F.", "R", "R.", "FP.", "SF", "SR.", "", "P"]),
    "seq_off": st.one_of(st.integers(-70000, 70000), st.integers(0, MASK)),
    "ack_off": st.one_of(st.integers(-70000, 70000), st.integers(0, MASK)),
    "win": st.integers(0, 65535),
    "data": st.binary(max_size=3000),
    "ts": st.one_of(st.none(), st.tuples(st.integers(0, MASK), st.integers(0, MASK))),
    "wscale": st.one_of(st.none(), st.integers(0, 14)),
    "mss": st.one_of(st.none(), st.integers(0, 65535)),
    "dt": st.floats(0, 5),
})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=12))
def test_random_segments_against_established_connection(segs):
    s = Script()
    conn, synack = s.passive_open()
    conn.send(b"q" * 5000)
    us, them = synack.seq + 1, 1001
    for d in segs:
        s.after(d["dt"])
        s.peer(d["flags"], seq=them + d["seq_off"], ack=us + d["ack_off"], win=d["win"],
               data=d["data"], ts=d["ts"], wscale=d["wscale"], mss=d["mss"])
        for seg in s.sent():                 # everything we send parses, checksums verify
            assert seg.dst_port == 40000
        if conn.state is not State.CLOSED:
            assert seq_le(conn.snd.una, conn.snd.nxt) and seq_le(conn.snd.nxt, conn.snd.max)
            assert conn.readable <= conn.rcv.buf.capacity + 70000
            assert conn.rcv.ooo.nbytes <= conn.config.ooo_max
    s.after(200.0)
    s.sent()


@settings(max_examples=100, deadline=None)
@given(st.lists(segment, min_size=1, max_size=8))
def test_random_segments_against_listener_and_closed_ports(segs):
    s = Script()
    lst = s.layer.listen(80, backlog=4)
    for i, d in enumerate(segs):
        s.peer(d["flags"], seq=d["seq_off"], ack=d["ack_off"], win=d["win"], data=d["data"],
               ts=d["ts"], wscale=d["wscale"], mss=d["mss"], sport=1000 + i % 3,
               dport=80 if i % 2 else 81)
        for seg in s.sent():
            # only RSTs, SYN-ACKs and bare (challenge/duplicate) ACKs; never data or FIN
            assert not seg.payload and not seg.flags & 0x01
    assert len(lst.syn_queue) + lst.pending <= 8
