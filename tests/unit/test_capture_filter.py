"""The tcpdump-style filter expression of ``netstack trace`` (semantics checked against
tcpdump itself in tests/system/test_trace_tcpdump_compat.py)."""
from __future__ import annotations

import pytest

from netstack.capture.filter import FilterError, compile_filter
from netstack.wire.ipv4 import PROTO_TCP, ipv4_packet
from netstack.wire.tcp import ACK, PSH, tcp_segment

from tests.support import capture_packets as cp

SYN = cp.conversation()[0]                 # 198.18.0.1.40565 > 198.18.0.2.25
GREETING = cp.conversation()[3]            # 198.18.0.2.25 > 198.18.0.1.40565
ECHO = cp.icmp_echo_pair()[0]              # 198.18.0.1 > 198.18.0.2 ICMP
UDP = cp.udp_packet(sport=5353, dport=9)   # 198.18.0.1.5353 > 198.18.0.2.9
OTHER = cp.tcp_packet("10.1.2.3", "10.9.9.9", 1234, 587, 1, 1, PSH | ACK, payload=b"x")
SEG = tcp_segment(src="198.18.0.1", dst="198.18.0.2", src_port=40565, dst_port=25, seq=1, ack=1, flags=ACK,
                  window=100, payload=b"y" * 64)
FRAG0 = ipv4_packet(src="198.18.0.1", dst="198.18.0.2", protocol=PROTO_TCP, payload=SEG[:40], mf=True, ident=9)
FRAG1 = ipv4_packet(src="198.18.0.1", dst="198.18.0.2", protocol=PROTO_TCP, payload=SEG[40:], frag_offset=40,
                    ident=9)
ALL = {"syn": SYN, "greeting": GREETING, "echo": ECHO, "udp": UDP, "other": OTHER, "frag0": FRAG0,
       "frag1": FRAG1, "nonip": None}


def matching(expression: str) -> set[str]:
    match = compile_filter(expression)
    return {name for name, pkt in ALL.items() if match(pkt)}


@pytest.mark.parametrize("expression, names", [
    ("", set(ALL)),
    ("tcp", {"syn", "greeting", "other", "frag0", "frag1"}),
    ("icmp", {"echo"}),
    ("udp", {"udp"}),
    ("ip", set(ALL) - {"nonip"}),
    ("port 25", {"syn", "greeting", "frag0"}),                 # a later fragment carries no ports
    ("tcp port 25", {"syn", "greeting", "frag0"}),
    ("udp port 25", set()),
    ("port 9", {"udp"}),
    ("src port 25", {"greeting"}),
    ("dst port 25", {"syn", "frag0"}),
    ("src or dst port 25", {"syn", "greeting", "frag0"}),
    ("src and dst port 25", set()),
    ("portrange 500-600", {"other"}),
    ("portrange 5353-5353", {"udp"}),
    ("host 198.18.0.2", {"syn", "greeting", "echo", "udp", "frag0", "frag1"}),
    ("src host 198.18.0.2", {"greeting"}),
    ("dst 198.18.0.2", {"syn", "echo", "udp", "frag0", "frag1"}),   # `dst A` means `dst host A`
    ("198.18.0.2", {"syn", "greeting", "echo", "udp", "frag0", "frag1"}),
    ("net 10.0.0.0/8", {"other"}),
    ("net 10.1", {"other"}),                                    # a partial address: /16
    ("src net 198.18.0.0/15", {"syn", "greeting", "echo", "udp", "frag0", "frag1"}),
    ("not tcp", {"echo", "udp", "nonip"}),
    ("! tcp && ! udp", {"echo", "nonip"}),
    ("port 25 or 587", {"syn", "greeting", "frag0", "other"}),  # a bare value repeats `port`
    ("host 198.18.0.1 and not 10.1.2.3", {"syn", "greeting", "echo", "udp", "frag0", "frag1"}),
    ("icmp or udp || port 587", {"echo", "udp", "other"}),
    # `and` and `or` have equal precedence, left to right (pcap-filter(7))
    ("icmp or port 25 and src host 198.18.0.2", {"greeting"}),
    ("icmp or (port 25 and src host 198.18.0.2)", {"echo", "greeting"}),
    ("not (tcp or icmp)", {"udp", "nonip"}),
    ("tcp and not port 25", {"other", "frag1"}),
])
def test_expression_meaning(expression, names):
    assert matching(expression) == names


ARP = cp.arp_packet(1, "198.18.0.1", "198.18.0.2")          # who-has 198.18.0.2 tell 198.18.0.1


@pytest.mark.parametrize("expression, matches", [
    ("host 198.18.0.2", True), ("src host 198.18.0.1", True), ("dst 198.18.0.1", False),
    ("net 198.18.0.0/15", True), ("ip host 198.18.0.2", False), ("tcp", False), ("port 25", False),
    ("not host 198.18.0.2", False), ("not tcp", True), ("host 10.1.2.3", False),
])
def test_host_and_net_match_arp_addresses_as_tcpdump_does(expression, matches):
    assert compile_filter(expression)(None, ARP) is matches


def test_a_truncated_header_matches_on_what_is_there():
    cut = SYN[:22]                                 # IP header and half a port: no ports to compare
    assert compile_filter("tcp")(cut) and compile_filter("host 198.18.0.1")(cut)
    assert not compile_filter("port 25")(cut)
    assert not compile_filter("tcp")(SYN[:10])


@pytest.mark.parametrize("expression, message", [
    ("tcp port", "tcp port needs a value"),
    ("port smtp", "'smtp' is not a port number"),
    ("port 70000", "'70000' is not a port number"),
    ("host example.com", "not an IPv4 address"),
    ("host 1.2.3", "not an IPv4 address"),
    ("net 10.0.0.1/8", "non-network bits"),
    ("net 10.0.0.0/33", "bad prefix length"),
    ("tcp host 1.2.3.4", "'tcp host' is not valid"),
    ("icmp port 7", "ICMP has no ports"),
    ("(tcp", r"expected '\)'"),
    ("tcp)", r"unexpected '\)' after a complete expression"),
    ("tcp and", "unexpected end of expression"),
    ("ip6", "'ip6' is not supported"),
    ("tcp[13] & 2 != 0", "cannot read|not supported|expected"),
    ("portrange 5", "P1-P2"),
    ("banana", "expected a primitive"),
])
def test_bad_expressions_are_one_line_errors(expression, message):
    with pytest.raises(FilterError, match=message):
        compile_filter(expression)


from hypothesis import given, settings, strategies as st  # noqa: E402

_WORDS = ["tcp", "udp", "icmp", "ip", "host", "net", "port", "portrange", "src", "dst", "and", "or", "not", "(", ")",
          "!", "&&", "||", "198.18.0.1", "10.1", "10.0.0.0/8", "25", "20-30", "70000", "x", "ip6", "tcp[13]"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=8))
def test_any_word_salad_compiles_or_raises_filter_error(words):
    try:
        match = compile_filter(" ".join(words))
    except FilterError as exc:
        assert "\n" not in str(exc)
        return
    for pkt in ALL.values():
        assert match(pkt) in (True, False)
    assert match(None, ARP) in (True, False)
