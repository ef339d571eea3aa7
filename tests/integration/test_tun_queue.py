"""The TUN's queue under a burst: 5,000 connections closed at once by the kernel.

`netstack serve` sets the TUN's txqueuelen over netlink (``--tun-queue-len``); the kernel
counts what it could not queue for the stack in the device's ``tx_dropped``, which the
stack reads over netlink into ``link.tun.in.drop.queue_full`` (SIGUSR1 report, counters).
With the default queue the burst loses nothing; with Linux's own default of 500 it does
(which shows the count is real).
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest

pytestmark = pytest.mark.integration

N = 5000

# Inside the lab namespace (the kernel side): open N connections to the stack's discard port
# in bounded batches, then close them all at once; wait (bounded) until the kernel holds none.
CLOSE_BURST = r"""
import json, resource, selectors, socket, subprocess, time
N = %d
resource.setrlimit(resource.RLIMIT_NOFILE, (N + 200, N + 200))
socks = []
deadline = time.monotonic() + 120
while len(socks) < N and time.monotonic() < deadline:
    batch = []
    for _ in range(min(100, N - len(socks))):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("198.18.0.2", 9))
        batch.append(s)
    sel = selectors.DefaultSelector()
    for s in batch:
        sel.register(s, selectors.EVENT_WRITE)
    pending, t_end = set(batch), time.monotonic() + 20
    while pending and time.monotonic() < t_end:
        for key, _ in sel.select(1.0):
            sel.unregister(key.fileobj)
            pending.discard(key.fileobj)
    sel.close()
    for s in batch:
        if s in pending or s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            s.close()
        else:
            socks.append(s)
opened = len(socks)
t0 = time.monotonic()
for s in socks:
    s.close()
close_s = time.monotonic() - t0
left = -1
t_end = time.monotonic() + 60
while time.monotonic() < t_end:
    out = subprocess.run(["ss", "-tanH", "dst", "198.18.0.2"], capture_output=True, text=True).stdout
    left = len([l for l in out.splitlines() if l.split() and l.split()[0] not in ("TIME-WAIT",)])
    if left == 0:
        break
    time.sleep(0.2)
print(json.dumps({"opened": opened, "close_s": close_s, "left": left}))
"""


def _burst(srv) -> dict:
    r = srv.python(CLOSE_BURST % N, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _usr1_report(srv) -> str:
    """The SIGUSR1 report (on stderr) once it carries the TUN's line."""
    since = len(srv.stderr_so_far)
    srv.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = srv.stderr_so_far[since:]
        if re.search(r"^tun .*dropped$", text, re.M):
            return text
        time.sleep(0.05)
    raise AssertionError("no TUN line in the SIGUSR1 report:\n" + srv.stderr_so_far[since:])


def test_5000_closes_at_once_drop_nothing_at_the_tun(serve_factory):
    srv = serve_factory("--smtp-port", "0")
    r = srv.run(["ip", "-d", "link", "show", srv.ifname], timeout=10)
    assert re.search(r"qlen 10000\b", r.stdout), r.stdout            # set over netlink by the lab
    res = _burst(srv)
    assert res["opened"] == N and res["left"] == 0, res
    text = _usr1_report(srv)
    assert re.search(r"^tun \S+: queue 10000 packets; kernel to stack \d+ packets, 0 dropped \(queue full\)", text,
                     re.M), text
    assert re.search(r"^\s+0 tun\.in\.drop\.queue_full$", text, re.M), text
    r = srv.netstack("stats", "--json", "--netns", srv.netns)          # live, over the control socket
    assert r.returncode == 0, r.stderr
    live = json.loads(r.stdout)["counters"]
    assert live["link.tun.in.drop.queue_full"] == 0 and "link.tun.out.drop" in live, live
    assert srv.stop() == 0
    counters = srv.counters()
    assert counters["link.tun.in.drop.queue_full"] == 0 and counters["link.tun.out.drop"] == 0
    print(f"\n{N} closes in {res['close_s'] * 1000:.0f} ms: TUN drops 0 with the default queue")


def test_the_same_burst_overflows_linux_default_queue_and_the_drops_are_counted(serve_factory):
    srv = serve_factory("--smtp-port", "0", "--tun-queue-len", "500")
    res = _burst(srv)
    assert res["opened"] == N, res
    _usr1_report(srv)
    time.sleep(1.5)                                                   # the once-a-second reading
    r = srv.netstack("stats", "--json", "--netns", srv.netns)
    live = json.loads(r.stdout)["counters"]["link.tun.in.drop.queue_full"]
    assert srv.stop() == 0
    drops = srv.counters()["link.tun.in.drop.queue_full"]
    assert 0 < live <= drops, (live, drops)
    print(f"\n{N} closes with txqueuelen 500: {drops} packets dropped at the TUN")
    assert drops > 0
