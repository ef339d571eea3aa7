"""Property tests for the wire parsers: hostile input and build/parse round trips.

Hostile input (random bytes, and valid packets with bits flipped, cut short or
with length fields changed) must give exactly one of two outcomes: a parsed
object, or :class:`MalformedPacket`.  Whenever a parse succeeds, re-encoding the
parsed fields must give back the input bytes, so no field is silently wrong.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from netstack.wire.errors import MalformedPacket
from netstack.wire.icmp import dest_unreachable, parse_icmp, quoted_datagram
from netstack.wire.ipv4 import build_ipv4_header, ipv4_packet, parse_ipv4
from netstack.wire.tcp import build_options, build_tcp, parse_options, parse_tcp, tcp_segment
from netstack.wire.tcp_options import encode_options

from tests.support.wire_vectors import SEED_HELO, ref_checksum, ref_tcp_checksum

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND = settings(max_examples=250, deadline=None)

A, B = 0xC6120001, 0xC6120002

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


# ---------------------------------------------------------------- strategies

def option_items():
    block = st.tuples(u32, u32)
    item = st.one_of(
        st.just(("nop",)),
        st.builds(lambda v: ("mss", v), u16),
        st.builds(lambda v: ("wscale", v), u8),
        st.just(("sackok",)),
        st.builds(lambda b: ("sack", tuple(b)), st.lists(block, min_size=1, max_size=4)),
        st.builds(lambda v, e: ("ts", v, e), u32, u32),
        st.builds(lambda k, d: ("unknown", k, d),
                  st.integers(0, 255).filter(lambda k: k not in (0, 1, 2, 3, 4, 5, 8)), st.binary(max_size=8)),
    )
    items = st.lists(item, max_size=8).filter(_fits)
    return st.tuples(items, st.booleans())  # (items, end with an explicit EOL)


def _fits(items) -> bool:
    try:
        return len(encode_options(items)) <= 40
    except ValueError:
        return False


@st.composite
def valid_tcp(draw):
    items, eol = draw(option_items())
    if eol and _fits(items + [("eol",)]):
        items = items + [("eol",)]
    kw = dict(src=draw(u32), dst=draw(u32), src_port=draw(u16), dst_port=draw(u16), seq=draw(u32), ack=draw(u32),
              flags=draw(st.integers(0, 0x1FF)), window=draw(u16), urgent=draw(u16),
              options=encode_options(items), payload=draw(st.binary(max_size=64)))
    return kw, items


@st.composite
def valid_ipv4(draw):
    opts = draw(st.binary(max_size=40))
    kw = dict(src=draw(u32), dst=draw(u32), protocol=draw(u8), ttl=draw(u8), ident=draw(u16),
              df=draw(st.booleans()), mf=draw(st.booleans()), frag_offset=8 * draw(st.integers(0, 0x1FFF)),
              tos=draw(u8), options=opts)
    payload = draw(st.binary(max_size=64))
    return kw, payload


@st.composite
def mutated(draw, packet):
    """Bit flips, truncation, extension and 16-bit field overwrites of a valid packet."""
    data = bytearray(packet)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "word", "byte"]))
        if op == "flip" and data:
            bit = draw(st.integers(0, len(data) * 8 - 1))
            data[bit // 8] ^= 0x80 >> (bit % 8)
        elif op == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif op == "word" and len(data) >= 2:
            pos = draw(st.integers(0, len(data) - 2))
            data[pos:pos + 2] = draw(st.sampled_from([0, 1, 4, 19, 20, 21, 0x7FFF, 0xFFFF]) | u16).to_bytes(2, "big")
        elif op == "byte" and data:
            pos = draw(st.integers(0, min(len(data), 40) - 1))
            data[pos] = draw(st.sampled_from([0, 1, 2, 0x45, 0x4F, 0x50, 0xF0, 0xFF]) | u8)
    return bytes(data)


# ---------------------------------------------------------------- "parsed, or MalformedPacket"

def _reencode_tcp(s, raw) -> None:
    """A parsed segment's fields must reproduce its input exactly."""
    hdr = struct.pack("!HHIIHHHH", s.src_port, s.dst_port, s.seq, s.ack,
                      (s.data_offset << 12) | (raw[12] & 0x0E) << 8 | s.flags, s.window, s.checksum, s.urgent)
    assert hdr == bytes(raw[:20])
    assert s.header_len == 20 + len(s.options_raw) and bytes(s.payload) == bytes(raw[s.header_len:])
    items = s.options.items
    end = sum(length for _, length in s.options.offsets)
    assert encode_options(items)[:end] == bytes(s.options_raw[:end])
    if ("eol",) not in items:
        assert end == len(s.options_raw)


