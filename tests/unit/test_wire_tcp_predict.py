"""Header prediction's read of a segment (netstack.wire.tcp.predict_ts_segment): the pure-Python
twin and the native entry (netstack._native_entry) give identical results on any bytes, and both
agree with the full parser on what they accept (RFC 9293 §3.1 layout, RFC 7323 Appendix A)."""
from __future__ import annotations

import array
import struct

import pytest
from hypothesis import given, settings, strategies as st

from netstack import checksum
from netstack.wire import tcp as tcp_mod
from netstack.wire.tcp import ACK, CWR, ECE, FIN, NS, PSH, RST, SYN, URG, parse_tcp, tcp_segment
from netstack.wire.tcp_options import build_options

u32 = st.integers(0, 2**32 - 1)

IMPLS = [tcp_mod._predict_ts_segment]
if checksum.native_entry() is not None:
    IMPLS.append(checksum.native_entry().predict_ts_segment)


def _segment(draw_flags, options, payload, src, dst, sport, dport, seq, ack, window):
    return bytearray(tcp_segment(src=src, dst=dst, src_port=sport, dst_port=dport, seq=seq, ack=ack,
                                 flags=draw_flags, window=window, options=options, payload=payload))


OPTIONS = [build_options(ts=(7, 9)), build_options(ts=(2**32 - 1, 0)), b"",
           build_options(ts=(5, 6), sack_blocks=[(1, 2)]), build_options(mss=1460), b"\x01\x01\x08\x0a" + bytes(6),
           b"\x01\x01\x08\x0b" + bytes(8)]
FLAGS = [ACK, ACK | PSH, ACK | FIN, ACK | URG, ACK | ECE, ACK | CWR, ACK | NS, SYN | ACK, RST | ACK, 0, PSH]


@settings(max_examples=400, deadline=None)
@given(src=u32, dst=u32, sport=st.integers(0, 65535), dport=st.integers(0, 65535), seq=u32, ack=u32,
       window=st.integers(0, 65535), flags=st.sampled_from(FLAGS), options=st.sampled_from(OPTIONS),
       payload=st.binary(max_size=2000), flip=st.one_of(st.none(), st.integers(0, 4000)), cut=st.integers(0, 40),
       verify=st.booleans())
def test_the_twins_agree_and_agree_with_the_parser(src, dst, sport, dport, seq, ack, window, flags, options,
                                                   payload, flip, cut, verify):
    seg = _segment(flags, options, payload, src, dst, sport, dport, seq, ack, window)
    if flip is not None:
        seg[flip % len(seg)] ^= 1 << (flip % 8)
    if cut:
        seg = seg[:max(0, len(seg) - cut)] if cut % 2 else seg[:cut]
    view = memoryview(bytes(8) + seg)[8:]          # a view into a larger buffer, as the IP layer passes
    results = [impl(src, dst, view, verify) for impl in IMPLS] + [impl(src, dst, bytes(seg), verify)
                                                                for impl in IMPLS]
    assert all(r == results[0] for r in results), results
    got = results[0]
    try:
        parsed = parse_tcp(bytes(seg), src=src, dst=dst, verify=False)
    except Exception:
        parsed = None
    predicted_layout = (parsed is not None and parsed.data_offset == 8 and parsed.flags in (ACK, ACK | PSH)
                        and bytes(seg[20:24]) == b"\x01\x01\x08\x0a")
    if not predicted_layout:
        assert got is None
    elif verify and not parsed.checksum_ok:
        assert got is False
    else:
        assert got == (parsed.src_port, parsed.dst_port, parsed.seq, parsed.ack, parsed.window,
                       struct.unpack_from("!I", seg, 24)[0], struct.unpack_from("!I", seg, 28)[0])


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "pure" if f is tcp_mod._predict_ts_segment else "native")
def test_the_twins_refuse_alike(impl):
    good = tcp_segment(src=1, dst=2, src_port=3, dst_port=4, seq=5, ack=6, flags=ACK, window=7,
                       options=build_options(ts=(8, 9)), payload=b"x")
    assert impl(1, 2, good, True) == (3, 4, 5, 6, 7, 8, 9)
    assert impl(1, 3, good, True) is False                   # the pseudo-header is covered
    assert impl(1, 3, good, False) == (3, 4, 5, 6, 7, 8, 9)  # not verified: trusted
    with pytest.raises(OverflowError):
        impl(2**32, 2, good, True)
    assert impl(2**32, 2, good[:20], True) is None           # not the layout: the addresses are not read
    with pytest.raises(TypeError):
        impl(1, 2, "text", True)


def test_the_native_entry_is_what_header_prediction_calls():
    entry = checksum.native_entry()
    if entry is None:
        pytest.skip(checksum.describe())
    import netstack.tcp.layer as layer

    assert tcp_mod.predict_ts_segment is entry.predict_ts_segment is layer._predict


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: "pure" if f is tcp_mod._predict_ts_segment else "native")
def test_buffers_of_wider_items_are_read_as_their_bytes(impl):
    """A segment in a memoryview cast to 'H' or an array('I') is read and verified as its bytes
    by both twins; not contiguous: BufferError from both."""
    good = tcp_segment(src=1, dst=2, src_port=3, dst_port=4, seq=5, ack=6, flags=ACK, window=7,
                       options=build_options(ts=(8, 9)), payload=b"wxyz")            # 36 bytes
    bad = bytearray(good)
    bad[-1] ^= 1
    for make in (lambda b: memoryview(bytes(b)).cast("H"), lambda b: array.array("I", bytes(b))):
        assert impl(1, 2, make(good), True) == (3, 4, 5, 6, 7, 8, 9)
        assert impl(1, 2, make(bad), True) is False
        assert impl(1, 3, make(good), True) is False
    with pytest.raises(BufferError):
        impl(1, 2, memoryview(good * 2)[::2], True)
