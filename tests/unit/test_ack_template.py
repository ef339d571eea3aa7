"""The per-connection pure-ACK template (netstack.tcp.segment.AckTemplate): the same bytes as
serialize's general path, the constant part of the checksum sum computed once per connection."""
from __future__ import annotations

from hypothesis import given, strategies as st

from netstack.tcp import TCPConfig
from netstack.tcp.segment import AckTemplate, serialize
from netstack.wire.tcp import ACK, FIN, PSH, parse_tcp

from tests.support.tcp_script import PEER, US, Script

u32 = st.integers(0, 2**32 - 1)


@given(src=u32, dst=u32, sport=st.integers(0, 65535), dport=st.integers(0, 65535), seq=st.integers(0, 2**33),
       ack=st.integers(0, 2**33), flags=st.sampled_from([ACK, ACK | PSH, ACK | FIN, 0, 0x1FF]),
       window=st.integers(0, 65535), tsval=u32, tsecr=u32)
def test_the_template_builds_serializes_bytes(src, dst, sport, dport, seq, ack, flags, window, tsval, tsecr):
    built = AckTemplate(src, dst, sport, dport).build(seq, ack, flags, window, tsval, tsecr)
    if seq >= 2**32 or ack >= 2**32:
        assert built is None                                  # left to serialize, which wraps them
        return
    assert built == serialize(src, dst, sport, dport, seq, ack, flags, window, b"", (tsval, tsecr))
    seg = parse_tcp(built, src=src, dst=dst)                  # the checksum verifies
    assert (seg.seq, seg.ack, seg.window) == (seq % 2**32, ack % 2**32, window)


def test_an_out_of_range_field_is_left_to_serialize():
    t = AckTemplate(1, 2, 3, 4)
    assert t.build(0, 0, 0x200, 100, 1, 1) is None            # flags beyond 9 bits
    assert t.build(0, 0, ACK, 65536, 1, 1) is None            # window beyond 16 bits
    assert t.build(0, 0, ACK, 100, 2**32, 1) is None          # TSval beyond 32 bits
    assert t.build(2**32, 0, ACK, 100, 1, 1) is None          # a sequence number not taken modulo 2**32


def test_a_connection_s_pure_acks_come_from_its_template_and_it_goes_with_the_connection():
    s = Script(TCPConfig())
    conn, _ = s.passive_open(win=65535, wscale=7, mss=1460)
    s.layer.outbox.clear()
    conn.sender.send_ack(s.now)                                # a pure ACK with timestamps
    (dst, seg, df, *_), = s.layer.outbox
    assert type(seg) is bytes and len(seg) == 32 and dst == PEER and df
    p = parse_tcp(seg, src=US, dst=PEER)
    assert p.flags == ACK and seg[20:24] == b"\x01\x01\x08\x0a" and p.ack == conn.rcv.nxt
    assert s.layer.ack_templates.keys() == {conn}
    conn.abort()
    assert not s.layer.ack_templates


@given(src=u32, dst=u32, sport=st.integers(0, 65535), dport=st.integers(0, 65535), seq=st.integers(0, 2**33),
       ack=st.integers(0, 2**33), flags=st.sampled_from([ACK, ACK | PSH, ACK | FIN | PSH, 0x1FF]),
       window=st.integers(0, 65535), tsval=u32, tsecr=u32, payload=st.binary(min_size=1, max_size=3000),
       partial=st.booleans(), headroom=st.sampled_from([0, 20]))
def test_the_template_builds_data_segments_as_serialize(src, dst, sport, dport, seq, ack, flags, window, tsval,
                                                         tsecr, payload, partial, headroom):
    built = AckTemplate(src, dst, sport, dport).build_data(seq, ack, flags, window, tsval, tsecr,
                                                            memoryview(payload), partial, headroom)
    ref = serialize(src, dst, sport, dport, seq, ack, flags, window, payload, (tsval, tsecr), None, None, partial,
                    headroom)
    assert bytes(built) == bytes(ref) and type(built) is type(ref)
    if headroom:
        assert len(built.obj) == len(ref.obj) == headroom + len(ref)
    if not partial:
        seg = parse_tcp(bytes(built), src=src, dst=dst)       # the checksum verifies
        assert seg.payload == payload and seg.options.ts_val == tsval


def test_an_out_of_range_data_field_is_left_to_serialize():
    t = AckTemplate(1, 2, 3, 4)
    assert t.build_data(0, 0, 0x200, 100, 1, 1, b"x", False, 0) is None     # flags beyond 9 bits
    assert t.build_data(0, 0, ACK, 65536, 1, 1, b"x", True, 20) is None     # window beyond 16 bits