def _check_ipv4(raw) -> None:
    try:
        p = parse_ipv4(raw, verify=False)
    except MalformedPacket as e:
        assert e.layer == "ipv4" and e.reason.islower()
        return
    hdr = struct.pack("!BBHHHBBHII", (p.version << 4) | p.ihl, p.tos, p.total_length, p.ident,
                      (p.flags << 13) | (p.frag_offset >> 3), p.ttl, p.protocol, p.checksum, p.src, p.dst)
    assert hdr == bytes(raw[:20])
    assert bytes(p.options) == bytes(raw[20:p.header_len])
    assert bytes(p.payload) == bytes(raw[p.header_len:p.total_length])
    assert p.checksum_ok == (ref_checksum(raw[:p.header_len]) == 0)
    try:
        parse_ipv4(raw)
        assert p.checksum_ok
    except MalformedPacket as e:
        assert e.reason == "bad_checksum" and not p.checksum_ok


def _check_tcp(raw, src=A, dst=B) -> None:
    try:
        s = parse_tcp(raw, src=src, dst=dst, verify=False)
    except MalformedPacket as e:
        assert e.layer == "tcp" and e.reason in {"truncated", "bad_data_offset", "bad_option_length",
                                                 "bad_sack_length"}
        return
    _reencode_tcp(s, raw)
    assert s.checksum_ok == (ref_tcp_checksum(src, dst, raw) == 0)


def _check_icmp(raw) -> None:
    try:
        m = parse_icmp(raw, verify=False)
    except MalformedPacket as e:
        assert e.layer == "icmp" and e.reason == "truncated"
        return
    assert struct.pack("!BBHI", m.type, m.code, m.checksum, m.rest) == bytes(raw[:8])
    assert m.checksum_ok == (ref_checksum(raw) == 0)
    try:
        q = quoted_datagram(m)
        assert bytes(q.header) == bytes(raw[8:8 + q.header_len])
    except MalformedPacket as e:
        assert e.layer == "icmp" and e.reason == "bad_quoted_datagram"


@FUZZ
@given(st.binary(max_size=120))
def test_random_bytes_ipv4(raw):
    _check_ipv4(raw)


@FUZZ
@given(st.binary(max_size=120))
def test_random_bytes_tcp(raw):
    _check_tcp(raw)


@FUZZ
@given(st.binary(max_size=40))
def test_random_bytes_tcp_options(raw):
    try:
        o = parse_options(raw)
    except MalformedPacket as e:
        assert e.reason in ("bad_option_length", "bad_sack_length")
        return
    end = sum(length for _, length in o.offsets)
    assert encode_options(o.items)[:end] == raw[:end]


@FUZZ
@given(st.binary(max_size=80))
def test_random_bytes_icmp(raw):
    _check_icmp(raw)


@FUZZ
@given(st.data())
def test_mutated_valid_ipv4(data):
    kw, payload = data.draw(valid_ipv4())
    raw = data.draw(mutated(ipv4_packet(payload=payload, **kw)))
    _check_ipv4(raw)


@FUZZ
@given(st.data())
def test_mutated_valid_tcp(data):
    kw, _ = data.draw(valid_tcp())
    raw = data.draw(mutated(tcp_segment(**kw)))
    _check_tcp(raw, kw["src"], kw["dst"])


@FUZZ
@given(st.data())
def test_mutated_seed_packet(data):
    raw = data.draw(mutated(SEED_HELO))
    _check_ipv4(raw)
    try:
        ip = parse_ipv4(raw, verify=False)
    except MalformedPacket:
        return
    _check_tcp(ip.payload, ip.src, ip.dst)


@FUZZ
@given(st.data())
def test_mutated_icmp_error(data):
    orig = tcp_segment(src=A, dst=B, src_port=1, dst_port=2, seq=3, ack=4, flags=2, window=5, payload=b"x" * 20)
    raw = data.draw(mutated(dest_unreachable(3, ipv4_packet(src=A, dst=B, protocol=6, payload=orig))))
    _check_icmp(raw)


def test_mutation_finds_both_outcomes():
    """Guard against a vacuous fuzz: mutated packets both parse and fail, under several reasons."""
    reasons, parsed = set(), 0

    @settings(max_examples=300, deadline=None, database=None)
    @given(mutated(SEED_HELO))
    def run(raw):
        nonlocal parsed
        try:
            ip = parse_ipv4(raw, verify=False)
            parse_tcp(ip.payload, verify=False)
            parsed += 1
        except MalformedPacket as e:
            reasons.add(e.reason)

    run()
    assert parsed > 0 and len(reasons) >= 3


