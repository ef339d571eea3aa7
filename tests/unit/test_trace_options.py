"""``netstack trace`` speaks tcpdump's options: -r -c -n -x -X -A -e -v -t..-ttttt -w, -V for the
field-by-field reading, a filter expression, usage errors from trace's own parser, `-` for stdio."""
from __future__ import annotations

import io
import re

import pytest

from netstack.capture.pcap import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_NULL, LINKTYPE_RAW, PcapWriter, read_pcap
from netstack.capture.hexdump import parse_hexdump
from netstack.cli import main

from tests.support import capture_packets as cp

T0 = 1_700_000_000
ETH = bytes.fromhex("020000000001" "020000000002" "0800")
SLL = bytes.fromhex("0000" "0001" "0006" "0200000000010000" "0800")


def write(path, packets, linktype=LINKTYPE_RAW, head=b"", times=None):
    with PcapWriter(path, linktype=linktype) as w:
        for i, p in enumerate(packets):
            w.write_ns(head + p, (times[i] if times else (T0 * 10**9 + i * 1_000_000)))
    return str(path)


def run(capsys, *argv):
    status = main(["trace", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


@pytest.fixture
def conv(tmp_path):
    return write(tmp_path / "c.pcap", cp.conversation() + cp.icmp_echo_pair())


def test_r_and_positional_file_and_count(conv, capsys):
    s1, a, _ = run(capsys, "-r", conv, "-c", "3")
    s2, b, _ = run(capsys, conv, "--count", "3")
    assert s1 == s2 == 0 and a == b and len(a) == 3


def test_n_and_nn_are_accepted_and_change_nothing(conv, capsys):
    _, plain, _ = run(capsys, conv)
    assert run(capsys, "-n", conv)[1] == plain
    assert run(capsys, "-nn", "-r", conv)[1] == plain


def test_old_count_spelling_gets_a_hint(conv, capsys):
    for argv in (("-n", "5", conv), (conv, "-n", "5")):
        with pytest.raises(SystemExit) as e:
            main(["trace", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: netstack trace") and "use -c N" in err


def test_unknown_option_is_reported_by_trace_not_the_top_level(conv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["trace", conv, "-Q"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: netstack trace" in err and "netstack trace: error: unrecognized arguments: -Q" in err
    with pytest.raises(SystemExit):
        main(["trace"])
    assert "netstack trace: error: a capture file is needed" in capsys.readouterr().err


def test_x_is_hex_without_the_link_header_and_xx_with_it(tmp_path, capsys):
    pkt = cp.conversation()[0]
    f = write(tmp_path / "e.pcap", [pkt], LINKTYPE_ETHERNET, ETH)
    _, lines, err = run(capsys, "-x", f)
    assert "-V (--explain)" in err                               # the old meaning of -x: a one-line hint
    assert lines[1] == "\t0x0000:  4500 003c 0000 4000 4006 ae94 c612 0001"
    assert all(not re.search(r"\s{2}\S+$", l) for l in lines[1:])   # no ASCII column
    (p,) = parse_hexdump("\n".join(lines[1:]))
    assert p.data == pkt
    _, lines, _ = run(capsys, "-xx", f)
    (p,) = parse_hexdump("\n".join(lines[1:]))
    assert p.data == ETH + pkt


def test_X_adds_ascii_and_XX_the_link_header(tmp_path, capsys):
    pkt = cp.conversation()[3]
    f = write(tmp_path / "e.pcap", [pkt], LINKTYPE_ETHERNET, ETH)
    _, lines, err = run(capsys, "-X", f)
    assert err == "" and lines[1].startswith("\t0x0000:  4500 ") and lines[1].endswith("E..J..@.@.......")
    assert "220.mx.examp" in "".join(lines)
    _, lines, _ = run(capsys, "-XX", f)
    assert lines[1].startswith("\t0x0000:  0200 0000 0001 ")


def test_V_and_explain_give_the_field_by_field_reading(conv, capsys):
    _, a, _ = run(capsys, "-V", "-c", "1", conv)
    _, b, _ = run(capsys, "--explain", "-c", "1", conv)
    assert a == b and any("version 4 (high nibble)" in l for l in a)


@pytest.mark.parametrize("linktype, head, prefix", [
    (LINKTYPE_ETHERNET, ETH, "02:00:00:00:00:02 > 02:00:00:00:00:01, ethertype IPv4 (0x0800), length 74: (ttl 64,"),
    (LINKTYPE_LINUX_SLL, SLL, " In 02:00:00:00:00:01 ethertype IPv4 (0x0800), length 76: (ttl 64,"),
    (LINKTYPE_NULL, b"\x02\0\0\0", "AF IPv4 (2), length 64: (ttl 64,"),
    (LINKTYPE_RAW, b"", "ip: (ttl 64,"),
])
def test_e_prints_the_link_header(tmp_path, capsys, linktype, head, prefix):
    f = write(tmp_path / "l.pcap", [cp.conversation()[0]], linktype, head)
    _, (line,), _ = run(capsys, "-e", f)
    assert line == "22:13:20.000000 " + prefix + line.split(" (ttl 64,", 1)[1] and line.startswith("22:13:20.000000 " + prefix)
    _, (plain,), _ = run(capsys, f)
    assert plain.split(" (ttl 64,", 1)[1] == line.split(" (ttl 64,", 1)[1]


def test_v_is_tcpdumps_two_line_layout(conv, capsys):
    _, lines, _ = run(capsys, "-v", "-c", "1", conv)
    assert lines[0] == ("22:13:20.000000 IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto TCP (6), length 60, "
                        "cksum 0xae94 (correct))")
    assert lines[1].startswith("    198.18.0.1.40565 > 198.18.0.2.25: Flags [S], cksum 0x")
    _, lines, _ = run(capsys, "-v", conv, "icmp")
    assert "flags [none], proto ICMP (1), length 84," in lines[0]


def test_t_family_of_timestamps(tmp_path, capsys):
    times = [T0 * 10**9, T0 * 10**9 + 1_500_000, T0 * 10**9 + 3_601_000_000_000]
    f = write(tmp_path / "t.pcap", cp.conversation()[:3], times=times)
    stamps = lambda *o: [l.split(" IP ")[0] for l in run(capsys, *o, f)[1]]
    assert stamps() == ["22:13:20.000000", "22:13:20.001500", "23:13:21.000000"]
    assert [l[:3] for l in run(capsys, "-t", f)[1]] == ["IP "] * 3
    assert stamps("-tt") == [f"{T0}.000000", f"{T0}.001500", f"{T0 + 3601}.000000"]
    assert stamps("-ttt") == [" 00:00:00.000000", " 00:00:00.001500", " 01:00:00.998500"]
    assert stamps("-tttt") == ["2023-11-14 22:13:20.000000", "2023-11-14 22:13:20.001500", "2023-11-14 23:13:21.000000"]
    assert stamps("-ttttt") == [" 00:00:00.000000", " 00:00:00.001500", " 01:00:01.000000"]
    assert stamps("--time", "delta") == stamps("-ttt")


def test_filter_expression_words_and_quoted_and_F(conv, tmp_path, capsys):
    _, words, _ = run(capsys, conv, "tcp", "port", "25", "and", "src", "host", "198.18.0.2")
    _, quoted, _ = run(capsys, "-r", conv, "tcp port 25 and src host 198.18.0.2")
    (tmp_path / "f.txt").write_text("tcp port 25   # SMTP\nand src host 198.18.0.2\n")
    _, from_file, _ = run(capsys, "-F", tmp_path / "f.txt", conv)
    _, mixed, _ = run(capsys, conv, "tcp", "-c", "9", "port", "25", "and", "src", "host", "198.18.0.2")
    assert words == quoted == from_file == mixed and len(words) == 4
    assert all("198.18.0.2.25 > " in l for l in words)
    _, icmp, _ = run(capsys, conv, "icmp", "-c", "1")
    assert len(icmp) == 1 and "ICMP echo request" in icmp[0]


def test_bad_filter_is_exit_2_one_line(conv, capsys):
    status, out, err = run(capsys, conv, "tcp", "port")
    assert status == 2 and out == [] and err == "netstack trace: filter expression: tcp port needs a value\n"


def test_write_pcap_to_stdout_with_filter(conv, monkeypatch, capsys):
    buf = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(buf))
    assert main(["trace", conv, "-w", "-", "icmp"]) == 0
    assert "wrote 2 packets to standard output" in capsys.readouterr().err
    records = read_pcap(io.BytesIO(buf.getvalue()))
    assert [r.data for r in records] == cp.icmp_echo_pair()
    assert not (__import__("pathlib").Path("-")).exists()


def test_write_pcap_long_form_to_stdout(conv, monkeypatch, capsys):
    buf = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(buf))
    assert main(["trace", conv, "--write-pcap", "-", "-c", "2"]) == 0
    assert len(read_pcap(io.BytesIO(buf.getvalue()))) == 2
