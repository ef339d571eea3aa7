"""TCP header and options parse/build (RFC 9293 §3.1, RFC 7323, RFC 2018)."""
from __future__ import annotations

import pytest

from netstack.wire import tcp as tcp_mod
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import int2ip, ip2int, parse_ipv4
from netstack.wire.tcp import (
    ACK, CWR, ECE, FIN, NS, PSH, RST, SYN, URG, TCPOptions, TCPSegment, build_options, build_tcp, flags_str,
    parse_options, parse_tcp, tcp_segment,
)
from netstack.wire.tcp_options import encode_options, max_sack_blocks

from tests.support.wire_vectors import SEED_HELO, ref_tcp_checksum

A = ip2int("198.18.0.1")
B = ip2int("198.18.0.2")


def reason_of(fn, *args, **kw) -> str:
    with pytest.raises(MalformedPacket) as info:
        fn(*args, **kw)
    assert info.value.layer == "tcp"
    return info.value.reason


def seg(**kw) -> bytes:
    base = dict(src=A, dst=B, src_port=1234, dst_port=25, seq=1, ack=2, flags=ACK, window=1000)
    base.update(kw)
    return tcp_segment(**base)


# ---------------------------------------------------------------- seed article HELO

def test_seed_helo_tcp_fields():
    ip = parse_ipv4(SEED_HELO, verify=False)
    s = parse_tcp(ip.payload, src=ip.src, dst=ip.dst, verify=False)
    assert int2ip(ip.src) == "192.168.1.100" and int2ip(ip.dst) == "192.168.1.200"
    assert (s.src_port, s.dst_port) == (40565, 25)
    assert (s.seq, s.ack, s.window) == (159505509, 578397676, 33304)
    assert s.seq + len(s.payload) == 159505543  # tcpdump's 159505509:159505543(34)
    assert s.flags == PSH | ACK and flags_str(s.flags) == "P."
    assert s.data_offset == 8 and len(s.options_raw) == 12
    assert bytes(s.options_raw) == bytes.fromhex("0101080a127dd9290670 6afb".replace(" ", ""))
    assert s.options.ts_val == 310237481 and s.options.ts_ecr == 108030715
    assert s.options.items == [("nop",), ("nop",), ("ts", 310237481, 108030715)]
    assert s.options.offsets == [(0, 1), (1, 1), (2, 10)]
    assert bytes(s.payload) == b"HELO web34213.mail.mud.yahoo.com\r\n"
    assert s.urgent == 0 and s.seg_len == 34


def test_seed_helo_tcp_checksum_is_really_wrong():
    # tcpdump said "tcp sum ok" on the original capture, but the published addresses were rewritten:
    # over the published bytes the checksum found (0x0449) is not the right one (0xee43).
    ip = parse_ipv4(SEED_HELO, verify=False)
    s = parse_tcp(ip.payload, src=ip.src, dst=ip.dst, verify=False)
    assert s.checksum == 0x0449 and s.checksum_ok is False
    zeroed = bytearray(ip.payload)
    zeroed[16:18] = b"\0\0"
    assert ref_tcp_checksum(ip.src, ip.dst, bytes(zeroed)) == 0xEE43
    assert reason_of(parse_tcp, ip.payload, src=ip.src, dst=ip.dst) == "bad_checksum"
    # Both checksums are off by the same ones'-complement amount (0x1605): exactly what rewriting the
    # addresses, which both sums cover, after capture would do (RFC 1624 incremental arithmetic).
    assert (0x5235 - 0x3C30) % 0xFFFF == (s.checksum - 0xEE43) % 0xFFFF == 0x1605


