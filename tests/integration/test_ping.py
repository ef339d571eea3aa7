"""The real Linux kernel pings the stack through the TUN in a lab namespace."""
import re
import shutil
import subprocess

import pytest

from netstack.wire import icmp as W

from tests.support.labkit import STACK_ADDR

pytestmark = pytest.mark.integration

RECEIVE_ICMP_ERROR = r"""
import socket, sys, select
dst, proto = sys.argv[1], int(sys.argv[2])
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.sendto(b"unknown protocol payload", (dst, 0))
end_ok = False
for _ in range(20):
    r, _, _ = select.select([icmp], [], [], 0.25)
    if not r:
        continue
    pkt = icmp.recv(2048)
    ihl = (pkt[0] & 15) * 4
    t, c = pkt[ihl], pkt[ihl + 1]
    if t == 8 or t == 0:
        continue
    inner = pkt[ihl + 8:]
    print(t, c, inner[9])
    break
"""

UDP_CONNECTED = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[1], 9999))
s.send(b"anyone there?")
try:
    s.recv(100)
    print("no error")
except ConnectionRefusedError:
    print("ECONNREFUSED")
except socket.timeout:
    print("timeout")
"""


def _need_ping():
    if shutil.which("ping") is None:
        pytest.fail("ping (iputils-ping) is not installed; scripts/setup.sh installs it", pytrace=False)


def received(output: str) -> int:
    m = re.search(r"(\d+) received", output)
    return int(m.group(1)) if m else -1


def test_ping_three_replies(serve):
    _need_ping()
    r = serve.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert received(r.stdout) == 3
    assert serve.stop() == 0
    c = serve.counters()
    assert c["icmp.out.echo_reply"] == 3
    assert c["icmp.in.echo_request"] == 3


def test_ping_4000_fragments_both_ways(serve):
    _need_ping()
    r = serve.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "4000", STACK_ADDR], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert received(r.stdout) == 3
    assert "4008 bytes from" in r.stdout
    serve.stop()
    c = serve.counters()
    assert c["ip.reasm.oks"] == 3                 # kernel -> stack: reassembled
    assert c["ip.out.fragmented"] == 3            # stack -> kernel: fragmented
    assert c["ip.out.fragments"] == 9             # 4028-byte datagrams over MTU 1500


def test_udp_gets_port_unreachable(serve):
    r = serve.run(["python3", "-c", UDP_CONNECTED, STACK_ADDR], timeout=20)
    assert r.stdout.strip() == "ECONNREFUSED", r.stdout + r.stderr
    serve.stop()
    c = serve.counters()
    assert c["udp.in.no_port"] == 1
    assert c["icmp.out.port_unreach"] == 1


def test_unknown_protocol_gets_protocol_unreachable(serve):
    r = serve.run(["python3", "-c", RECEIVE_ICMP_ERROR, STACK_ADDR, "253"], timeout=20)
    assert r.stdout.split() == [str(W.DEST_UNREACH), str(W.PROTOCOL), "253"], r.stdout + r.stderr
    serve.stop()
    assert serve.counters()["ip.in.drop.unknown_protocol"] == 1


def test_pcap_is_clean_for_tshark(serve):
    _need_ping()
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed; scripts/setup.sh installs it", pytrace=False)
    serve.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20)
    serve.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "4000", STACK_ADDR], timeout=20)
    serve.run(["python3", "-c", UDP_CONNECTED, STACK_ADDR], timeout=20)
    serve.stop()
    count = subprocess.run(["tshark", "-r", str(serve.pcap), "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True, timeout=60)
    frames = count.stdout.split()
    assert count.returncode == 0, count.stderr
    assert len(frames) >= 4 + 2 * 6 + 2           # pings, fragments, UDP + its ICMP error
    # with TUN offloads the kernel's UDP and TCP checksums cross the TUN partial (checked here, not
    # by tshark, which would call them incorrect); everything else tshark checks
    from tests.support.tcp_fixtures import transport_checksums
    partial, wrong = transport_checksums(serve.pcap)
    assert wrong == []
    check = "FALSE" if partial else "TRUE"
    bad = subprocess.run(
        ["tshark", "-r", str(serve.pcap), "-o", "ip.check_checksum:TRUE", "-o", f"udp.check_checksum:{check}",
         "-o", f"tcp.check_checksum:{check}",
         "-Y", "_ws.malformed || _ws.expert.severity >= error || ip.checksum.status == 0 "
               "|| icmp.checksum.status == 0 || udp.checksum.status == 0"],
        capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.strip() == "", bad.stdout
