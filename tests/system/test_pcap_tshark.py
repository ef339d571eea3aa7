"""tshark reads the files PcapWriter writes without complaint.

tshark's expert info (``-z expert``) lists every malformed packet and bad
checksum it finds, with checksum validation switched on for IP, TCP, UDP and
ICMP.  The test fails on any Error or Warning entry, checks that tshark sees
the same frames, timestamps and fields as we wrote, and proves it can fail:
a deliberately corrupted packet must be flagged.  With CI=true a missing
tshark is a failure, not a skip.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from netstack.capture.pcap import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_RAW, PcapWriter

from tests.support import capture_packets as cp
from tests.support.nstest import in_ci

TSHARK = shutil.which("tshark") or shutil.which("tshark", path="/usr/bin:/usr/sbin")
# Checksum validation is off by default in tshark; ICMP checksums are always verified.
CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
GOOD = "1"        # Wireshark's PROTO_CHECKSUM_E_GOOD (0 bad, 1 good, 2 unverified)
T0 = 1_700_000_000


@pytest.fixture(scope="module")
def tshark():
    if TSHARK is None:
        if in_ci():
            pytest.fail("CI=true and tshark is not installed", pytrace=False)
        pytest.skip("tshark is not installed")
    return TSHARK


def _run(tshark, *args) -> str:
    r = subprocess.run([tshark, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"tshark failed ({r.returncode}): {r.stderr.strip()}"
    return r.stdout


def expert_problems(tshark, path) -> list[str]:
    """Entries of tshark's Errors and Warnings sections (Notes and Chats are normal TCP life)."""
    out = _run(tshark, "-r", str(path), "-q", "-z", "expert", *CHECKS)
    problems, section = [], None
    for line in out.splitlines():
        m = re.match(r"^(Errors|Warns|Warnings|Notes|Chats|Comments) \(\d+\)", line)
        if m:
            section = m.group(1)
            continue
        if section in ("Errors", "Warns", "Warnings") and re.match(r"^\s+\d+\s", line):
            problems.append(f"{section}: {line.strip()}")
    return problems


def packets() -> list[bytes]:
    return [*cp.conversation(), *cp.icmp_echo_pair(), cp.udp_packet(b"hello, udp\n", sport=40000, dport=9)]


def _write(path, pkts, linktype=LINKTYPE_RAW, wrap=lambda p: p, **kw):
    with PcapWriter(path, linktype=linktype, **kw) as w:
        for i, p in enumerate(pkts):
            w.write(wrap(p), ts=T0 + i * 0.001)
    return path


@pytest.mark.parametrize("linktype", [LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_ETHERNET])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_tshark_reads_our_pcaps_without_complaint(tshark, tmp_path, linktype, nanosecond):
    pkts = packets()
    wrap = (lambda p: b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + p) \
        if linktype == LINKTYPE_ETHERNET else (lambda p: p)
    path = _write(tmp_path / "ok.pcap", pkts, linktype, wrap, nanosecond=nanosecond)
    assert expert_problems(tshark, path) == []
    fields = _run(tshark, "-r", str(path), *CHECKS, "-T", "fields", "-E", "separator=|",
                  "-e", "frame.number", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "ip.src",
                  "-e", "ip.checksum.status", "-e", "tcp.seq_raw", "-e", "tcp.checksum.status",
                  "-e", "udp.checksum.status", "-e", "icmp.checksum.status", "-e", "_ws.malformed")
    rows = [l.split("|") for l in fields.splitlines()]
    assert len(rows) == len(pkts)
    for i, (row, pkt) in enumerate(zip(rows, pkts)):
        number, epoch, flen, src, ip_status, seq_raw, tcp_status, udp_status, icmp_status, malformed = row
        assert int(number) == i + 1
        assert abs(float(epoch) - (T0 + i * 0.001)) < 1e-6
        assert int(flen) == len(wrap(pkt))
        assert src in (cp.CLIENT, cp.SERVER)
        assert ip_status == GOOD, f"frame {i + 1}: tshark says the IP checksum status is {ip_status!r}"
        if pkt[9] == 6:
            assert int(seq_raw) == int.from_bytes(pkt[24:28], "big")
            assert tcp_status == GOOD, f"frame {i + 1}: TCP checksum status {tcp_status!r}"
        if pkt[9] == 17:
            assert udp_status == GOOD, f"frame {i + 1}: UDP checksum status {udp_status!r}"
        if pkt[9] == 1:
            assert icmp_status == GOOD, f"frame {i + 1}: ICMP checksum status {icmp_status!r}"
        assert malformed == ""


def test_the_check_can_fail(tshark, tmp_path):
    pkts = packets()
    bad = bytearray(pkts[4])
    bad[-2] ^= 0x40                              # corrupt HELO payload: TCP checksum now wrong
    path = _write(tmp_path / "bad.pcap", [*pkts[:4], bytes(bad), *pkts[5:]])
    problems = expert_problems(tshark, path)
    assert any("Bad checksum" in p for p in problems), problems
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(_write(tmp_path / "whole.pcap", pkts[:1]).read_bytes()[:-1])
    r = subprocess.run([tshark, "-r", str(cut)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 or "cut short" in r.stderr or "appears to have been cut short" in r.stderr
