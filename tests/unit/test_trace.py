"""``netstack trace``: tcpdump-style lines, checksum verdicts, --explain, bad input."""
from __future__ import annotations

import io
import re
import struct

import pytest

from netstack.cli import main
from netstack.capture.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter, read_pcap
from netstack.capture.hexdump import format_hex, parse_hexdump
from netstack.wire.icmp import PORT, dest_unreachable
from netstack.wire.ipv4 import PROTO_TCP, ip2int, ipv4_packet
from netstack.wire.tcp import ACK, PSH, RST, SYN

from tests.support import capture_packets as cp
from tests.support.wire_vectors import ref_checksum, ref_tcp_checksum

T0 = 1_700_000_000          # 2023-11-14 22:13:20 UTC


def write_pcap(path, packets, *, linktype=LINKTYPE_RAW, wrap=lambda p: p, **kw):
    with PcapWriter(path, linktype=linktype, **kw) as w:
        for i, p in enumerate(packets):
            w.write(wrap(p), ts=T0 + i / 1000)
    return path


def trace(capsys, *argv):
    status = main(["trace", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def tcp_cksum(pkt: bytes) -> str:
    ihl = (pkt[0] & 15) * 4
    return f"cksum 0x{struct.unpack_from('!H', pkt, ihl + 16)[0]:04x} (correct)"


def ip_cksum(pkt: bytes) -> str:
    return f"cksum 0x{struct.unpack_from('!H', pkt, 10)[0]:04x} (correct)"


def test_handshake_data_fin_lines_relative(tmp_path, capsys):
    pkts = cp.conversation()
    status, lines, err = trace(capsys, write_pcap(tmp_path / "c.pcap", pkts))
    assert status == 0 and err == "" and len(lines) == len(pkts)
    C, S = f"{cp.CLIENT}.{cp.CPORT}", f"{cp.SERVER}.{cp.SPORT}"
    ipc = lambda i: f"IP (ttl 64, id 0, flags [DF], {ip_cksum(pkts[i])})"
    assert lines[0] == (f"22:13:20.000000 {ipc(0)} {C} > {S}: Flags [S], {tcp_cksum(pkts[0])}, seq 1000000, "
                        "win 64240, options [mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7], length 0")
    assert lines[1] == (f"22:13:20.001000 {ipc(1)} {S} > {C}: Flags [S.], {tcp_cksum(pkts[1])}, seq 3000000000, "
                        "ack 1000001, win 65160, options [mss 1460,sackOK,TS val 500 ecr 100,nop,wscale 7], length 0")
    assert lines[2].endswith(f"{C} > {S}: Flags [.], {tcp_cksum(pkts[2])}, ack 1, win 502, "
                             "options [nop,nop,TS val 101 ecr 500], length 0")
    assert lines[3].endswith(f"{S} > {C}: Flags [P.], {tcp_cksum(pkts[3])}, seq 1:23, ack 1, win 510, "
                             "options [nop,nop,TS val 501 ecr 101], length 22")
    assert lines[4].endswith(f"Flags [P.], {tcp_cksum(pkts[4])}, seq 1:22, ack 23, win 502, "
                             "options [nop,nop,TS val 102 ecr 501], length 21")
    assert lines[6].endswith(f"{C} > {S}: Flags [F.], {tcp_cksum(pkts[6])}, seq 22, ack 23, win 502, "
                             "options [nop,nop,TS val 103 ecr 502], length 0")
    assert lines[8].endswith(f"Flags [.], {tcp_cksum(pkts[8])}, ack 24, win 502, "
                             "options [nop,nop,TS val 104 ecr 503], length 0")


def test_absolute_sequence_numbers_with_S(tmp_path, capsys):
    pkts = cp.conversation()
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "c.pcap", pkts), "-S")
    assert ", seq 3000000001:3000000023, ack 1000001, " in lines[3]
    assert ", ack 3000000001, " in lines[2]


def test_mid_stream_capture_first_packet_absolute_then_relative(tmp_path, capsys):
    pkts = cp.conversation()[3:6]               # greeting, HELO, ACK: no SYN seen
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "m.pcap", pkts))
    assert ", seq 3000000001:3000000023, ack 1000001, " in lines[0]
    # one entry serves both directions (tcpdump): the first packet fixed both bases
    assert ", seq 1:22, ack 22, " in lines[1]
    assert ", ack 22, " in lines[2]


