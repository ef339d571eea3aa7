"""pcapng input: section header, interface description, enhanced/simple packet blocks, errors."""
from __future__ import annotations

import io

import pytest

from netstack.capture import CaptureError, read_frames
from netstack.capture.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapError
from netstack.capture.pcapng import PcapngReader
from netstack.cli import main

from tests.support import capture_packets as cp
from tests.support.pcapng_build import block, epb, idb, shb, spb

T0 = 1_700_000_000
ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"


def frames(data: bytes):
    return list(read_frames(io.BytesIO(data), name="x.pcapng"))


@pytest.mark.parametrize("order", ["<", ">"])
def test_enhanced_packets_both_byte_orders_microseconds(order):
    pkts = cp.conversation()[:3]
    data = shb(order) + idb(LINKTYPE_RAW, order) + b"".join(
        epb(p, (T0 + i) * 10**6 + 250, order=order) for i, p in enumerate(pkts))
    got = frames(data)
    assert [f.data for f in got] == pkts
    assert [(f.ts_sec, f.ts_nsec, f.ts_digits, f.linktype) for f in got] == \
        [(T0 + i, 250_000, 6, LINKTYPE_RAW) for i in range(3)]
    assert [f.number for f in got] == [1, 2, 3]


def test_tsresol_nanoseconds_power_of_two_and_tsoffset():
    p = cp.conversation()[0]
    data = (shb() + idb(LINKTYPE_RAW, tsresol=9) + idb(LINKTYPE_RAW, tsresol=0x80 | 10, tsoffset=100)
            + epb(p, T0 * 10**9 + 123456789, iface=0) + epb(p, 3 * 1024 + 512, iface=1))
    a, b = frames(data)
    assert (a.ts_sec, a.ts_nsec, a.ts_digits) == (T0, 123456789, 9)
    assert (b.ts_sec, b.ts_nsec) == (103, 500_000_000)              # 2^-10 s ticks, plus if_tsoffset


def test_interfaces_of_different_link_types_and_unknown_blocks_skipped():
    p = cp.conversation()[0]
    data = (shb() + idb(LINKTYPE_ETHERNET) + block(5, b"\0" * 16) + idb(LINKTYPE_RAW)   # 5: interface statistics
            + epb(ETH + p, 1, iface=0) + block(0x0BAD, b"custom") + epb(p, 2, iface=1) + spb(ETH + p))
    got = frames(data)
    assert [(f.linktype, f.data) for f in got] == [(LINKTYPE_ETHERNET, ETH + p), (LINKTYPE_RAW, p),
                                                   (LINKTYPE_ETHERNET, ETH + p)]
    assert got[2].ts_sec == 0                                        # a simple packet block has no time


def test_new_section_forgets_interfaces_and_may_change_byte_order():
    p = cp.conversation()[0]
    data = shb("<") + idb(LINKTYPE_ETHERNET) + epb(ETH + p, 1) + shb(">") + idb(LINKTYPE_RAW, ">") + epb(p, 2, order=">")
    assert [f.linktype for f in frames(data)] == [LINKTYPE_ETHERNET, LINKTYPE_RAW]
    bad = shb() + idb(LINKTYPE_RAW) + shb() + epb(p, 1)
    with pytest.raises(CaptureError, match=r"x.pcapng: packet 1, offset \d+: interface 0 was not described"):
        frames(bad)


def test_snaplen_cut_packet_keeps_its_original_length():
    p = cp.conversation()[3]
    (f,) = frames(shb() + idb(LINKTYPE_RAW) + epb(p[:40], 1, orig_len=len(p)))
    assert f.orig_len == len(p) and len(f.data) == 40


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:-3], r"block 3: block cut short"),
    (lambda d: d[:-4] + b"\x99\0\0\0", r"block 3: trailing block length 153 differs"),
    (lambda d: d[:len(d) - 2], r"block 3: block cut short"),
    (lambda d: d + b"\x06\0\0\0\x05\0\0\0", r"block 4: impossible block length 5"),
    (lambda d: d + b"\x06\0\0", r"block 4: block header cut short"),
    (lambda d: d[:8] + b"\x11\x22\x33\x44" + d[12:], r"offset 0: block 1: bad byte-order magic 11223344"),
])
def test_malformed_files_name_the_block_and_offset(mutate, message):
    p = cp.conversation()[0]
    good = shb() + idb(LINKTYPE_RAW) + epb(p, 1)
    data = mutate(good)
    with pytest.raises(CaptureError, match=message):
        frames(data)


def test_version_and_first_block_checks():
    with pytest.raises(PcapError, match="unsupported pcapng version 2"):
        list(PcapngReader(io.BytesIO(shb(major=2))))
    with pytest.raises(PcapError, match="not a pcapng file"):
        PcapngReader(io.BytesIO(b"\xd4\xc3\xb2\xa1" + bytes(20)))


def test_trace_reads_pcapng_like_the_same_pcap(tmp_path, capsys):
    from netstack.capture.pcap import PcapWriter

    pkts = cp.conversation() + cp.icmp_echo_pair()
    with PcapWriter(tmp_path / "a.pcap") as w:
        for i, p in enumerate(pkts):
            w.write_ns(p, (T0 + i) * 10**9 + 5000)
    (tmp_path / "a.pcapng").write_bytes(shb() + idb(LINKTYPE_RAW) + b"".join(
        epb(p, (T0 + i) * 10**6 + 5) for i, p in enumerate(pkts)))
    assert main(["trace", str(tmp_path / "a.pcap")]) == 0
    want = capsys.readouterr().out
    assert main(["trace", str(tmp_path / "a.pcapng")]) == 0
    got = capsys.readouterr().out
    assert got == want and got.count("\n") == len(pkts)


def _valid() -> bytes:
    pkts = cp.conversation()[:3]
    return (shb() + idb(LINKTYPE_ETHERNET, tsresol=9) + idb(LINKTYPE_RAW) + epb(ETH + pkts[0], 5, iface=0)
            + block(5, b"\0" * 16) + epb(pkts[1], 6, iface=1) + spb(ETH + pkts[2]))


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6), st.integers(0, 420))
def test_mutated_files_fail_with_one_named_error_or_read(mutations, cut):
    """Bad input is part of the API: a corrupt pcapng yields its good packets, then at most a
    CaptureError naming the place; never another exception."""
    data = bytearray(_valid())
    for at, value in mutations:
        if at < len(data):
            data[at] = value
    data = bytes(data[: len(data) - cut % len(data)])
    try:
        for f in frames(data):
            assert isinstance(f.data, bytes) and f.ts_sec >= 0
    except CaptureError as exc:
        assert str(exc).startswith("x.pcapng: ") and "\n" not in str(exc)