def test_seed_helo_rebuilds_byte_for_byte_apart_from_checksum():
    ip = parse_ipv4(SEED_HELO, verify=False)
    s = parse_tcp(ip.payload, verify=False)
    out = tcp_segment(src=ip.src, dst=ip.dst, src_port=s.src_port, dst_port=s.dst_port, seq=s.seq, ack=s.ack,
                      flags=s.flags, window=s.window, options=build_options(ts=(s.options.ts_val, s.options.ts_ecr)),
                      payload=s.payload)
    assert out[:16] == bytes(ip.payload[:16]) and out[18:] == bytes(ip.payload[18:])
    assert out[16:18] == b"\xee\x43"


# ---------------------------------------------------------------- header fields and flags

def test_every_field_round_trips():
    opts = build_options(mss=1460, wscale=7, sack_permitted=True, ts=(0xDEADBEEF, 0x01020304))
    raw = seg(src_port=65535, dst_port=1, seq=0xFFFFFFFF, ack=0x80000000, flags=0x1FF, window=0xFFFF,
              urgent=0xABCD, options=opts, payload=b"payload")
    s = parse_tcp(raw, src=A, dst=B)
    assert (s.src_port, s.dst_port, s.seq, s.ack) == (65535, 1, 0xFFFFFFFF, 0x80000000)
    assert s.flags == 0x1FF and s.window == 0xFFFF and s.urgent == 0xABCD
    assert s.data_offset == 5 + len(opts) // 4 and s.header_len == 20 + len(opts)
    assert s.checksum == int.from_bytes(raw[16:18], "big") and s.checksum_ok is True
    assert bytes(s.options_raw) == opts and bytes(s.payload) == b"payload"
    o = s.options
    assert (o.mss, o.wscale, o.sack_permitted, o.ts_val, o.ts_ecr) == (1460, 7, True, 0xDEADBEEF, 0x01020304)


@pytest.mark.parametrize("bit,prop", [(FIN, "fin"), (SYN, "syn"), (RST, "rst"), (PSH, "psh"), (ACK, "ack_flag"),
                                      (URG, "urg"), (ECE, "ece"), (CWR, "cwr"), (NS, "ns")])
def test_each_of_the_nine_flag_bits(bit, prop):
    s = parse_tcp(seg(flags=bit), src=A, dst=B)
    assert s.flags == bit and getattr(s, prop) is True
    others = [p for p in ("fin", "syn", "rst", "psh", "ack_flag", "urg", "ece", "cwr", "ns") if p != prop]
    assert not any(getattr(s, p) for p in others)


def test_flag_bit_positions_on_the_wire():
    raw = seg(flags=NS)
    assert raw[12] == 0x51 and raw[13] == 0x00  # data offset 5, NS is the low bit of byte 12
    raw = seg(flags=CWR | ECE | URG | ACK | PSH | RST | SYN | FIN)
    assert raw[12] == 0x50 and raw[13] == 0xFF


def test_reserved_bits_are_ignored_on_receipt():
    raw = bytearray(seg(flags=ACK))
    raw[12] |= 0x0E  # the three reserved bits
    raw[16:18] = b"\0\0"
    raw[16:18] = ref_tcp_checksum(A, B, bytes(raw)).to_bytes(2, "big")
    s = parse_tcp(raw, src=A, dst=B)
    assert s.flags == ACK and s.data_offset == 5


def test_flags_str_tcpdump_style():
    assert flags_str(SYN) == "S"
    assert flags_str(SYN | ACK) == "S."
    assert flags_str(ACK) == "."
    assert flags_str(PSH | ACK) == "P."
    assert flags_str(FIN | ACK) == "F."
    assert flags_str(RST) == "R"
    assert flags_str(RST | ACK) == "R."
    assert flags_str(SYN | ECE | CWR) == "SEW"
    assert flags_str(SYN | ACK | ECE | NS) == "S.EN"
    assert flags_str(URG | ACK) == ".U"
    assert flags_str(0) == "none"


def test_seg_len_counts_syn_and_fin():
    assert parse_tcp(seg(flags=SYN), src=A, dst=B).seg_len == 1
    assert parse_tcp(seg(flags=SYN | FIN, payload=b"abc"), src=A, dst=B).seg_len == 5
    assert parse_tcp(seg(flags=ACK, payload=b"abc"), src=A, dst=B).seg_len == 3
    assert parse_tcp(seg(flags=FIN | ACK), src=A, dst=B).seg_len == 1