def test_relative_numbers_wrap_modulo_2_32(tmp_path, capsys):
    isn = 0xFFFFFFF0
    pkts = [cp.c2s(isn, 0, SYN), cp.s2c(5, isn + 1, SYN | ACK),
            cp.c2s(isn + 1, 6, PSH | ACK, payload=b"x" * 40)]
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "w.pcap", pkts))
    assert ", seq 1:41, ack 1, " in lines[2]
    _, lines, _ = trace(capsys, tmp_path / "w.pcap", "-S")
    assert f", seq {isn + 1}:{(isn + 41) % 2**32}, ack 6, " in lines[2]


def test_rst_line(tmp_path, capsys):
    pkts = [cp.c2s(cp.C_ISN, 0, SYN), cp.s2c(0, cp.C_ISN + 1, RST | ACK, window=0), cp.c2s(5, 0, RST, window=0)]
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "r.pcap", pkts))
    assert lines[1].endswith(f"Flags [R.], {tcp_cksum(pkts[1])}, seq 0, ack {cp.C_ISN + 1}, win 0, length 0")
    assert lines[2].endswith(f"Flags [R], {tcp_cksum(pkts[2])}, seq 5, win 0, length 0")


def test_sack_and_unknown_options(tmp_path, capsys):
    from netstack.wire.tcp_options import encode_options

    opts = encode_options([("nop",), ("nop",), ("sack", ((cp.S_ISN + 100, cp.S_ISN + 200),)), ("unknown", 99, b"\xab\xcd")])
    pkts = [cp.s2c(cp.S_ISN, cp.C_ISN + 1, SYN | ACK), cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, ACK, options=opts)]
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "s.pcap", pkts))
    assert "options [nop,nop,sack 1 {100:200},unknown-99 abcd], length 0" in lines[1]
    _, lines, _ = trace(capsys, tmp_path / "s.pcap", "-S")
    assert f"sack 1 {{{cp.S_ISN + 100}:{cp.S_ISN + 200}}}" in lines[1]


def test_wrong_checksums_show_found_and_expected(tmp_path, capsys):
    good = cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, PSH | ACK, payload=b"HELO x\r\n")
    bad = bytearray(good)
    bad[-3] ^= 0x20                             # payload byte: TCP checksum now wrong
    bad[8] = 17                                 # TTL: IP header checksum now wrong
    seg = bytes(bad[20:])
    zeroed = seg[:16] + b"\0\0" + seg[18:]
    want_tcp = ref_tcp_checksum(ip2int(cp.CLIENT), ip2int(cp.SERVER), zeroed)
    want_ip = ref_checksum(bytes(bad[:10]) + b"\0\0" + bytes(bad[12:20]))
    found_tcp = struct.unpack_from("!H", bad, 36)[0]
    found_ip = struct.unpack_from("!H", bad, 10)[0]
    assert found_tcp != want_tcp and found_ip != want_ip
    _, (line,), _ = trace(capsys, write_pcap(tmp_path / "b.pcap", [bytes(bad)]))
    assert f"IP (ttl 17, id 0, flags [DF], cksum 0x{found_ip:04x} (incorrect -> 0x{want_ip:04x})) " in line
    assert f"Flags [P.], cksum 0x{found_tcp:04x} (incorrect -> 0x{want_tcp:04x}), seq " in line


def test_offload_partial_checksum_is_diagnosed(tmp_path, capsys):
    pkt = bytearray(cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, ACK))
    seg_len = len(pkt) - 20
    pseudo = struct.pack("!IIBBH", ip2int(cp.CLIENT), ip2int(cp.SERVER), 0, PROTO_TCP, seg_len)
    partial = ~ref_checksum(pseudo) & 0xFFFF         # what Linux leaves for the NIC to finish
    struct.pack_into("!H", pkt, 36, partial)
    status, lines, _ = trace(capsys, write_pcap(tmp_path / "o.pcap", [bytes(pkt)]), "-V")
    text = "\n".join(lines)
    assert status == 0 and f"cksum 0x{partial:04x} (incorrect -> " in lines[0]
    assert "holds only the pseudo-header sum" in text and "checksum offload" in text


