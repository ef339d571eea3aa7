"""netstack.capture.pcap: libpcap reader and writer, and the tcpdump hex-dump reader."""
from __future__ import annotations

import io
import struct

import pytest

from netstack.capture import CaptureError, read_frames
from netstack.capture.hexdump import HexDumpError, format_hex, hexdump_to_pcap, parse_hexdump, parse_timestamp
from netstack.capture.pcap import (LINKTYPE_ETHERNET, LINKTYPE_RAW, MAGIC_NSEC, MAGIC_USEC, PcapError, PcapReader,
                                   PcapWriter, read_pcap)

PKTS = [b"\x45" + bytes(range(i, i + 40)) for i in range(5)]


def _pcap_bytes(records, *, order="<", magic=MAGIC_USEC, linktype=LINKTYPE_RAW, snaplen=65535) -> bytes:
    """A pcap file laid out by hand (independent of PcapWriter): records are (sec, frac, data, orig_len)."""
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for sec, frac, data, orig in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), orig) + data
    return out


def test_round_trip_microseconds():
    buf = io.BytesIO()
    with PcapWriter(buf, linktype=LINKTYPE_RAW) as w:
        for i, p in enumerate(PKTS):
            w.write(p, ts=1_700_000_000 + i + 0.25)
        assert w.count == len(PKTS)
    assert not buf.closed                     # a caller's file is flushed, not closed
    buf.seek(0)
    reader = PcapReader(buf)
    assert reader.linktype == LINKTYPE_RAW and not reader.nanosecond
    recs = list(reader)
    assert [r.data for r in recs] == PKTS
    assert [(r.ts_sec, r.ts_nsec) for r in recs] == [(1_700_000_000 + i, 250_000_000) for i in range(5)]
    assert [r.number for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].offset == 24 and recs[1].offset == 24 + 16 + len(PKTS[0])


def test_round_trip_nanoseconds_exact(tmp_path):
    path = tmp_path / "ns.pcap"
    ts = 1_700_000_000_123_456_789
    with PcapWriter(path, nanosecond=True) as w:
        w.write_ns(PKTS[0], ts)
    assert path.read_bytes()[:4] == struct.pack("<I", MAGIC_NSEC)
    (rec,) = read_pcap(path)
    assert rec.ts_sec * 10**9 + rec.ts_nsec == ts


def test_float_timestamp_rounds_into_next_second():
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(b"x", ts=5.9999999)
    w.flush()
    buf.seek(0)
    (rec,) = read_pcap(buf)
    assert (rec.ts_sec, rec.ts_nsec) == (6, 0)


def test_default_timestamp_is_now(monkeypatch):
    import netstack.capture.pcap as pcap

    monkeypatch.setattr(pcap, "_time_ns", lambda: 1_234_567_890_987_654_321)
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(b"abc")
    w.flush()
    buf.seek(0)
    (rec,) = read_pcap(buf)
    assert (rec.ts_sec, rec.ts_nsec) == (1_234_567_890, 987_654_000)


def test_writer_accepts_memoryview_and_bytearray_and_cuts_at_snaplen():
    buf = io.BytesIO()
    backing = bytearray(b"\x45" * 100)
    with PcapWriter(buf, snaplen=64) as w:
        w.write(memoryview(backing)[10:30], ts=1.0)
        w.write(backing, ts=2.0)
    buf.seek(0)
    a, b = read_pcap(buf)
    assert a.data == bytes(backing[10:30]) and a.orig_len == 20
    assert len(b.data) == 64 and b.orig_len == 100 and b.truncated


def test_close_flushes_file_and_write_after_close_fails(tmp_path):
    path = tmp_path / "c.pcap"
    w = PcapWriter(path)
    w.write(PKTS[0], ts=1.0)
    w.close()
    w.close()                                   # idempotent
    assert len(read_pcap(path)) == 1
    with pytest.raises(ValueError):
        w.write(PKTS[0], ts=2.0)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic,scale", [(MAGIC_USEC, 1000), (MAGIC_NSEC, 1)])
def test_reads_both_byte_orders_and_resolutions(order, magic, scale):
    raw = _pcap_bytes([(10, 500_000 if scale == 1000 else 500_000_000, PKTS[1], len(PKTS[1]))],
                      order=order, magic=magic, linktype=LINKTYPE_ETHERNET)
    reader = PcapReader(io.BytesIO(raw))
    assert reader.linktype == LINKTYPE_ETHERNET
    assert reader.byteorder == order
    (rec,) = list(reader)
    assert rec.data == PKTS[1] and (rec.ts_sec, rec.ts_nsec) == (10, 500_000_000)


def test_linktype_fcs_bits_are_masked_and_dlt_raw_alias():
    raw = _pcap_bytes([], linktype=(1 << 28) | LINKTYPE_ETHERNET)
    assert PcapReader(io.BytesIO(raw)).linktype == LINKTYPE_ETHERNET
    assert PcapReader(io.BytesIO(_pcap_bytes([], linktype=12))).linktype == LINKTYPE_RAW


# -- malformed files: one error naming the packet and offset -------------------------------------------

def test_truncated_record_data_names_packet_and_offset():
    raw = _pcap_bytes([(1, 0, PKTS[0], 41), (2, 0, PKTS[1], 41)])[:-5]
    reader = PcapReader(io.BytesIO(raw))
    it = iter(reader)
    assert next(it).data == PKTS[0]              # the good packet before the damage is still delivered
    with pytest.raises(PcapError) as exc:
        next(it)
    assert exc.value.packet == 2 and exc.value.offset == 24 + 16 + 41
    assert str(exc.value).startswith("packet 2, offset 81: packet data cut short (36 of 41 bytes)")