# ---------------------------------------------------------------- zero copy, inputs, checksum modes

def test_payload_and_options_are_views_of_the_input():
    buf = bytearray(b"\xAA" * 3 + seg(options=build_options(ts=(1, 2)), payload=b"hello"))
    s = parse_tcp(memoryview(buf)[3:], src=A, dst=B)
    assert isinstance(s.payload, memoryview) and isinstance(s.options_raw, memoryview)
    assert s.payload.obj is buf and s.options_raw.obj is buf
    buf[-5] = ord("J")
    assert bytes(s.payload) == b"Jello"


def test_verify_modes():
    raw = bytearray(seg(payload=b"x"))
    with pytest.raises(ValueError):
        parse_tcp(raw)  # verify=True needs the pseudo-header addresses
    assert parse_tcp(raw, verify=False).checksum_ok is None
    assert parse_tcp(raw, src=A, dst=B).checksum_ok is True
    raw[-1] ^= 0xFF
    assert reason_of(parse_tcp, raw, src=A, dst=B) == "bad_checksum"
    s = parse_tcp(raw, src=A, dst=B, verify=False)
    assert s.checksum_ok is False and bytes(s.payload) == bytes([ord("x") ^ 0xFF])
    assert reason_of(parse_tcp, seg(), src=A, dst=B + 1) == "bad_checksum"  # pseudo-header covers addresses


# ---------------------------------------------------------------- building

def test_build_into_preallocated_buffer_at_offset():
    buf = bytearray(b"\x55" * 200)
    opts = build_options(ts=(5, 6))
    n = build_tcp(buf, 40, src=A, dst=B, src_port=80, dst_port=81, seq=10, ack=20, flags=PSH | ACK, window=512,
                  options=opts, payload=b"data")
    assert n == 20 + 12 + 4
    assert buf[:40] == b"\x55" * 40 and buf[40 + n:] == b"\x55" * (200 - 40 - n)
    s = parse_tcp(memoryview(buf)[40:40 + n], src=A, dst=B)
    assert s.options.ts_val == 5 and bytes(s.payload) == b"data"


def test_build_into_memoryview_buffer():
    backing = bytearray(64)
    n = build_tcp(memoryview(backing)[4:], 0, src=A, dst=B, src_port=1, dst_port=2, seq=3, ack=4, flags=SYN,
                  window=5)
    assert n == 20 and parse_tcp(memoryview(backing)[4:24], src=A, dst=B).syn


def test_build_makes_exactly_one_pseudo_header_checksum_call(monkeypatch):
    calls = []
    real = tcp_mod._phc

    def counting(src, dst, proto, data):
        calls.append((src, dst, proto, len(data)))
        return real(src, dst, proto, data)

    monkeypatch.setattr(tcp_mod, "_phc", counting)
    build_tcp(bytearray(100), 0, src=A, dst=B, src_port=1, dst_port=2, seq=3, ack=4, flags=ACK, window=5,
              options=build_options(ts=(1, 1)), payload=b"abc")
    assert calls == [(A, B, 6, 35)]
    raw = seg(payload=b"abc")
    calls.clear()
    parse_tcp(raw, src=A, dst=B)
    assert calls == [(A, B, 6, 23)]


def test_options_are_padded_to_32_bits():
    raw = seg(options=b"\x01\x03\x03\x07\x01")  # 5 bytes -> 8
    s = parse_tcp(raw, src=A, dst=B)
    assert s.data_offset == 7 and bytes(s.options_raw) == b"\x01\x03\x03\x07\x01\x00\x00\x00"
    assert s.options.wscale == 7 and s.options.items == [("nop",), ("wscale", 7), ("nop",), ("eol",)]