def test_udp_icmp_other_protocols(tmp_path, capsys):
    udp = cp.udp_packet(b"hello, udp\n", sport=40000, dport=9)
    udp0 = cp.udp_packet(b"no sum", sport=40000, dport=9, checksum=False)
    unreach = ipv4_packet(src=cp.SERVER, dst=cp.CLIENT, protocol=1, payload=dest_unreachable(PORT, udp))
    gre = ipv4_packet(src=cp.CLIENT, dst=cp.SERVER, protocol=47, payload=bytes(24))
    pkts = [*cp.icmp_echo_pair(), udp, udp0, unreach, gre]
    status, lines, _ = trace(capsys, write_pcap(tmp_path / "u.pcap", pkts))
    assert status == 0
    icmp_ck = lambda p: f"cksum 0x{struct.unpack_from('!H', p, 22)[0]:04x} (correct)"
    assert lines[0].endswith(f"{cp.CLIENT} > {cp.SERVER}: ICMP echo request, id 1, seq 1, length 64, {icmp_ck(pkts[0])}")
    assert lines[1].endswith(f"{cp.SERVER} > {cp.CLIENT}: ICMP echo reply, id 1, seq 1, length 64, {icmp_ck(pkts[1])}")
    udp_ck = struct.unpack_from("!H", udp, 26)[0]
    assert lines[2].endswith(f"{cp.CLIENT}.40000 > {cp.SERVER}.9: UDP, cksum 0x{udp_ck:04x} (correct), length 11")
    assert lines[3].endswith("UDP, cksum 0x0000 (none), length 6")
    assert f"{cp.SERVER} > {cp.CLIENT}: ICMP {cp.SERVER} udp port 9 unreachable, length 36, " in lines[4]
    assert lines[5].endswith(f"{cp.CLIENT} > {cp.SERVER}: ip-proto-47 24")


def test_fragments(tmp_path, capsys):
    seg = bytes(cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, PSH | ACK, payload=b"y" * 1000)[20:])
    first = ipv4_packet(src=cp.CLIENT, dst=cp.SERVER, protocol=PROTO_TCP, payload=seg[:512], ident=99, mf=True)
    rest = ipv4_packet(src=cp.CLIENT, dst=cp.SERVER, protocol=PROTO_TCP, payload=seg[512:], ident=99, frag_offset=512)
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "f.pcap", [first, rest]))
    assert f"IP (ttl 64, id 99, flags [+], {ip_cksum(first)}) " in lines[0]
    assert "cksum 0x" in lines[0] and "(unverified: fragment), seq " in lines[0]
    assert lines[1].endswith(f"IP (ttl 64, id 99, offset 512, {ip_cksum(rest)}) {cp.CLIENT} > {cp.SERVER}: "
                             f"ip-proto-6 {len(seg) - 512}")


def test_malformed_packet_gets_its_own_line_and_the_rest_prints(tmp_path, capsys):
    good = cp.conversation()[:2]
    bad = bytearray(cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, ACK))
    bad[32] = 0x30                              # data offset 3 words
    v6 = bytes([0x60]) + bytes(39)
    pkts = [good[0], bytes(bad), b"\x45\x00\x00", v6, good[1]]
    status, lines, err = trace(capsys, write_pcap(tmp_path / "m.pcap", pkts))
    assert status == 0 and err == "" and len(lines) == 5
    assert "Flags [S]" in lines[0] and "Flags [S.]" in lines[4]
    assert f"{cp.CLIENT} > {cp.SERVER}: [malformed: tcp: bad_data_offset: " in lines[1]
    assert "[malformed: ipv4: truncated: " in lines[2]
    assert lines[3].endswith("IP6, not dissected, length 40")


def test_ethernet_pcap(tmp_path, capsys):
    pkts = cp.conversation()[:3]
    eth = lambda p: b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + p
    _, raw_lines, _ = trace(capsys, write_pcap(tmp_path / "r.pcap", pkts))
    _, eth_lines, _ = trace(capsys, write_pcap(tmp_path / "e.pcap", pkts, linktype=LINKTYPE_ETHERNET, wrap=eth))
    assert eth_lines == raw_lines
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    write_pcap(tmp_path / "a.pcap", [arp], linktype=LINKTYPE_ETHERNET)
    _, (line,), _ = trace(capsys, tmp_path / "a.pcap")
    assert line.endswith("ethertype ARP (0x0806), length 42")


def test_snaplen_cut_packets_are_not_called_corrupt(tmp_path, capsys):
    pkt = cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, PSH | ACK, payload=b"z" * 500)
    write_pcap(tmp_path / "s.pcap", [pkt], snaplen=96)
    assert len(read_pcap(tmp_path / "s.pcap")[0].data) == 96
    _, (line,), _ = trace(capsys, tmp_path / "s.pcap")
    assert "(unverified: capture cut short), seq 1000001:1000501, " in line and line.endswith("length 500")


