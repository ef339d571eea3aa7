"""TCP's fast paths behave exactly like the general ones.

- segment.serialize(): a pure ACK with NOP,NOP,TS (the pure-ACK template) is packed in
  one go, its checksum computed from the field values; it must be byte-for-byte what
  build_tcp writes.
- TCPLayer.on_datagram(): header prediction from the raw header (no TCPSegment)
  for in-order data to an ESTABLISHED connection; everything it does not predict,
  and anything corrupted, takes the full path with its checks and counters.
"""
from __future__ import annotations

import random
import struct

import pytest

from netstack.tcp.negotiation import SynOptions
from netstack.tcp.segment import serialize
from netstack.tcp.state import State
from netstack.wire.ipv4 import ip2int
from netstack.wire.tcp import ACK, FIN, PSH, build_tcp, parse_tcp

A = ip2int("198.18.0.2")
B = ip2int("198.18.0.1")


def _generic(src, dst, sport, dport, seq, ack, flags, window, options):
    buf = bytearray(20 + len(options))
    build_tcp(buf, 0, src=src, dst=dst, src_port=sport, dst_port=dport, seq=seq, ack=ack, flags=flags,
              window=window, options=options)
    return buf


def test_pure_ack_with_timestamps_matches_build_tcp():
    rng = random.Random(9)
    for _ in range(5000):
        src, dst = rng.randrange(1 << 32), rng.randrange(1 << 32)
        args = (rng.randrange(65536), rng.randrange(65536), rng.randrange(1 << 32), rng.randrange(1 << 32),
                rng.choice([ACK, ACK | FIN, ACK | PSH]), rng.randrange(65536))
        ts = (rng.randrange(1 << 32), rng.randrange(1 << 32))
        opts = struct.pack("!III", 0x0101080A, *ts)
        fast = serialize(src, dst, *args, b"", ts)
        assert fast == _generic(src, dst, *args, opts)
        assert parse_tcp(fast, src=src, dst=dst).checksum_ok


def test_a_checksum_summing_to_zero_matches_too():
    # find fields whose ones' complement sum folds to 0xFFFF (checksum 0): both builders agree
    opts = struct.pack("!III", 0x0101080A, 1, 2)
    for seq in range(200000):
        fast = serialize(A, B, 1, 2, seq, 0, ACK, 0, b"", (1, 2))
        if fast[16:18] == b"\0\0":
            assert fast == _generic(A, B, 1, 2, seq, 0, ACK, 0, opts)
            return
    pytest.skip("no zero checksum in range")


def test_other_segments_use_the_general_builder():
    syn = SynOptions(mss=1460, wscale=None, sack_permitted=False, ts=None)
    for kw, payload in (({}, b""), ({"syn": syn}, b""), ({"ts": (5, 6)}, b"data"),
                        ({"ts": (5, 6), "sack_blocks": [(1, 2)]}, b"")):
        seg = serialize(A, B, 7, 8, 100, 200, ACK | PSH, 1000, payload, **kw)
        parsed = parse_tcp(seg, src=A, dst=B)
        assert parsed.payload == payload and parsed.checksum_ok
        assert parsed.options.mss == (1460 if "syn" in kw else None)
        assert parsed.options.ts_val == (5 if "ts" in kw else None)


def test_pure_acks_do_not_go_through_build_tcp(monkeypatch):
    import netstack.tcp.segment as out

    def no_generic(*a, **k):
        raise AssertionError("the pure ACK should be packed directly")

    monkeypatch.setattr(out, "build_tcp", no_generic)
    seg = out.serialize(A, B, 1, 2, 3, 4, ACK, 5, b"", (6, 7))
    assert parse_tcp(seg, src=A, dst=B).options.ts_val == 6


# --- header prediction from the raw header -------------------------------------------------------

from netstack.tcp import TCPConfig, TCPLayer              # noqa: E402
from netstack.wire.tcp import SYN, tcp_segment            # noqa: E402
from netstack.wire.tcp_options import build_options       # noqa: E402

PORT, CPORT = 5001, 40000


class _Counters:
    def __init__(self):
        self.c = {}

    def inc(self, name, n=1):
        self.c[name] = self.c.get(name, 0) + n


def _established(isn=0xFFFFFF00):
    """A TCPLayer with one connection ESTABLISHED by a handshake with timestamps; (layer, conn, state)."""
    layer = TCPLayer(A, counters=_Counters(), config=TCPConfig(), isn_secret=b"fixed")
    lst = layer.listen(PORT)
    syn = tcp_segment(src=B, dst=A, src_port=CPORT, dst_port=PORT, seq=isn, ack=0, flags=SYN, window=65535,
                      options=build_options(mss=1460, sack_permitted=True, ts=(1000, 0), wscale=7))
    layer.on_datagram(B, A, memoryview(syn), 10.0)
    synack = layer.outbox.popleft()[1]
    sa = parse_tcp(synack, src=A, dst=B)
    peer = {"seq": (isn + 1) & 0xFFFFFFFF, "ack": (sa.seq + 1) & 0xFFFFFFFF, "ecr": sa.options.ts_val}
    layer.on_datagram(B, A, memoryview(_seg(peer, ACK, b"", 1001)), 10.01)
    conn = lst.accept()
    assert conn.state is State.ESTABLISHED
    return layer, conn, peer