def test_truncated_record_header():
    raw = _pcap_bytes([(1, 0, PKTS[0], 41)]) + b"\x01\x02\x03"
    with pytest.raises(PcapError, match=r"^packet 2, offset 81: record header cut short \(3 of 16"):
        read_pcap(io.BytesIO(raw))


def test_impossible_caplen_is_corrupt_not_a_huge_read():
    raw = _pcap_bytes([]) + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF)
    with pytest.raises(PcapError, match="packet 1, offset 24: captured length 2147483647"):
        read_pcap(io.BytesIO(raw))


def test_bad_magic_short_header_and_pcapng():
    with pytest.raises(PcapError, match="not a pcap file"):
        PcapReader(io.BytesIO(b"GIF89a" + bytes(30)))
    with pytest.raises(PcapError, match="file header cut short"):
        PcapReader(io.BytesIO(struct.pack("<I", MAGIC_USEC) + b"\x02\x00"))
    with pytest.raises(PcapError, match="pcapng.*PcapngReader"):
        PcapReader(io.BytesIO(b"\x0a\x0d\x0d\x0a" + bytes(40)))


def test_read_frames_names_the_file(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(_pcap_bytes([(1, 0, PKTS[0], 41)])[:-1])
    with pytest.raises(CaptureError) as exc:
        list(read_frames(str(path)))
    msg = str(exc.value)
    assert msg.startswith(f"{path}: packet 1, offset 24: ") and "\n" not in msg


def test_read_frames_from_a_non_seekable_stream():
    class Pipe(io.RawIOBase):               # no peek(), no seek(): like a socket or a pipe
        def __init__(self, data):
            self.data = data

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), len(self.data), 7)
            b[:n], self.data = self.data[:n], self.data[n:]
            return n

    frames = list(read_frames(Pipe(_pcap_bytes([(1, 0, p, len(p)) for p in PKTS])), name="pipe"))
    assert [f.data for f in frames] == PKTS


# -- hex dumps ----------------------------------------------------------------------------------------

def test_hexdump_round_trips_format_hex_with_and_without_ascii():
    data = bytes(range(256))[:77]
    for ascii in (True, False):
        (p,) = parse_hexdump(format_hex(data, ascii=ascii))
        assert p.data == data and p.header is None and p.ts_sec is None and not p.ascii_mismatches


def test_hexdump_tcpdump_x_output_with_headers():
    text = (
        "2024-03-01 12:00:01.000002 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 0, length 0\n"
        "\t0x0000:  4500 0014 0000 4000 4006 0000 0a00 0001\n"
        "\t0x0010:  0a00 0002\n"
        "1709294402.5 IP 10.0.0.2 > 10.0.0.1: ...\n"
        "\t0x0000:  4500 0014 0000 4000 4006 0000 0a00 0002\n"
        "\t0x0010:  0a00 0001\n"
    )
    a, b = parse_hexdump(text)
    assert a.line == 2 and len(a.data) == 20 and a.header.startswith("2024-03-01")
    assert (a.ts_sec, a.ts_nsec, a.ts_digits) == (1709294401, 2000, 6)
    assert b.number == 2 and (b.ts_sec, b.ts_nsec) == (1709294402, 500_000_000)


@pytest.mark.parametrize("header,expected", [
    ("06/09/2005 06:10:46.595221 x", (1118297446, 595221000, 6, True)),
    ("06:10:46.595221 IP ...", (6 * 3600 + 10 * 60 + 46, 595221000, 6, False)),
    ("1118297446.123456789 IP", (1118297446, 123456789, 9, True)),
    ("13/45/2005 06:10:46.5 x", None),
    ("IP 1.2.3.4 > 5.6.7.8", None),
])
def test_header_timestamps(header, expected):
    assert parse_timestamp(header) == expected


@pytest.mark.parametrize("bad,fragment", [
    ("0x0010   c0a8 01c8 zz75 0019", "'zz75' is not a group of hex bytes"),
    ("0x0010   c0a8 01c 8", "'01c' is not a group of hex bytes"),
    ("0x0020   c0a8 01c8", "offset 0x0020 does not follow the previous line (expected 0x0010)"),
    ("0x0010", "offset 0x0010 is followed by no hex bytes"),
])
def test_garbage_hex_line_names_the_line(bad, fragment):
    text = "a header line\n0x0000   4500 0056 85f5 4000 3406 5235 c0a8 0164\n" + bad + "\n"
    with pytest.raises(HexDumpError) as exc:
        list(parse_hexdump(text))
    assert exc.value.line == 3 and str(exc.value) == f"line 3: {fragment}"


def test_hex_line_without_start_is_an_error():
    with pytest.raises(HexDumpError, match="line 2: hex line at offset 0x0010 without a 0x0000 line"):
        list(parse_hexdump("prose\n0x0010  4500\n"))


def test_redacted_bytes_take_the_ascii_column_value():
    text = "0x0000   4d41 494c 3a78 xx78 xxxx        MAIL:xxx<.\n"
    (p,) = parse_hexdump(text)
    assert p.data == b"MAIL:xxx<\x00" and p.redacted == frozenset({6, 8, 9})


def test_hexdump_to_pcap(tmp_path):
    text = "0x0000:  4500 0014 0000 4000 4006 0000 0a00 0001\n0x0010:  0a00 0002\n"
    out = tmp_path / "h.pcap"
    assert hexdump_to_pcap(text, out) == 1
    (rec,) = read_pcap(out)
    assert rec.linktype == LINKTYPE_RAW and rec.data == bytes.fromhex("45000014000040004006000" "00a0000010a000002")