def test_nanosecond_and_time_styles(tmp_path, capsys):
    with PcapWriter(tmp_path / "n.pcap", nanosecond=True) as w:
        w.write_ns(cp.conversation()[0], T0 * 10**9 + 123456789)
    _, (line,), _ = trace(capsys, tmp_path / "n.pcap")
    assert line.startswith("22:13:20.123456789 IP ")
    _, (line,), _ = trace(capsys, tmp_path / "n.pcap", "--time", "date")
    assert line.startswith("2023-11-14 22:13:20.123456789 IP ")
    _, (line,), _ = trace(capsys, tmp_path / "n.pcap", "--time", "epoch")
    assert line.startswith(f"{T0}.123456789 IP ")
    _, (line,), _ = trace(capsys, tmp_path / "n.pcap", "--time", "none")
    assert line.startswith("IP (")


def test_count_stdin_and_hex(tmp_path, capsys, monkeypatch):
    raw = write_pcap(tmp_path / "c.pcap", cp.conversation()).read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    status, lines, _ = trace(capsys, "-", "-c", "2", "--hex")
    assert status == 0
    heads = [l for l in lines if not l.startswith("\t0x")]
    assert len(heads) == 2 and "Flags [S.]" in heads[1]
    hex_text = "\n".join(lines[1: lines.index(heads[1])])
    (p,) = parse_hexdump(hex_text)
    assert p.data == cp.conversation()[0]


def test_explain_reads_fields(tmp_path, capsys):
    pkts = cp.conversation()
    status, lines, _ = trace(capsys, write_pcap(tmp_path / "c.pcap", pkts), "-V", "-c", "5")
    text = "\n".join(lines)
    assert status == 0
    syn = text.split("\n\n")[0]
    assert "version 4 (high nibble), IHL 5 words = 20 bytes" in syn
    assert re.search(r"0x0002  00 3c +total length 60 bytes \(20 header \+ 40 payload\)", syn)
    assert re.search(r"0x0009  06 +protocol 6 \(TCP\)", syn)
    assert f"source address {cp.CLIENT}" in syn and "destination port 25 (smtp)" in syn
    assert "data offset 10 words = 40 bytes: 20 fixed + 20 bytes of options" in syn
    assert re.search(r"0x0028  02 +kind 2: Maximum Segment Size", syn)
    assert re.search(r"0x0029  04 +length 4 bytes", syn)
    assert re.search(r"0x002a  05 b4 +MSS 1460 bytes", syn)
    assert re.search(r"kind 4: SACK-Permitted", syn) and re.search(r"shift count 7: windows are multiplied by 128", syn)
    assert "header checksum 0x" in syn and ": correct" in syn and "no payload" in syn
    helo = text.split("\n\n")[4]
    assert "payload: 21 bytes at 0x0034, as text:" in helo and "HELO client.example  <\\r\\n>" in helo


def test_explain_malformed_and_binary(tmp_path, capsys):
    bad = bytearray(cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, ACK))
    bad[32] = 0x30
    binary = cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, PSH | ACK, payload=bytes(range(10)))
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "m.pcap", [bytes(bad), binary]), "--explain")
    text = "\n".join(lines)
    assert "TCP header could not be read: tcp: bad_data_offset:" in text
    assert "payload: 10 bytes at 0x0028, binary" in text


# -- bad files: exit 2 and one line naming the place ----------------------------------------------------

def test_truncated_pcap_exit_2_names_packet(tmp_path, capsys):
    path = write_pcap(tmp_path / "t.pcap", cp.conversation()[:3])
    path.write_bytes(path.read_bytes()[:-10])
    status, lines, err = trace(capsys, path)
    assert status == 2 and len(lines) == 2                       # the two whole packets still print
    assert err.count("\n") == 1
    assert err.startswith(f"netstack trace: {path}: packet 3, offset ") and "packet data cut short" in err


def test_garbage_hex_line_exit_2_names_line(tmp_path, capsys):
    path = tmp_path / "g.txt"
    path.write_text("some header\n" + format_hex(cp.conversation()[0]).replace("0x0010:  c612", "0x0010:  c6!2") + "\n")
    lines_in = path.read_text().splitlines()
    bad_line = next(i for i, l in enumerate(lines_in, 1) if "!" in l)
    status, lines, err = trace(capsys, path)
    assert status == 2 and lines == []
    assert err == f"netstack trace: {path}: line {bad_line}: 'c6!2' is not a group of hex bytes\n"


def test_not_a_capture_and_missing_file(tmp_path, capsys):
    (tmp_path / "prose.txt").write_text("just words\nno packets here\n")
    (tmp_path / "bin").write_bytes(b"\x00\xff\xfe" * 20)
    for name, fragment in (("prose.txt", "no packets found"), ("bin", "neither a pcap file"),
                           ("missing.pcap", "No such file or directory")):
        status, _, err = trace(capsys, tmp_path / name)
        assert status == 2 and fragment in err and err.count("\n") == 1 and str(tmp_path / name) in err


