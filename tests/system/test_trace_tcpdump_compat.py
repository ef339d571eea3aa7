"""`netstack trace` against the real tcpdump and tshark on the same captures.

* the filter expression selects exactly the packets tcpdump selects;
* -e, -x/-xx, -X/-XX, -v and the -t family print what tcpdump prints;
* pcapng files written by tshark (converted, and merged with mixed link types)
  read the same as tcpdump reads them (tshark for the mixed file, which tcpdump
  refuses).  Live captures written by dumpcap and tcpdump need root: they are in
  tests/integration/test_trace_live_capture.py.

With CI=true a missing tcpdump or tshark is a failure, not a skip.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from netstack.capture.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, PcapWriter
from netstack.wire.ipv4 import PROTO_TCP, ipv4_packet
from netstack.wire.tcp import ACK, PSH, tcp_segment

from tests.support import capture_packets as cp
from tests.support.trace_tools import ours, run_tcpdump, tcpdump, tool, tshark  # noqa: F401 (fixtures)

T0 = 1_700_000_000
ETH = bytes.fromhex("020000000001" "020000000002" "0800")
SLL = bytes.fromhex("0000" "0001" "0006" "0200000000010000" "0800")


def mixed_packets() -> list[bytes]:
    seg = tcp_segment(src="198.18.0.1", dst="198.18.0.2", src_port=40565, dst_port=25, seq=1, ack=1, flags=ACK,
                      window=100, payload=b"y" * 64)
    frags = [ipv4_packet(src="198.18.0.1", dst="198.18.0.2", protocol=PROTO_TCP, payload=seg[:40], mf=True, ident=9),
             ipv4_packet(src="198.18.0.1", dst="198.18.0.2", protocol=PROTO_TCP, payload=seg[40:], frag_offset=40,
                         ident=9)]
    return [*cp.conversation(), cp.rst_packet(), *cp.icmp_echo_pair(), cp.udp_packet(sport=5353, dport=9),
            cp.udp_packet(sport=53, dport=25), *frags,
            cp.tcp_packet("10.1.2.3", "10.9.9.9", 1234, 587, 1, 1, PSH | ACK, payload=b"x"),
            cp.tcp_packet("10.9.9.9", "10.1.2.3", 587, 1234, 1, 2, ACK)]


def write(path, packets, linktype=LINKTYPE_RAW, head=b"", *, nanosecond=False, step_ns=1_000_000):
    with PcapWriter(path, linktype=linktype, nanosecond=nanosecond) as w:
        for i, p in enumerate(packets):
            w.write_ns(head + p, T0 * 10**9 + i * step_ns + (i * i * 1234 if nanosecond else 0))
    return path


EXPRESSIONS = [
    "tcp", "udp", "icmp", "ip", "not tcp", "port 25", "tcp port 25", "udp port 25", "src port 25", "dst port 25",
    "src or dst port 25", "src and dst port 25", "portrange 500-600", "host 198.18.0.2", "src host 198.18.0.2",
    "dst 198.18.0.1", "net 10.0.0.0/8", "net 10.1", "port 25 or 587", "host 10.1.2.3 and not 10.9.9.9",
    "icmp or port 25 and src host 198.18.0.2", "icmp or (port 25 and src host 198.18.0.2)",
    "not (tcp or icmp)", "tcp and not port 25", "! tcp && ! udp", "tcp or udp || icmp",
]


def test_filter_selects_what_tcpdump_selects(tmp_path, tcpdump, capsys):
    pcap = write(tmp_path / "m.pcap", mixed_packets())
    for expression in EXPRESSIONS:
        theirs = [l.split(" ", 1)[0] for l in run_tcpdump(tcpdump, "-n", "-tt", "-r", pcap, expression)]
        mine = [l.split(" ", 1)[0] for l in ours(capsys, "-tt", pcap, expression)]
        assert mine == theirs, expression
    # and the filter is not vacuous: the expressions above select different packet sets
    picks = {tuple(l.split(" ", 1)[0] for l in ours(capsys, "-tt", pcap, e)) for e in EXPRESSIONS}
    assert len(picks) > 15


ETH_ARP = bytes.fromhex("ffffffffffff" "020000000001" "0806")
ETH_EXPRESSIONS = ["host 198.18.0.2", "src host 198.18.0.1", "dst 198.18.0.1", "net 198.18.0.0/15",
                   "ip host 198.18.0.2", "not host 198.18.0.2", "not tcp", "tcp or host 198.18.0.2",
                   "icmp or src 198.18.0.2"]


def test_filter_on_ethernet_with_arp_selects_what_tcpdump_selects(tmp_path, tcpdump, capsys):
    """tcpdump's `host`/`net` also match ARP packets' addresses; ours too (`ip host` does not)."""
    frames = [ETH_ARP + cp.arp_packet(1, "198.18.0.1", "198.18.0.2"),
              ETH[:12] + b"\x08\x06" + cp.arp_packet(2, "198.18.0.2", "198.18.0.1", b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x01")]
    frames += [ETH + p for p in cp.conversation()[:3] + cp.icmp_echo_pair()]
    pcap = tmp_path / "arp.pcap"
    with PcapWriter(pcap, linktype=LINKTYPE_ETHERNET) as w:
        for i, f in enumerate(frames):
            w.write_ns(f, T0 * 10**9 + i * 1_000_000)
    for expression in ETH_EXPRESSIONS:
        theirs = [l.split(" ", 1)[0] for l in run_tcpdump(tcpdump, "-n", "-tt", "-r", pcap, expression)]
        mine = [l.split(" ", 1)[0] for l in ours(capsys, "-tt", pcap, expression)]
        assert mine == theirs, expression
    assert len(ours(capsys, pcap, "host 198.18.0.2")) == len(frames)


@pytest.mark.parametrize("linktype, head", [(LINKTYPE_ETHERNET, ETH), (LINKTYPE_LINUX_SLL, SLL)])
def test_link_header_hex_and_times_match_tcpdump(tmp_path, tcpdump, capsys, linktype, head):
    pcap = write(tmp_path / "l.pcap", cp.conversation()[:5] + cp.icmp_echo_pair(), linktype, head,
                 step_ns=1_700_300_000)
    link = lambda lines: [re.sub(r"^\S+ ", "", l).split(": ", 1)[0] for l in lines if not l.startswith("\t")]
    assert link(ours(capsys, "-e", pcap)) == link(run_tcpdump(tcpdump, "-n", "-e", "-r", pcap))
    for flag in ("-x", "-xx", "-X", "-XX"):
        hex_lines = lambda lines: [l for l in lines if l.startswith("\t0x")]
        theirs = hex_lines(run_tcpdump(tcpdump, "-n", flag, "-r", pcap))
        assert theirs and hex_lines(ours(capsys, flag, pcap)) == theirs, flag
    for flag in ("-tt", "-ttt", "-tttt", "-ttttt"):
        stamp = lambda lines: [l.split(" IP ")[0] for l in lines]
        assert stamp(ours(capsys, flag, pcap)) == stamp(run_tcpdump(tcpdump, "-n", flag, "-r", pcap)), flag
    assert [l[:3] for l in ours(capsys, "-t", pcap)] == [l[:3] for l in run_tcpdump(tcpdump, "-n", "-t", "-r", pcap)]


def test_verbose_matches_tcpdump_v(tmp_path, tcpdump, capsys):
    pcap = write(tmp_path / "v.pcap", cp.conversation() + [cp.rst_packet()] + cp.icmp_echo_pair())
    theirs = run_tcpdump(tcpdump, "-n", "-v", "-r", pcap)
    mine = ours(capsys, "-v", pcap)
    # first lines: tcpdump's IP parenthetical; ours appends the IP checksum verdict
    heads = lambda lines: [re.sub(r", cksum 0x[0-9a-f]{4} \([^)]*\)\)$", ")", l) for l in lines if l[:1].isdigit()]
    assert heads(mine) == heads(theirs) and len(heads(mine)) == 12
    # second lines: identical up to tcpdump's SMTP payload decoding after "length N"
    body = lambda lines: [re.sub(r"(length \d+).*$", r"\1", l) for l in lines if l.startswith("    ")
                          and re.match(r"    \d", l)]
    assert body(mine) == body(theirs) and len(body(mine)) == 12


def _same_reading(capsys, tcpdump, original, converted, nanosecond):
    """Ours on the converted file == ours on the original; tcpdump agrees on times and addresses."""
    assert ours(capsys, converted) == ours(capsys, original)
    stamp_addr = lambda lines: [re.match(r"(\S+) IP (?:\(.*?\) )?(\S+ > \S+?):", l).groups()
                                for l in lines if " IP " in l]
    nano = ["--time-stamp-precision=nano"] if nanosecond else []      # we print the digits the file has
    theirs = stamp_addr(run_tcpdump(tcpdump, "-n", "-tt", *nano, "-r", converted))
    assert theirs and stamp_addr(ours(capsys, "-tt", converted)) == theirs


@pytest.mark.parametrize("linktype, head, nanosecond", [(LINKTYPE_RAW, b"", False), (LINKTYPE_RAW, b"", True),
                                                        (LINKTYPE_ETHERNET, ETH, False),
                                                        (LINKTYPE_LINUX_SLL, SLL, True)])
def test_pcapng_converted_by_tshark(tmp_path, tshark, tcpdump, capsys, linktype, head, nanosecond):
    pcap = write(tmp_path / "a.pcap", mixed_packets(), linktype, head, nanosecond=nanosecond)
    ng = tmp_path / "a.pcapng"
    r = subprocess.run([tshark, "-r", pcap, "-F", "pcapng", "-w", ng], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and ng.read_bytes()[:4] == b"\n\r\r\n", r.stderr
    _same_reading(capsys, tcpdump, pcap, ng, nanosecond)


def test_pcapng_merged_with_two_link_types(tmp_path, tshark, tcpdump, capsys):
    mergecap = tool("mergecap")
    pkts = cp.conversation()
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    with PcapWriter(a, linktype=LINKTYPE_ETHERNET) as wa, PcapWriter(b, linktype=LINKTYPE_RAW) as wb:
        for i, p in enumerate(pkts):                  # the same times as write() gives the whole list
            (wb.write_ns(p, T0 * 10**9 + i * 1_000_000) if i % 2 else wa.write_ns(ETH + p, T0 * 10**9 + i * 1_000_000))
    ng = tmp_path / "m.pcapng"
    subprocess.run([mergecap, "-F", "pcapng", "-w", ng, a, b], check=True, capture_output=True, timeout=60)
    lines = ours(capsys, ng)
    assert len(lines) == len(pkts) and lines == ours(capsys, write(tmp_path / "all.pcap", pkts))
    # tcpdump refuses a file whose interfaces differ in link type; tshark names each frame's encapsulation
    r = subprocess.run([tshark, "-r", ng, "-T", "fields", "-e", "frame.protocols"], capture_output=True, text=True,
                       timeout=60)
    theirs = ["ethernet" if l.startswith("eth:") else "raw" for l in r.stdout.split()]
    mine = ["ethernet" if "ethertype IPv4" in l else "raw" for l in ours(capsys, "-e", ng)]
    assert mine == theirs == ["ethernet", "raw"] * 4 + ["ethernet"]