def _seg(peer, flags, payload, tsval, *, seq=None, window=512):
    return tcp_segment(src=B, dst=A, src_port=CPORT, dst_port=PORT, seq=peer["seq"] if seq is None else seq,
                       ack=peer["ack"], flags=flags, window=window,
                       options=struct.pack("!III", 0x0101080A, tsval, peer["ecr"]), payload=payload)


def test_in_order_data_is_predicted_without_parsing(monkeypatch):
    import netstack.tcp.layer as L

    layer, conn, peer = _established()
    layer.outbox.clear()
    monkeypatch.setattr(L, "parse_tcp", lambda *a, **k: (_ for _ in ()).throw(AssertionError("parsed")))
    for i in range(4):
        layer.on_datagram(B, A, memoryview(_seg(peer, ACK | (PSH if i == 3 else 0), b"x" * 1448, 1002 + i)),
                          10.1)
        peer["seq"] = (peer["seq"] + 1448) & 0xFFFFFFFF
    assert conn.recv(100000) == b"x" * 4 * 1448
    assert 2 <= len(layer.outbox) <= 4              # delayed ACK, or quick-ACK right after the handshake
    assert parse_tcp(layer.outbox[-1][1], src=A, dst=B).ack == peer["seq"]
    assert layer.counters.c["tcp.in_segs"] == 2 + 4


def _script(peer):
    """Segments exercising the predicted path and every way out of it."""
    data = bytes(range(256)) * 6
    out = []
    seq = peer["seq"]
    ts = 1002
    for i in range(6):                                             # in order (across the 2^32 wrap)
        out.append(("ok", _seg(peer, ACK, data[:1448], ts, seq=seq)))
        seq = (seq + 1448) & 0xFFFFFFFF
        ts += 1
    bad = bytearray(_seg(peer, ACK, data[:1448], ts, seq=seq))
    bad[40] ^= 0xFF
    out.append(("corrupted", bytes(bad)))                          # checksum: full path, dropped
    out.append(("old ts", _seg(peer, ACK, data[:1448], 5, seq=seq)))   # PAWS: full path
    ooo = (seq + 1448) & 0xFFFFFFFF
    out.append(("out of order", _seg(peer, ACK, data[:1448], ts, seq=ooo)))
    out.append(("fills the hole", _seg(peer, ACK | PSH, data[:1448], ts, seq=seq)))
    seq = (ooo + 1448) & 0xFFFFFFFF
    out.append(("duplicate", _seg(peer, ACK, data[:100], ts, seq=(seq - 1448) & 0xFFFFFFFF)))
    out.append(("window change", _seg(peer, ACK, data[:1000], ts + 1, seq=seq, window=600)))
    seq = (seq + 1000) & 0xFFFFFFFF
    out.append(("with FIN", _seg(peer, ACK | FIN, data[:10], ts + 2, seq=seq)))
    return out


def test_predicted_and_full_paths_agree_segment_by_segment(monkeypatch):
    import netstack.tcp.layer as L

    results = []
    for predict in (True, False):
        if not predict:
            monkeypatch.setattr(L, "_predict", lambda *a: None)    # every segment takes the full path
        layer, conn, peer = _established()
        layer.outbox.clear()
        trace = []
        for i, (what, seg) in enumerate(_script(peer)):
            layer.on_datagram(B, A, memoryview(seg), 10.1 + i * 0.001)
            trace.append((what, [bytes(item[1]) for item in layer.outbox], conn.rcv.nxt, str(conn.state),
                          conn.neg.ts_recent, conn.readable))
            layer.outbox.clear()
        results.append((trace, conn.recv(1 << 20), dict(layer.counters.c)))
    assert results[0] == results[1]
    trace, data, counters = results[0]
    assert counters.get("tcp.in.drop.bad_checksum") == 1 and counters.get("tcp.in.drop.paws") == 1
    assert len(data) == 8 * 1448 + 1000 + 10 and trace[-1][3] == "CLOSE-WAIT"


def test_out_of_range_fields_still_raise_value_error():
    with pytest.raises(ValueError):
        serialize(A, B, 70000, 2, 3, 4, ACK, 5, b"", (1, 2))
    with pytest.raises(ValueError):
        serialize(A, B, 1, 2, 3, 4, ACK, 1 << 16, b"", (1, 2))
