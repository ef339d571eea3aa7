"""`netstack serve`: ready line, signals, teardown on every path, one-line errors.

Bad options, refused before anything is created, are in tests/system/test_serve_cli_options.py.
"""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.support.labkit import (PEER_ADDR, REPO, STACK_ADDR, ServeProcess, _env, assert_one_line_error,
                                 link_exists_in_root, netns_exists, remove_netns_we_created, serve_cmd)
from tests.support.nstest import require_tun, unique_lab_name

pytestmark = pytest.mark.integration


def device_in_netns(netns, ifname) -> bool:
    r = subprocess.run(["ip", "netns", "exec", netns, "ip", "-o", "link", "show", ifname], capture_output=True,
                       timeout=10)
    return r.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ready_then_signal_tears_everything_down(serve_factory, sig):
    srv = serve_factory()
    assert re.search(r"ready: 198\.18\.0\.2 in netns \S+ on \S+", srv.stdout)
    assert netns_exists(srv.netns) and device_in_netns(srv.netns, srv.ifname)
    assert not link_exists_in_root(srv.ifname)                 # the device lives only in the lab namespace
    assert srv.stop(sig) == 0
    assert not netns_exists(srv.netns)
    assert not link_exists_in_root(srv.ifname)
    # the counters at exit: at least the TUN's drop counters, read from the device
    assert re.search(r"^link:\n(\s+\d+ .*\n)*\s+0 tun\.in\.drop\.queue_full$", srv.stderr, re.M), srv.stderr


def test_sigusr1_prints_counters_and_keeps_running(serve_factory):
    srv = serve_factory()
    r = srv.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", STACK_ADDR], timeout=20)
    assert r.returncode == 0
    srv.send_signal(signal.SIGUSR1)
    report = srv.wait_stderr("echo_reply")                              # the report goes to stderr
    assert re.search(r"^\s+2 out\.echo_reply$", report, re.M), report
    assert "echo_reply" not in srv.stdout                               # stdout carries data only
    assert srv.proc.poll() is None
    r = srv.run(["ping", "-c", "1", "-W", "2", STACK_ADDR], timeout=20)
    assert r.returncode == 0
    assert srv.stop() == 0
    assert re.search(r"^\s+3 out\.echo_reply$", srv.stderr, re.M)      # and at exit


def test_existing_namespace_is_used_and_kept(tmp_path):
    require_tun()
    from pyroute2 import netns
    name = unique_lab_name()
    netns.create(name)
    try:
        srv = ServeProcess(tmp_path, name=name)
        srv.start()
        try:
            assert srv.run(["ping", "-c", "1", "-W", "2", STACK_ADDR], timeout=20).returncode == 0
        finally:
            srv.stop()
        assert netns_exists(name)                               # not ours to delete
        assert not device_in_netns(name, name)                  # but our device is gone
    finally:
        remove_netns_we_created(name)


def test_device_name_in_use_in_root_namespace():
    require_tun()
    from netstack.link.tun import TunLink
    name = unique_lab_name()
    holder = TunLink(name)          # no address, never up: only occupies the name
    ns = unique_lab_name()
    try:
        r = serve_cmd("--netns", ns, "--ifname", name)
        assert_one_line_error(r, r"already in use")
        assert not netns_exists(ns)                             # set-up failure removed what it created
    finally:
        holder.close()
        remove_netns_we_created(ns)


def test_device_name_in_use_inside_the_namespace(lab):
    r = serve_cmd("--netns", lab.netns, "--ifname", lab.ifname)
    assert_one_line_error(r, r"already in use")
    assert netns_exists(lab.netns) and device_in_netns(lab.netns, lab.ifname)    # somebody else's lab untouched


def test_not_root_one_line_exit_2():
    require_tun()
    ns = unique_lab_name()
    # stay uid 0 but drop CAP_NET_ADMIN from every set
    prefix = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", "--"]
    r = serve_cmd("--netns", ns, "--ifname", ns, prefix=prefix)
    assert_one_line_error(r, r"needs root or CAP_NET_ADMIN")
    assert not netns_exists(ns)


