"""The seed article's HELO packet is a test vector: `netstack trace` must read it as the article does.

The article (/work/shared/seed/understanding-smtp-article.txt) prints the packet
with a 2005 tcpdump header line ("[tcp sum ok]") and reads it by hand:
192.168.1.100.40565 > 192.168.1.200.25, seq 159505509:159505543, ack 578397676,
win 33304, NOP NOP and a 10-byte timestamp option (TSval 310237481, TSecr
108030715) -- 12 option bytes, data offset 8 -- then "HELO web34213.mail.mud.yahoo.com".

The checksums are reported as they really are.  They are computed here with
the naive reference (tests/unit/wire_vectors.py), not read from our output:
the dump's addresses were rewritten (anonymised) after capture -- the ASCII
column still shows the original bytes -- so both checksums are wrong by the
same amount, whatever the article's tcpdump said.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from netstack.cli import main
from netstack.capture.hexdump import parse_hexdump
from netstack.wire.ipv4 import ip2int

from tests.support.wire_vectors import SEED_EXCERPT, SEED_HELO, ref_checksum, ref_tcp_checksum

ARTICLE = Path("/work/shared/seed/understanding-smtp-article.txt")
EXCERPT = SEED_EXCERPT   # the article's two packets, verbatim
# The whole article when it is present (prose around the dumps included), else the excerpt.
SEED = ARTICLE if ARTICLE.exists() else EXCERPT


def test_excerpt_is_verbatim_from_the_article():
    if not ARTICLE.exists():
        pytest.skip("the seed article is not present on this machine; the excerpt stands in for it")
    article = ARTICLE.read_text().splitlines()
    for line in EXCERPT.read_text().splitlines():
        if line and not line.startswith("#"):
            assert line in article


def _expected_checksums(pkt: bytes) -> tuple[int, int, int, int]:
    ip_found = struct.unpack_from("!H", pkt, 10)[0]
    ip_want = ref_checksum(pkt[:10] + b"\0\0" + pkt[12:20])
    seg = pkt[20:]
    tcp_found = struct.unpack_from("!H", seg, 16)[0]
    tcp_want = ref_tcp_checksum(ip2int("192.168.1.100"), ip2int("192.168.1.200"), seg[:16] + b"\0\0" + seg[18:])
    return ip_found, ip_want, tcp_found, tcp_want


def _trace(capsys, *args):
    status = main(["trace", *args, str(SEED)])
    out, err = capsys.readouterr()
    assert status == 0 and err == ""
    return out


def test_article_hexdump_parses_to_the_helo_bytes():
    helo, mail = list(parse_hexdump(SEED.read_text()))
    assert helo.data == SEED_HELO                        # same bytes as the wire tests' vector
    assert helo.header.startswith("06/09/2005 06:10:46.595221 192.168.1.100.40565 > 192.168.1.200.25: P")
    assert len(mail.data) == 0x59 and len(mail.redacted) == 14   # the article hid the address as "xxxx"
    # redacted bytes take the ASCII column's characters
    assert mail.data[0x34:] == b"MAIL FROM:<" + b"x" * 13 + b"@yahoo.com>\r\n"
    assert min(mail.redacted) == 0x3E and max(mail.redacted) == 0x4B


def test_helo_one_line_reading(capsys):
    line = _trace(capsys, "-S").splitlines()[0]
    ip_found, ip_want, tcp_found, tcp_want = _expected_checksums(SEED_HELO)
    assert line == (
        f"06:10:46.595221 IP (ttl 52, id 34293, flags [DF], cksum 0x{ip_found:04x} (incorrect -> 0x{ip_want:04x})) "
        f"192.168.1.100.40565 > 192.168.1.200.25: Flags [P.], cksum 0x{tcp_found:04x} (incorrect -> 0x{tcp_want:04x}), "
        "seq 159505509:159505543, ack 578397676, win 33304, "
        "options [nop,nop,TS val 310237481 ecr 108030715], length 34")


def test_checksums_really_are_wrong_and_by_the_same_amount():
    ip_found, ip_want, tcp_found, tcp_want = _expected_checksums(SEED_HELO)
    assert ip_found != ip_want and tcp_found != tcp_want
    # ones'-complement difference found - expected is the same for both: the addresses changed
    diff = lambda f, w: ((f + (~w & 0xFFFF)) & 0xFFFF) + ((f + (~w & 0xFFFF)) >> 16)
    assert diff(ip_found, ip_want) == diff(tcp_found, tcp_want)


def test_helo_explained_like_the_article(capsys):
    out = _trace(capsys, "-V", "-c", "1")
    ip_found, ip_want, tcp_found, tcp_want = _expected_checksums(SEED_HELO)
    rows = {
        r"0x0000  45 +version 4 \(high nibble\), IHL 5 words = 20 bytes": "the underlined 4: IPv4",
        r"0x0002  00 56 +total length 86 bytes": "len 86",
        r"0x0008  34 +TTL 52": "ttl 52",
        r"0x0009  06 +protocol 6 \(TCP\)": "the underlined 06: TCP",
        r"0x000c  c0 a8 01 64 +source address 192\.168\.1\.100": "source",
        r"0x0010  c0 a8 01 c8 +destination address 192\.168\.1\.200": "destination",
        r"0x0014  9e 75 +source port 40565": "client port",
        r"0x0016  00 19 +destination port 25 \(smtp\)": "SMTP listens on port 25",
        r"0x0018  09 81 dc 65 +sequence number 159505509": "seq",
        r"0x001c  22 79 a5 ec +acknowledgement number 578397676": "ack",
        r"0x0020  8 +data offset 8 words = 32 bytes: 20 fixed \+ 12 bytes of options": "the underlined 8: 12 option bytes",
        r"0x0022  82 18 +window 33304": "win",
        r"0x0028  01 +kind 1: No-Operation": "0101: NOP",
        r"0x0029  01 +kind 1: No-Operation": "second NOP",
        r"0x002a  08 +kind 8: Timestamps": "byte 08: timestamp option",
        r"0x002b  0a +length 10 bytes": "0a equates to ten",
        r"0x002c  12 7d d9 29 +TSval 310237481": "first timestamp value",
        r"0x0030  06 70 6a fb +TSecr 108030715": "final timestamp value",
        rf"0x000a  52 35 +header checksum 0x{ip_found:04x}: INCORRECT, expected 0x{ip_want:04x}": "ip checksum",
        rf"0x0024  04 49 +checksum 0x{tcp_found:04x}: INCORRECT, expected 0x{tcp_want:04x}": "tcp checksum",
        r"payload: 34 bytes at 0x0034, as text:\n +HELO web34213\.mail\.mud\.yahoo\.com  <\\r\\n>": "the HELO line",
        r"the ASCII column disagrees with the hex: 0x000c shows 'B' but the byte is 0xc0": "edited dump",
        r"IP and TCP checksums are off by the same amount": "diagnosis",
    }
    for rx, what in rows.items():
        assert re.search(rx, out), f"{what}: /{rx}/ not in output"
    assert re.search(r"  0x0030:  0670 6afb 4845 4c4f 2077 6562 3334 3231  \.pj\.HELO\.web3421", out)   # hex + ASCII


def test_mail_from_packet_follows_and_redaction_is_not_called_a_bad_checksum(capsys):
    lines = _trace(capsys).splitlines()
    assert len(lines) == 2
    # relative to the HELO packet, like tcpdump: the sequence numbers follow each other (34 bytes of HELO)
    assert ", seq 34:71, ack 24, win 33304, options [nop,nop,TS val 310237486 ecr 108030720], length 37" in lines[1]
    assert "cksum 0x053c (unverified: redacted bytes)" in lines[1]
    out = _trace(capsys, "-V")
    assert "MAIL FROM:<xxxxxxxxxxxxx@yahoo.com>  <\\r\\n>" in out
