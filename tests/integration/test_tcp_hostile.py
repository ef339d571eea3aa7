"""A hostile network against `netstack serve`, from the lab namespace: a spoofed SYN flood met by
SYN cookies, blind in-window injection (RFC 5961), every flag combination, and nmap."""
from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import pytest

from tests.support.labkit import STACK_ADDR

pytestmark = pytest.mark.integration

ATTACK = Path(__file__).resolve().parents[1] / "support" / "_tcp_attack.py"
ECHO = 7


def attack(srv, *args, timeout=120) -> dict:
    r = srv.run([sys.executable, str(ATTACK), *map(str, args)], timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def echo_ok(srv, n=5) -> bool:
    res = attack(srv, "echo-clients", STACK_ADDR, ECHO, n, 100, 10)["results"]
    return all(r["ok"] for r in res)


def test_syn_flood_is_met_by_cookies_and_clients_still_get_through(serve_factory):
    srv = serve_factory("--tcp-rto-min", "0.2")
    rss0 = srv.rss_kib()
    flood = {}
    t = threading.Thread(target=lambda: flood.update(attack(srv, "flood", srv.ifname, STACK_ADDR, ECHO,
                                                            100_000, 10_000, timeout=90)))
    t.start()
    try:
        import time
        time.sleep(2.0)                                  # the SYN queue is full of spoofed half-opens
        clients = attack(srv, "echo-clients", STACK_ADDR, ECHO, 50, 100, 10, timeout=60)["results"]
    finally:
        t.join(100)
    rss1 = srv.rss_kib()
    assert echo_ok(srv)                                  # and afterwards
    srv.stop()
    c = srv.counters()
    print(f"flood: {flood}; clients: max {max(r['seconds'] for r in clients)} s; "
          f"cookies sent {c.get('tcp.syncookies.sent')}, validated {c.get('tcp.syncookies.validated')}, "
          f"failed {c.get('tcp.syncookies.failed', 0)}; RSS {rss0} -> {rss1} KiB")
    failed = [r for r in clients if not r["ok"]]
    assert not failed, failed[:5]
    assert max(r["seconds"] for r in clients) < 10
    assert flood["sent"] == 100_000
    assert c.get("tcp.syncookies.sent", 0) > 50_000, c
    assert c.get("tcp.syncookies.validated", 0) >= 1
    assert rss1 - rss0 < 64 * 1024, (rss0, rss1)        # KiB: at most 64 MB more
    assert "Traceback" not in srv.stderr


def test_blind_injection_does_not_disturb_a_transfer(serve_factory):
    srv = serve_factory("--tcp-rto-min", "0.2")
    res = attack(srv, "inject", srv.ifname, STACK_ADDR, ECHO, 4_000_000, timeout=150)
    srv.stop()
    c = srv.counters()
    assert res["injected"] >= 200, res
    assert res["received"] == res["sent"] and res["received_sha256"] == res["sha256"], res
    assert "recv_error" not in res and "send_error" not in res, res
    assert c.get("tcp.estab_resets", 0) == 0
    # Every injected segment was turned away: in-window RSTs and SYNs by RFC 5961's challenge,
    # the data by its ACK (§5.2) or, when the flow had moved on, by the window test.
    turned_away = (c.get("tcp.in.rst_in_window", 0) + c.get("tcp.in.syn_in_window", 0)
                   + c.get("tcp.in.drop.ack_too_old", 0) + c.get("tcp.in.drop.unacceptable", 0))
    assert turned_away > res["injected"] // 4, (res["injected"], turned_away)
    assert "Traceback" not in srv.stderr


def test_every_flag_combination_and_broken_options_leave_the_loop_alive(serve_factory):
    srv = serve_factory()
    res = attack(srv, "fuzz", srv.ifname, STACK_ADDR, ECHO, timeout=60)
    assert res["sent"] == 512 * 3 * 2
    assert echo_ok(srv)
    assert srv.stop() == 0
    c = srv.counters()
    assert c.get("tcp.in_segs", 0) > 0 and c.get("stack.transport_errors", 0) == 0
    assert "Traceback" not in srv.stderr


def test_nmap_syn_scan_with_os_detection_completes_and_the_stack_keeps_serving(serve_factory):
    if shutil.which("nmap") is None:
        pytest.fail("nmap is not installed (scripts/setup.sh installs it)", pytrace=False)
    srv = serve_factory()
    r = srv.run(["nmap", "-n", "-sS", "-O", "-p", "1-1024", "--max-retries", "2", "--host-timeout", "90s",
                 STACK_ADDR], timeout=150)
    assert r.returncode == 0, r.stderr
    assert "7/tcp" in r.stdout and "open" in r.stdout and "25/tcp" in r.stdout
    assert echo_ok(srv)
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr
