"""TCP's fast paths behave exactly like the general ones.

- build_segment(): a pure ACK with NOP,NOP,TS is packed in one go, its checksum
  computed from the field values; it must be byte-for-byte what build_tcp writes.
- TCPLayer.on_datagram(): header prediction from the raw header (no TCPSegment)
  for in-order data to an ESTABLISHED connection; everything it does not predict,
  and anything corrupted, takes the full path with its checks and counters.
"""
from __future__ import annotations

import random
import struct

import pytest

from netstack.tcp.output import build_segment
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
        opts = struct.pack("!III", 0x0101080A, rng.randrange(1 << 32), rng.randrange(1 << 32))
        fast = build_segment(src, dst, *args, opts, b"")
        assert fast == _generic(src, dst, *args, opts)
        assert parse_tcp(fast, src=src, dst=dst).checksum_ok


def test_a_checksum_summing_to_zero_matches_too():
    # find fields whose ones' complement sum folds to 0xFFFF (checksum 0): both builders agree
    opts = struct.pack("!III", 0x0101080A, 1, 2)
    for seq in range(200000):
        fast = build_segment(A, B, 1, 2, seq, 0, ACK, 0, opts, b"")
        if fast[16:18] == b"\0\0":
            assert fast == _generic(A, B, 1, 2, seq, 0, ACK, 0, opts)
            return
    pytest.skip("no zero checksum in range")


def test_other_segments_use_the_general_builder():
    for opts, payload in ((b"", b""), (b"\x02\x04\x05\xb4", b""),
                          (struct.pack("!III", 0x0101080A, 5, 6), b"data")):
        seg = build_segment(A, B, 7, 8, 100, 200, ACK | PSH, 1000, opts, payload)
        assert parse_tcp(seg, src=A, dst=B).payload == payload


def test_pure_acks_do_not_go_through_build_tcp(monkeypatch):
    import netstack.tcp.output as out

    def no_generic(*a, **k):
        raise AssertionError("the pure ACK should be packed directly")

    monkeypatch.setattr(out, "build_tcp", no_generic)
    seg = out.build_segment(A, B, 1, 2, 3, 4, ACK, 5, struct.pack("!III", 0x0101080A, 6, 7), b"")
    assert parse_tcp(seg, src=A, dst=B).options.ts_val == 6