def test_sequence_numbers_wrap_when_building():
    s = parse_tcp(seg(seq=(1 << 32) + 5, ack=-1), src=A, dst=B)
    assert s.seq == 5 and s.ack == 0xFFFFFFFF


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError):
        build_tcp(bytearray(19), 0, src=A, dst=B, src_port=1, dst_port=2, seq=0, ack=0, flags=0, window=0)
    with pytest.raises(ValueError):
        build_tcp(bytearray(100), 0, src=A, dst=B, src_port=1, dst_port=2, seq=0, ack=0, flags=0, window=0,
                  options=bytes(41))
    with pytest.raises(ValueError):
        build_tcp(bytearray(100), 0, src=A, dst=B, src_port=1, dst_port=2, seq=0, ack=0, flags=0x200, window=0)
    with pytest.raises(ValueError):
        build_tcp(bytearray(100), 0, src=A, dst=B, src_port=65536, dst_port=2, seq=0, ack=0, flags=0, window=0)
    with pytest.raises(ValueError):
        build_tcp(bytearray(100), 0, src=A, dst=B, src_port=1, dst_port=2, seq=0, ack=0, flags=0, window=70000)
    with pytest.raises(ValueError):
        build_tcp(bytearray(30), 0, src=A, dst=B, src_port=1, dst_port=2, seq=0, ack=0, flags=0, window=0,
                  payload=bytes(11))


# ---------------------------------------------------------------- option encodings (Linux order)

def test_build_options_linux_layouts():
    # SYN as Linux sends it: MSS, SACK_PERM+TS, NOP, WS
    assert build_options(mss=1460, sack_permitted=True, ts=(1, 0), wscale=7) == bytes.fromhex(
        "020405b4" "0402080a" "00000001" "00000000" "01030307")
    # without SACK: MSS, NOP,NOP,TS, NOP,WS
    assert build_options(mss=1460, ts=(1, 0), wscale=7) == bytes.fromhex(
        "020405b4" "0101080a" "00000001" "00000000" "01030307")
    # without TS: MSS, NOP,NOP,SACK_PERM, NOP,WS
    assert build_options(mss=536, sack_permitted=True, wscale=0) == bytes.fromhex("02040218" "01010402" "01030300")
    # data segment with SACK: NOP,NOP,TS, NOP,NOP,SACK
    assert build_options(ts=(7, 8), sack_blocks=((100, 200),)) == bytes.fromhex(
        "0101080a" "00000007" "00000008" "0101050a" "00000064" "000000c8")
    assert build_options() == b""


def test_build_options_limits():
    assert len(build_options(ts=(1, 2), sack_blocks=((1, 2),) * max_sack_blocks(timestamps=True))) == 40
    assert len(build_options(sack_blocks=((1, 2),) * max_sack_blocks(timestamps=False))) == 36
    with pytest.raises(ValueError):
        build_options(ts=(1, 2), sack_blocks=((1, 2),) * 4)
    with pytest.raises(ValueError):
        build_options(sack_blocks=((1, 2),) * 5)
    with pytest.raises(ValueError):
        build_options(wscale=15)
    with pytest.raises(ValueError):
        build_options(mss=65536)
    with pytest.raises(ValueError):
        build_options(ts=(1 << 32, 0))


# ---------------------------------------------------------------- option parsing

def test_each_option_kind_parses():
    o = parse_options(bytes.fromhex("020405b4" "0402" "080a0000000100000002" "010303 0e".replace(" ", "")
                                    + "050a000000640000 00c8".replace(" ", "") + "fe04abcd" + "00"))
    assert o.mss == 1460 and o.sack_permitted and (o.ts_val, o.ts_ecr) == (1, 2) and o.wscale == 14
    assert o.sack_blocks == ((100, 200),)
    assert o.unknown == [(0xFE, b"\xab\xcd")]
    assert o.items == [("mss", 1460), ("sackok",), ("ts", 1, 2), ("nop",), ("wscale", 14),
                       ("sack", ((100, 200),)), ("unknown", 0xFE, b"\xab\xcd"), ("eol",)]
    assert [off for off, _ in o.offsets] == [0, 4, 6, 16, 17, 20, 30, 34]


