"""`netstack serve` as a daemon and as something to ask: teardown on SIGHUP/SIGINT/SIGTERM
with the pcap flushed, the ready line, sd_notify, --pcap-flush packet, and the control
socket under /run/netstack with `netstack ss` and `netstack stats` against it."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from netstack.capture.pcap import read_pcap
from tests.support.labkit import PEER_ADDR, STACK_ADDR, _env, link_exists_in_root, netns_exists

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOLD = f"""
import socket, sys
s = socket.create_connection(("{STACK_ADDR}", 7), timeout=10)
s.sendall(b"hi\\n")
print(s.recv(100).decode(), end="", flush=True)
sys.stdin.readline()
"""


def _icmp_echo_packets(path) -> int:
    return sum(1 for r in read_pcap(str(path)) if len(r.data) > 20 and r.data[9] == 1)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_each_stop_signal_tears_down_and_flushes_the_pcap(serve_factory, sig):
    srv = serve_factory()
    control = f"/run/netstack/{srv.netns}.sock"
    assert os.path.exists(control)
    assert srv.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20).returncode == 0
    assert srv.stop(sig) == 0
    assert not netns_exists(srv.netns)
    assert not link_exists_in_root(srv.ifname)
    assert not os.path.exists(control)
    assert _icmp_echo_packets(srv.pcap) == 6                 # 3 requests, 3 replies: the buffer reached the file
    assert "Traceback" not in srv.stderr


def test_ready_line_lists_address_and_services(serve_factory):
    srv = serve_factory()
    line = next(l for l in srv.stdout.splitlines() if "ready" in l)
    assert re.search(rf"ready: {re.escape(STACK_ADDR)} in netns {srv.netns} ", line), line
    assert "services: echo 7, discard 9, chargen 19, smtp 25;" in line, line
    assert f"control socket /run/netstack/{srv.netns}.sock" in line
    other = serve_factory("--no-services", "--smtp-port", "2525")
    line = next(l for l in other.stdout.splitlines() if "ready" in l)
    assert "services: smtp 2525;" in line, line


def test_sd_notify_ready_and_stopping(serve_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(20)
        srv = serve_factory(env={"NOTIFY_SOCKET": path})
        fields = dict(line.split("=", 1) for line in s.recv(4096).decode().splitlines())
        assert fields["READY"] == "1" and fields["MAINPID"] == str(srv.proc.pid)
        assert STACK_ADDR in fields["STATUS"]
        assert srv.run(["ping", "-c", "1", "-W", "2", STACK_ADDR], timeout=20).returncode == 0  # ready meant it
        srv.stop()
        assert s.recv(4096) == b"STOPPING=1"


def test_pcap_flush_packet_writes_while_running(serve_factory):
    srv = serve_factory("--pcap-flush", "packet")
    assert srv.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20).returncode == 0
    deadline = time.monotonic() + 5
    while _icmp_echo_packets(srv.pcap) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _icmp_echo_packets(srv.pcap) == 6                 # on disk while the server still runs
    assert srv.proc.poll() is None
    srv.stop()


def test_ss_and_stats_on_the_running_stack(serve_factory):
    srv = serve_factory()
    path = f"/run/netstack/{srv.netns}.sock"
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    holder = subprocess.Popen(["ip", "netns", "exec", srv.netns, sys.executable, "-c", HOLD],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "hi\n"
        r = srv.netstack("ss", "-tanio", "--netns", srv.netns)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        for port, backlog in ((7, 128), (9, 128), (19, 128), (25, 100)):      # accept queue, backlog
            assert any(l.split()[:4] == ["LISTEN", "0", str(backlog), f"{STACK_ADDR}:{port}"] for l in lines), \
                r.stdout
        (i,) = [n for n, l in enumerate(lines) if l.startswith("ESTAB")]
        assert f"{STACK_ADDR}:7" in lines[i] and f"{PEER_ADDR}:" in lines[i]
        assert re.search(r"\bmss:1448\b", lines[i + 1]) and "cwnd:10 cwnd_bytes:" in lines[i + 1], lines[i + 1]
        r = srv.netstack("stats", "--json", "--netns", srv.netns)
        data = json.loads(r.stdout)
        assert data["mib"]["TcpPassiveOpens"] == 1 and data["gauges"]["TcpCurrEstab"] == 1
        assert data["pid"] == srv.proc.pid
        r = srv.netstack("stats", "--netns", srv.netns)
        assert re.search(r"^TcpCurrEstab\s+1$", r.stdout, re.M), r.stdout
        # a malformed request: an error reply, and the stack keeps running
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"{not json\n")
            reply = json.loads(s.makefile("rb").readline())
        assert reply["ok"] is False and "not JSON" in reply["error"]
        assert srv.run(["ping", "-c", "1", "-W", "2", STACK_ADDR], timeout=20).returncode == 0
        assert srv.netstack("ss", "--netns", srv.netns).returncode == 0
    finally:
        holder.communicate("\n", timeout=10)
    assert srv.stop() == 0
    assert not os.path.exists(path)
    r = srv.netstack("ss", "--netns", srv.netns)
    assert r.returncode == 1 and "no running stack" in r.stderr


def test_control_socket_refuses_other_users(serve_factory):
    srv = serve_factory()
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            f"try:\n    s.connect('/run/netstack/{srv.netns}.sock')\nexcept PermissionError:\n    sys.exit(3)\n")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30, env=_env(), cwd="/")
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_pcap_to_stdout_with_the_ready_line_on_stderr(tmp_path):
    """`--pcap -` (tcpdump's -w -): stdout carries the capture alone."""
    from tests.support.labkit import REPO
    from tests.support.nstest import require_tun, unique_lab_name
    require_tun()
    name = unique_lab_name()
    proc = subprocess.Popen([sys.executable, "-m", "netstack", "serve", "--netns", name, "--ifname", name,
                             "--addr", STACK_ADDR, "--peer", f"{PEER_ADDR}/24", "--pcap", "-", "--trace",
                             "--no-services", "--maildir", str(tmp_path / "mail"),
                             "--control-socket", str(tmp_path / "ctl.sock")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=str(REPO))
    try:
        deadline = time.monotonic() + 20
        err = b""
        while b"ready" not in err and time.monotonic() < deadline and proc.poll() is None:
            err += proc.stderr.readline()
        assert b"ready" in err, err
        r = subprocess.run(["ip", "netns", "exec", name, "ping", "-c", "2", "-i", "0.2", "-W", "2", STACK_ADDR],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)                # our own child, by PID
        out, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, rest
    assert not netns_exists(name)
    path = tmp_path / "stdout.pcap"
    path.write_bytes(out)
    assert _icmp_echo_packets(path) >= 4                # two requests, two replies: the pcap alone on stdout
    assert b"ICMP echo request" in err + rest            # the trace lines went to stderr
