"""IPv4 output: header fields and fragmentation (RFC 791 §3.2)."""
import pytest
from hypothesis import given, settings, strategies as st

from netstack.ip import DatagramTooBig
from netstack.wire.ipv4 import parse_ipv4

from tests.support.ip_helpers import PEER, US, Recorder, layer, out_packets


def test_small_datagram_one_packet():
    ip = layer(mtu=1500)
    assert ip.send(PEER, 6, b"hello") == 1
    (p,) = out_packets(ip)
    assert (p.src, p.dst, p.protocol, p.ttl, p.df, p.mf, p.frag_offset) == (US, PEER, 6, 64, False, False, 0)
    assert bytes(p.payload) == b"hello" and p.checksum_ok


def test_exactly_mtu_is_not_fragmented():
    ip = layer(mtu=1500)
    assert ip.send(PEER, 6, bytes(1480)) == 1


@pytest.mark.parametrize("mtu,size", [(1500, 4008), (576, 3000), (68, 100), (1500, 1481), (1500, 65515)])
def test_fragmentation_rebuilds_the_payload(mtu, size):
    ip = layer(mtu=mtu)
    payload = bytes(i % 251 for i in range(size))
    n = ip.send(PEER, 1, payload)
    frags = out_packets(ip)
    assert len(frags) == n > 1
    idents = {f.ident for f in frags}
    assert len(idents) == 1
    data = bytearray()
    for i, f in enumerate(frags):
        assert f.total_length <= mtu and f.checksum_ok
        assert f.frag_offset == len(data)
        assert f.mf == (i < n - 1)
        if f.mf:
            assert len(f.payload) % 8 == 0
        data += f.payload
    assert bytes(data) == payload
    assert ip.counters.get("ip.out.fragments") == n


def test_df_set_and_too_big_raises_to_caller():
    ip = layer(mtu=1500)
    with pytest.raises(DatagramTooBig) as ei:
        ip.send(PEER, 6, bytes(2000), df=True)
    assert ei.value.mtu == 1500
    assert not ip.outbox
    assert ip.counters.get("ip.out.drop.too_big_df") == 1


def test_beyond_65535_refused():
    ip = layer()
    with pytest.raises(DatagramTooBig):
        ip.send(PEER, 6, bytes(65516))


def test_idents_advance():
    ip = layer()
    ip.send(PEER, 6, b"a")
    ip.send(PEER, 6, b"b")
    a, b = out_packets(ip)
    assert (a.ident + 1) & 0xFFFF == b.ident


def test_output_roundtrips_through_input_reassembly():
    sender = layer(mtu=576)
    receiver = type(sender)(PEER)
    t = Recorder()
    receiver.register(6, t)
    payload = bytes(range(256)) * 20
    sender.send(PEER, 6, payload)
    for p in reversed(list(sender.outbox)):      # out of order, too
        receiver.input(p, 0)
    assert t.got == [(US, PEER, payload, 0)]


def test_a_segment_with_headroom_is_sent_in_place_as_the_same_datagram():
    """Outgoing.headroom: the header is written in front of the segment, in its own buffer
    (no copy into the transmit buffer), and the datagram is byte for byte the copied one."""
    from netstack.ip.layer import IPLayer

    sent = []
    segment = bytes(range(256)) * 4
    ip = IPLayer(0xC6120002, emit=lambda view, meta=None: sent.append((getattr(view, "obj", view), bytes(view))))
    ip._ident = 7
    ip.send(0xC6120001, 6, segment, df=True)
    buf = bytearray(20) + segment
    ip._ident = 7
    ip.send(0xC6120001, 6, memoryview(buf)[20:], df=True, headroom=20)
    (obj1, copied), (obj2, in_place) = sent
    assert in_place == copied and obj2 is buf and obj1 is not buf
    assert bytes(buf[:20]) == copied[:20]


@settings(max_examples=200, deadline=None)
@given(size=st.sampled_from([0, 1, 32, 551, 1480, 1481, 3000]), df=st.booleans(), floored=st.booleans(),
       proto=st.sampled_from([6, 17, 253]), ident=st.integers(0, 0xFFFF), mtu=st.sampled_from([576, 1500]))
def test_send_plain_sends_what_send_sends(size, df, floored, proto, ident, mtu):
    """The stack's entry for plain outbox items (send_plain) and the general path (send with a
    TTL given, which takes it) send the same datagrams, fragments and DF cleared by the path-MTU
    floor included, or refuse alike."""
    from netstack.ip.layer import IPLayer

    results = []
    for plain in (True, False):
        sent = []
        ip = IPLayer(US, mtu=mtu, emit=lambda view, meta=None: sent.append(bytes(view)))
        ip._ident = ident
        if floored:
            ip.pmtu.no_df.add(PEER)
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        try:
            n = ip.send_plain(PEER, proto, payload, df) if plain else ip.send(PEER, proto, payload, df=df, ttl=64)
        except DatagramTooBig as exc:
            n = ("too big", exc.mtu)
        results.append((n, sent, ip.counters.snapshot()))
    assert results[0] == results[1]
