"""`netstack trace` reads live captures as tcpdump reads them: a pcapng file written by
dumpcap (tshark's capture engine) and a pcap file written by tcpdump, both of a kernel TCP
conversation on the loopback interface.  Capturing needs root, hence this tier.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import time

from tests.support.nstest import require_tun
from tests.support.trace_tools import ours, run_tcpdump, tcpdump, tool, tshark  # noqa: F401 (fixtures)


def _loopback_conversation(port: int) -> None:
    """Handshake, a greeting, a HELO, both FINs: a kernel TCP conversation on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", port)) as srv:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        s, _ = srv.accept()
        s.settimeout(5)
        s.sendall(b"220 netstack test\r\n")
        c.recv(100)
        c.sendall(b"HELO x\r\n")
        s.recv(100)
        c.close()
        s.close()


def _capture_and_compare(capsys, tcpdump, argv, ready: str, path) -> None:
    require_tun()                       # for root: capturing needs it (fails rather than skips with CI=true)
    with socket.socket() as probe:      # a free port for the capture filter, released for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*argv, f"tcp port {port}"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 20
        seen = ""
        while ready not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, f"the capture did not start: {seen}"
            seen += proc.stderr.readline()
        time.sleep(0.3)
        _loopback_conversation(port)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)                 # both flush and close their file on SIGINT
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    lines = ours(capsys, path)
    fields = lambda ls: [re.search(r"(\S+ > \S+: Flags \[[^\]]*\]).*?((?:, seq [\d:]+)?(?:, ack \d+)?, win \d+)",
                                   l).groups() for l in ls if "Flags [" in l]
    theirs = fields(run_tcpdump(tcpdump, "-n", "-r", path))
    assert len(theirs) >= 8 and fields(lines) == theirs        # handshake, two data segments, two FINs
    assert sum("Flags [S]" in l for l in lines) == 1


def test_live_pcapng_written_by_dumpcap(tmp_path, tshark, tcpdump, capsys):
    path = tmp_path / "live.pcapng"
    _capture_and_compare(capsys, tcpdump, [tool("dumpcap"), "-q", "-i", "lo", "-a", "duration:20", "-w", str(path),
                                           "-f"], "Capturing on", path)
    assert path.read_bytes()[:4] == b"\n\r\r\n"                # pcapng, dumpcap's default


def test_live_pcap_written_by_tcpdump(tmp_path, tcpdump, capsys):
    path = tmp_path / "live.pcap"
    # -Z root: Debian's tcpdump otherwise drops to user tcpdump, who cannot write into pytest's tmp_path;
    # --immediate-mode: without it, packets still in the kernel's ring block at SIGINT are lost
    _capture_and_compare(capsys, tcpdump, [tcpdump, "-Z", "root", "--immediate-mode", "-i", "lo", "-U", "-w",
                                           str(path)], "listening on", path)