def test_no_dev_net_tun_one_line_exit_2(monkeypatch, capsys):
    from netstack.cli import main
    from netstack.link import lab
    if not lab.have_net_admin():
        pytest.skip("needs CAP_NET_ADMIN to get past the first check")
    monkeypatch.setattr(lab, "TUN_PATH", "/nonexistent/net/tun")
    ns = unique_lab_name()
    assert main(["serve", "--netns", ns, "--ifname", ns]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nonexistent/net/tun is missing" in err[0]
    assert not netns_exists(ns)


def test_trace_prints_packets(serve_factory):
    srv = serve_factory("--trace")
    srv.run(["ping", "-c", "1", "-W", "2", STACK_ADDR], timeout=20)
    srv.stop()
    lines = [l for l in srv.stdout.splitlines() if "ICMP echo" in l]
    assert any(l.startswith("<") and "echo request" in l and "198.18.0.1 > 198.18.0.2" in l for l in lines), lines
    assert any(l.startswith(">") and "echo reply" in l for l in lines), lines


def test_faults_option_impairs_real_traffic(serve_factory):
    srv = serve_factory("--faults", "loss=30%,seed=7")
    r = srv.run(["ping", "-c", "40", "-i", "0.02", "-W", "1", STACK_ADDR], timeout=60)
    srv.stop()
    m = re.search(r"(\d+) received", r.stdout)
    got = int(m.group(1))
    assert 5 <= got <= 35, r.stdout                          # about 0.7 * 0.7 * 40 = 20 expected
    c = srv.counters()
    assert c["faults.rx.lost"] + c["faults.tx.lost"] > 0
    assert c["faults.rx.packets"] >= 40                     # every echo request met the injector


def test_repeated_signals_do_not_cut_teardown_short(serve_factory):
    srv = serve_factory()
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        srv.send_signal(sig)
    assert srv.stop() in (0, 130)
    assert not netns_exists(srv.netns)
    assert not link_exists_in_root(srv.ifname)


def test_sigterm_during_setup_tears_down(tmp_path):
    require_tun()
    for delay in (0.05, 0.15, 0.3):
        srv = ServeProcess(tmp_path, name=unique_lab_name())
        srv.proc = subprocess.Popen(srv.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=_env(), cwd=str(REPO))
        try:
            time.sleep(delay)
            srv.proc.send_signal(signal.SIGTERM)
            srv.proc.communicate(timeout=15)
            assert not netns_exists(srv.netns), f"namespace left after SIGTERM at {delay}s"
        finally:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait(timeout=5)
            remove_netns_we_created(srv.netns)


def test_state_log_records_a_kernel_connection(serve_factory, tmp_path):
    from netstack.statelog import read_state_log
    log_path = tmp_path / "states.jsonl"
    srv = serve_factory("--state-log", str(log_path))
    r = srv.python("import socket\n"
                   f"s = socket.create_connection(('{STACK_ADDR}', 7), timeout=5)\n"
                   "s.sendall(b'hi\\n'); assert s.recv(10) == b'hi\\n'; s.close()\n"
                   "import time; time.sleep(0.5)\n")
    assert r.returncode == 0, r.stderr
    assert srv.stop() == 0
    recs = read_state_log(str(log_path))
    path = [(x.old.value, x.new.value) for x in recs]
    assert path[:2] == [("LISTEN", "SYN-RECEIVED"), ("SYN-RECEIVED", "ESTABLISHED")], path
    assert ("ESTABLISHED", "CLOSE-WAIT") in path and ("LAST-ACK", "CLOSED") in path
    assert recs[0].local == f"{STACK_ADDR}:7" and recs[0].remote.startswith(f"{PEER_ADDR}:")
    assert recs[0].cause["kind"] == "segment" and recs[0].cause["flags"] == "S"
    assert abs(recs[0].time - time.time()) < 120          # wall-clock seconds, like the pcap's


def test_state_log_records_recovery_events_of_a_lossy_transfer(serve_factory, tmp_path):
    from netstack.statelog import read_log
    log_path = tmp_path / "states.jsonl"
    # the stack's segments to the kernel are lost (10 %): its TCP must recover, and say so in the log
    # (per-MSS segments: with offloads 300 KB would be a handful of super-segments, and might lose none)
    srv = serve_factory("--state-log", str(log_path), "--faults", "loss=10%,seed=3,directions=tx", "--no-offload")
    r = srv.python("import socket\n"
                   f"s = socket.create_connection(('{STACK_ADDR}', 19), timeout=10)\n"
                   "got = 0\n"
                   "while got < 300000:\n"
                   "    b = s.recv(65536)\n"
                   "    assert b\n"
                   "    got += len(b)\n"
                   "s.close()\n")
    assert r.returncode == 0, r.stderr
    assert srv.stop() == 0
    transitions, events = read_log(str(log_path))
    assert transitions and events, "a lossy transfer left no recovery event in the state log"
    mine = [e for e in events if e.local == f"{STACK_ADDR}:19"]
    assert mine and all(e.remote.startswith(f"{PEER_ADDR}:") for e in mine)
    kinds = {e.kind.value for e in mine}
    assert kinds & {"fast-retransmit", "sack-recovery", "rto", "tlp"}, kinds
    assert all(abs(e.time - time.time()) < 120 for e in mine)           # wall-clock seconds
    lines = log_path.read_text().splitlines()
    assert sum('"event": ' in line for line in lines) == len(events)