def test_write_pcap_from_hexdump_round_trips(tmp_path, capsys):
    pkts = cp.conversation()[:4]
    dump = "".join(f"12:00:0{i}.000001 IP whatever\n{format_hex(p)}\n" for i, p in enumerate(pkts))
    (tmp_path / "d.txt").write_text(dump)
    _, from_hex, _ = trace(capsys, tmp_path / "d.txt")
    status, out, err = trace(capsys, "--write-pcap", tmp_path / "o.pcap", tmp_path / "d.txt")
    assert status == 0 and out == [] and "wrote 4 packets" in err
    assert [r.data for r in read_pcap(tmp_path / "o.pcap")] == pkts
    _, from_pcap, _ = trace(capsys, tmp_path / "o.pcap")
    assert from_pcap == from_hex and from_hex[0].startswith("12:00:00.000001 IP (")


@pytest.mark.parametrize("linktype,header", [
    (113, b"\x00\x00\x00\x01\x00\x06" + bytes(8) + b"\x08\x00"),                  # Linux cooked (tcpdump -i any)
    (276, b"\x08\x00\x00\x00" + bytes(16)),                                        # Linux cooked v2
    (0, struct.pack("<I", 2)),                                                    # BSD loopback, AF_INET
    (1, bytes(12) + b"\x81\x00\x00\x07\x08\x00"),                                 # Ethernet + 802.1Q tag
])
def test_other_link_layers(tmp_path, capsys, linktype, header):
    pkts = cp.conversation()[:2]
    _, raw_lines, _ = trace(capsys, write_pcap(tmp_path / "r.pcap", pkts))
    _, lines, _ = trace(capsys, write_pcap(tmp_path / "l.pcap", pkts, linktype=linktype, wrap=lambda p: header + p))
    assert lines == raw_lines
    status, lines, _ = trace(capsys, tmp_path / "l.pcap", "-V", "-c", "1")
    assert status == 0 and f"IPv4 starts at 0x{len(header):04x}" in "\n".join(lines)


def _mutations():
    from hypothesis import strategies as st

    base = st.sampled_from([*cp.conversation(), *cp.icmp_echo_pair(), cp.udp_packet(), cp.rst_packet(),
                            ipv4_packet(src=cp.CLIENT, dst=cp.SERVER, protocol=1,
                                        payload=dest_unreachable(PORT, cp.udp_packet()))])
    edits = st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6)
    return st.one_of(st.binary(max_size=120),
                     st.tuples(base, edits, st.integers(0, 130)).map(
                         lambda t: _apply(bytearray(t[0]), t[1])[: t[2] or None]))


def _apply(buf, edits):
    for at, value in edits:
        if at < len(buf):
            buf[at] = value
    return bytes(buf)


def test_dissector_never_crashes_on_hostile_packets():
    """Random and mutated packets: each one prints a line (and an explanation), never an exception."""
    from hypothesis import given, settings, HealthCheck

    from netstack.capture import Frame
    from netstack.capture.dissect import dissect
    from netstack.capture.explain import explain_packet
    from netstack.capture.format import SeqTracker, format_packet

    tracker = SeqTracker()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutations())
    def check(data):
        d = dissect(data)
        line = format_packet(d, tracker, "00:00:00.000000")
        assert "\n" not in line and line.startswith("00:00:00.000000 IP ")
        explain_packet(Frame(1, data, LINKTYPE_RAW), data, 0, d)

    check()


def test_ascii_prints_each_payload_line_under_its_packet(tmp_path, capsys):
    """-A: the SMTP dialogue readable under the packet lines; header-only packets add nothing."""
    pkts = cp.conversation()
    binary = cp.c2s(cp.C_ISN + 1, cp.S_ISN + 1, PSH | ACK, payload=b"\x00\x01MAIL\r\nRCPT\n")
    code, lines, _ = trace(capsys, str(write_pcap(tmp_path / "a.pcap", pkts + [binary])), "-A")
    assert code == 0
    assert lines[0].endswith("length 0") and not lines[1].startswith("\t")     # SYN: no payload line
    i = next(n for n, l in enumerate(lines) if "length 22" in l)
    assert lines[i + 1] == "\t220 mx.example ESMTP"
    j = next(n for n, l in enumerate(lines) if "length 21" in l)
    assert lines[j + 1] == "\tHELO client.example"
    assert lines[-2:] == ["\t..MAIL", "\tRCPT"]                                # unprintable as '.', CRLF and LF end lines
    assert sum(l.startswith("\t") for l in lines) == 4
