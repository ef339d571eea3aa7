"""Cross-check `netstack trace` against the real tcpdump on the same pcap.

tcpdump is the reference for the one-line format.  For every TCP packet of a
full conversation (SYN with MSS/SACK/TS/WS, data, FIN, RST) the flags, the
sequence range (relative, as tcpdump prints it), ack, window, the options list
and the length must read exactly as tcpdump reads them; ICMP echo lines too.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.capture_packets import conversation, icmp_echo_pair, rst_packet
from tests.support.nstest import in_ci
from netstack.capture.pcap import LINKTYPE_RAW, PcapWriter

TCP_FIELDS = re.compile(
    r"(?P<addr>\d+\.\d+\.\d+\.\d+\.\d+ > \d+\.\d+\.\d+\.\d+\.\d+): Flags \[(?P<flags>[^\]]*)\]"
    r"(?:, cksum 0x[0-9a-f]+ \([^)]*\))?"
    r"(?P<rest>(?:, seq [\d:]+)?(?:, ack \d+)?, win \d+(?:, options \[[^\]]*\])?, length \d+)")
ICMP_FIELDS = re.compile(r"(?P<addr>\d+\.\d+\.\d+\.\d+ > \d+\.\d+\.\d+\.\d+): (?P<rest>ICMP echo \w+, id \d+, seq \d+, length \d+)")


@pytest.fixture
def tcpdump():
    path = shutil.which("tcpdump")
    if path is None:
        if in_ci():
            pytest.fail("tcpdump is not installed (scripts/setup.sh installs it)")
        pytest.skip("tcpdump is not installed")
    return path


def _fields(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        m = TCP_FIELDS.search(line)
        if m:
            out.append((m["addr"], m["flags"], m["rest"]))
            continue
        m = ICMP_FIELDS.search(line)
        if m:
            out.append((m["addr"], "icmp", m["rest"]))
    return out


def test_trace_lines_match_tcpdump(tmp_path, tcpdump):
    packets = conversation() + [rst_packet()] + icmp_echo_pair()
    pcap = tmp_path / "conv.pcap"
    with PcapWriter(str(pcap), linktype=LINKTYPE_RAW) as w:
        for i, p in enumerate(packets):
            w.write(p, ts=1_700_000_000 + i / 1000)

    theirs = subprocess.run([tcpdump, "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=30)
    assert theirs.returncode == 0, theirs.stderr
    ours = subprocess.run(["python3", "-m", "netstack", "trace", str(pcap)], capture_output=True, text=True, timeout=30)
    assert ours.returncode == 0, ours.stderr

    reference = _fields(theirs.stdout)
    assert len(reference) == len(packets), theirs.stdout
    assert _fields(ours.stdout) == reference, f"ours:\n{ours.stdout}\ntcpdump:\n{theirs.stdout}"