def test_absent_options_defaults():
    o = parse_tcp(seg(), src=A, dst=B).options
    assert isinstance(o, TCPOptions)
    assert (o.mss, o.wscale, o.sack_permitted, o.sack_blocks, o.ts_val, o.ts_ecr, o.unknown, o.items) == \
        (None, None, False, (), None, None, [], [])


def test_window_scale_above_14_is_reported_as_received():
    assert parse_options(b"\x01\x03\x03\x0f").wscale == 15  # RFC 7323 §2.3: the connection clamps, not the parser


def test_sack_with_one_to_four_blocks():
    for n in range(1, 5):
        blocks = tuple((i * 1000, i * 1000 + 500) for i in range(n))
        o = parse_options(encode_options([("sack", blocks)]))
        assert o.sack_blocks == blocks
    assert parse_options(encode_options([("sack", ((0xFFFFFF00, 0x10),))])).sack_blocks == ((0xFFFFFF00, 0x10),)


@pytest.mark.parametrize("length", [2, 3, 9, 11, 17, 42, 255])
def test_sack_of_wrong_length(length):
    body = bytes([5, length]) + bytes(max(0, length - 2))
    body += bytes(-len(body) % 4)
    assert reason_of(parse_options, body) == "bad_sack_length"


def test_sack_of_42_bytes_in_a_real_header_is_rejected():
    # 5 blocks would be 42 bytes; it cannot fit, and a hand-made header saying so must not parse
    body = b"\x05\x2a" + bytes(38)
    assert reason_of(parse_options, body) == "bad_option_length"


@pytest.mark.parametrize("opts,reason", [
    (b"\x02\x00\x00\x00", "bad_option_length"),            # length 0
    (b"\x02\x01\x00\x00", "bad_option_length"),            # length 1
    (b"\xfe\x01\x00\x00", "bad_option_length"),            # unknown kind, length 1
    (b"\x02\x08\x05\xb4", "bad_option_length"),            # runs past the header
    (b"\x01\x01\x01\x02", "bad_option_length"),            # kind with no length byte at the end
    (b"\x02\x03\x05\x00", "bad_option_length"),            # MSS of length 3
    (b"\x02\x05\x05\xb4\x00\x00\x00\x00", "bad_option_length"),  # MSS of length 5
    (b"\x03\x04\x07\x00", "bad_option_length"),            # WS of length 4
    (b"\x03\x02\x00\x00", "bad_option_length"),            # WS of length 2
    (b"\x04\x03\x00\x00", "bad_option_length"),            # SACK-Permitted of length 3
    (b"\x08\x08" + bytes(6), "bad_option_length"),          # TS of length 8
    (b"\x08\x0c" + bytes(10), "bad_option_length"),         # TS of length 12
    (b"\x05\x0b" + bytes(10), "bad_sack_length"),           # SACK 2+9
    (b"\x05\x02\x00\x00", "bad_sack_length"),               # SACK with no block
])
def test_malformed_options(opts, reason):
    assert reason_of(parse_options, opts) == reason
    # and the same inside a whole segment
    assert reason_of(parse_tcp, seg(options=opts), src=A, dst=B) == reason


def test_eol_ends_the_list_and_padding_after_it_is_ignored():
    o = parse_options(b"\x02\x04\x05\xb4\x00\x02\x01\xff")  # garbage after EOL is padding
    assert o.items == [("mss", 1460), ("eol",)] and o.mss == 1460