# ---------------------------------------------------------------- round trips

@ROUND
@given(valid_tcp(), st.integers(0, 9))
def test_tcp_build_parse_round_trip(case, offset):
    kw, items = case
    buf = bytearray(offset + 20 + 40 + len(kw["payload"]))
    n = build_tcp(buf, offset, **kw)
    s = parse_tcp(memoryview(buf)[offset:offset + n], src=kw["src"], dst=kw["dst"])
    assert s.checksum_ok is True
    assert (s.src_port, s.dst_port, s.seq, s.ack, s.flags, s.window, s.urgent) == \
        (kw["src_port"], kw["dst_port"], kw["seq"], kw["ack"], kw["flags"], kw["window"], kw["urgent"])
    assert bytes(s.payload) == kw["payload"] and s.data_offset == 5 + len(kw["options"]) // 4
    upto = items[:items.index(("eol",))] if ("eol",) in items else items
    # encode_options pads with zero bytes (EOL): the parser reports the first EOL and stops there
    ends_with_eol = ("eol",) in items or sum(map(_item_len, items)) % 4 != 0
    assert s.options.items == upto + ([("eol",)] if ends_with_eol else [])
    last = {it[0]: it for it in upto}
    o = s.options
    assert o.mss == (last["mss"][1] if "mss" in last else None)
    assert o.wscale == (last["wscale"][1] if "wscale" in last else None)
    assert o.sack_permitted == ("sackok" in last)
    assert o.sack_blocks == (last["sack"][1] if "sack" in last else ())
    assert (o.ts_val, o.ts_ecr) == ((last["ts"][1], last["ts"][2]) if "ts" in last else (None, None))
    assert o.unknown == [(it[1], it[2]) for it in upto if it[0] == "unknown"]


def _item_len(item) -> int:
    fixed = {"eol": 1, "nop": 1, "mss": 4, "wscale": 3, "sackok": 2, "ts": 10}
    if item[0] == "sack":
        return 2 + 8 * len(item[1])
    if item[0] == "unknown":
        return 2 + len(item[2])
    return fixed[item[0]]

@ROUND
@given(mss=st.none() | u16, wscale=st.none() | st.integers(0, 14), sackok=st.booleans(), ts=st.none() | st.tuples(u32, u32),
       blocks=st.lists(st.tuples(u32, u32), max_size=3))
def test_build_options_round_trip(mss, wscale, sackok, ts, blocks):
    size = (4 if mss is not None else 0) + (12 if ts else 4 if sackok else 0) + (4 if wscale is not None else 0) \
        + (4 + 8 * len(blocks) if blocks else 0)
    if size > 40:
        with pytest.raises(ValueError):
            build_options(mss=mss, wscale=wscale, sack_permitted=sackok, ts=ts, sack_blocks=tuple(blocks))
        return
    raw = build_options(mss=mss, wscale=wscale, sack_permitted=sackok, ts=ts, sack_blocks=tuple(blocks))
    assert len(raw) == size
    assert len(raw) % 4 == 0 and len(raw) <= 40
    o = parse_options(raw)
    assert (o.mss, o.wscale, o.sack_permitted, o.sack_blocks) == (mss, wscale, sackok, tuple(blocks))
    assert (o.ts_val, o.ts_ecr) == (ts if ts else (None, None))
    assert ("eol",) not in o.items  # Linux layouts need no padding


@ROUND
@given(valid_ipv4(), st.integers(0, 9))
def test_ipv4_build_parse_round_trip(case, offset):
    kw, payload = case
    buf = bytearray(offset + 60 + len(payload) + 3)
    hlen = build_ipv4_header(buf, offset, payload_len=len(payload), **kw)
    buf[offset + hlen:offset + hlen + len(payload)] = payload
    p = parse_ipv4(memoryview(buf)[offset:])
    assert (p.src, p.dst, p.protocol, p.ttl, p.ident, p.df, p.mf, p.frag_offset, p.tos) == \
        (kw["src"], kw["dst"], kw["protocol"], kw["ttl"], kw["ident"], kw["df"], kw["mf"], kw["frag_offset"], kw["tos"])
    opts = kw["options"]
    assert bytes(p.options) == opts + bytes(-len(opts) % 4)
    assert bytes(p.payload) == payload and p.total_length == hlen + len(payload) and p.checksum_ok
    assert ref_checksum(buf[offset:offset + hlen]) == 0
