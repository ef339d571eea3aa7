"""The IPv4 layer's fast-path read (netstack.wire.ipv4.read_plain_ipv4): the pure-Python twin and
the native entry (netstack._native_entry) give identical results on any bytes, and accept exactly
what the full parser accepts as a plain, whole, valid datagram for our address (RFC 791 §3.1,
RFC 1122 §3.2.1, RFC 1071)."""
from __future__ import annotations

import array

import pytest
from hypothesis import given, settings, strategies as st

from netstack import checksum
from netstack.wire import ipv4 as ipv4_mod
from netstack.wire.ipv4 import ipv4_packet, parse_ipv4

US = 0xC6120002
u32 = st.integers(0, 2**32 - 1)

IMPLS = [ipv4_mod._read_plain_ipv4]
if checksum.native_entry() is not None:
    IMPLS.append(checksum.native_entry().read_plain_ipv4)


@settings(max_examples=500, deadline=None)
@given(src=u32, dst=st.sampled_from([US, US + 1, 0]), proto=st.integers(0, 255), payload=st.binary(max_size=200),
       options=st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00"]), mf=st.booleans(),
       frag_offset=st.sampled_from([0, 8, 1480]), df=st.booleans(), tos=st.integers(0, 255),
       flip=st.one_of(st.none(), st.integers(0, 2000)), cut=st.integers(-8, 8), pad=st.integers(0, 6))
def test_the_twins_agree_and_agree_with_the_parser(src, dst, proto, payload, options, mf, frag_offset, df, tos,
                                                   flip, cut, pad):
    pkt = bytearray(ipv4_packet(src=src, dst=dst, protocol=proto, payload=payload, options=options, mf=mf,
                                frag_offset=frag_offset, df=df, tos=tos))
    if flip is not None:
        pkt[flip % len(pkt)] ^= 1 << (flip % 8)
    if cut < 0:
        pkt = pkt[:max(0, len(pkt) + cut)]
    pkt += bytes(pad)                               # link padding beyond the total length
    view = memoryview(bytes(5) + pkt)[5:]
    results = [impl(view, US) for impl in IMPLS] + [impl(bytes(pkt), US) for impl in IMPLS]
    assert all(r == results[0] for r in results), results
    try:
        p = parse_ipv4(bytes(pkt))
    except Exception:
        p = None
    plain = p is not None and p.ihl == 5 and p.dst == US and not p.is_fragment
    assert results[0] == ((p.protocol, p.src, p.total_length) if plain else None)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "pure" if f is ipv4_mod._read_plain_ipv4 else "native")
def test_the_twins_on_the_edges(impl):
    good = ipv4_packet(src=0x0A000001, dst=US, protocol=6, payload=b"abc")
    assert impl(good, US) == (6, 0x0A000001, 23)
    assert impl(good, US + 1) is None                      # not for that address
    assert impl(good[:19], US) is None                     # truncated header
    assert impl(good[:22], US) is None                     # total length beyond the bytes
    assert impl(good, -1) is None and impl(good, 2**40) is None
    with pytest.raises(TypeError):
        impl("text", US)


def test_the_native_entry_is_what_the_ip_layer_calls():
    entry = checksum.native_entry()
    if entry is None:
        pytest.skip(checksum.describe())
    assert ipv4_mod.read_plain_ipv4 is entry.read_plain_ipv4


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "pure" if f is ipv4_mod._read_plain_ipv4 else "native")
def test_buffers_of_wider_items_are_read_as_their_bytes(impl):
    """A datagram in a memoryview cast to 'H' or an array('I') is read as its bytes, by both
    twins (the lengths are in bytes, not items); not contiguous: BufferError from both."""
    good = ipv4_packet(src=0x0A000001, dst=US, protocol=6, payload=b"abcdefghijklmnopqrst")   # 40 bytes
    for buf in (memoryview(good).cast("H"), array.array("I", good)):
        assert impl(buf, US) == (6, 0x0A000001, 40)
        assert impl(buf, US + 1) is None
    with pytest.raises(BufferError):
        impl(memoryview(good * 2)[::2], US)