def test_fast_path_agrees_with_general_parse():
    raw = build_options(ts=(123456789, 987654321))
    fast = parse_options(raw)
    general = parse_options(raw + b"\x00" * 4)  # 16 bytes: takes the general path
    assert fast.items == general.items[:3] and general.items[3] == ("eol",)
    assert (fast.ts_val, fast.ts_ecr) == (general.ts_val, general.ts_ecr) == (123456789, 987654321)
    assert fast.offsets == general.offsets[:3]
    # a 12-byte area that is NOT nop,nop,ts must not be mistaken for it
    with pytest.raises(MalformedPacket):
        parse_options(b"\x01\x01\x08\x0b" + bytes(8))
    o = parse_options(b"\x01\x08\x0a" + bytes(8) + b"\x01")
    assert o.items == [("nop",), ("ts", 0, 0), ("nop",)]


def test_repeated_options_keep_the_last_and_show_all():
    o = parse_options(b"\x02\x04\x00\x01\x02\x04\x00\x02")
    assert o.mss == 2 and o.items == [("mss", 1), ("mss", 2)]


def test_options_equality_and_repr():
    a = parse_options(build_options(ts=(1, 2)))
    b = parse_options(b"\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02")
    assert a == b and "ts" in repr(a)


# ---------------------------------------------------------------- malformed headers

def test_truncated_header():
    raw = seg()
    for n in range(20):
        assert reason_of(parse_tcp, raw[:n], src=A, dst=B) == "truncated"


def test_data_offset_below_five():
    raw = bytearray(seg(payload=bytes(40)))
    for doff in range(5):
        raw[12] = doff << 4
        assert reason_of(parse_tcp, raw, verify=False) == "bad_data_offset"


def test_data_offset_beyond_segment():
    raw = bytearray(seg())
    for doff in range(6, 16):
        raw[12] = doff << 4
        assert reason_of(parse_tcp, raw, verify=False) == "bad_data_offset"
    raw = bytearray(seg(options=build_options(ts=(1, 2))))
    assert reason_of(parse_tcp, raw[:31], verify=False) == "bad_data_offset"


def test_segment_object_has_slots_and_repr():
    s = parse_tcp(seg(flags=SYN | ACK), src=A, dst=B)
    assert isinstance(s, TCPSegment)
    with pytest.raises(AttributeError):
        s.extra = 1
    assert "[S.]" in repr(s)


def test_build_with_payload_already_in_place():
    buf = bytearray(100)
    hlen = 32
    buf[10 + hlen:10 + hlen + 5] = b"inbuf"
    n = build_tcp(buf, 10, src=A, dst=B, src_port=1, dst_port=2, seq=3, ack=4, flags=ACK, window=5,
                  options=build_options(ts=(1, 2)), payload=memoryview(buf)[10 + hlen:10 + hlen + 5])
    s = parse_tcp(memoryview(buf)[10:10 + n], src=A, dst=B)
    assert bytes(s.payload) == b"inbuf" and s.checksum_ok


def test_nop_nop_ts_takes_the_fast_path(monkeypatch):
    def general_walk(*args):
        raise AssertionError("the general option walk ran for NOP,NOP,TS")

    raw = seg(options=build_options(ts=(11, 22)), payload=b"x")
    monkeypatch.setattr(tcp_mod, "_parse_general", general_walk)
    s = parse_tcp(raw, src=A, dst=B)
    assert (s.options.ts_val, s.options.ts_ecr) == (11, 22)
    with pytest.raises(AssertionError):
        parse_tcp(seg(options=build_options(mss=1460)), src=A, dst=B)


def test_shared_option_objects_are_read_only():
    empty = parse_tcp(seg(), src=A, dst=B).options
    fast = parse_tcp(seg(options=build_options(ts=(1, 2))), src=A, dst=B).options
    for o in (empty, fast):
        with pytest.raises(AttributeError):
            o.mss = 1460
        o.items.append(("nop",))  # a fresh list each time: nothing shared is changed
        o.unknown.append((99, b""))
        assert ("nop",) not in o.items[3:] and o.unknown == []
    assert parse_tcp(seg(), src=A, dst=B).options.items == []
    assert fast.items == [("nop",), ("nop",), ("ts", 1, 2)] and fast.has_timestamps and not empty.has_timestamps
