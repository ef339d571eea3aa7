"""SMTP on the stack against hostile clients from the kernel side of the lab: slow clients at
one byte a second (the per-line deadline, the minimum data rate, and 600 of them against a
normal delivery), 110 RCPTs on one transaction, and a 10 MB line in DATA."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.labkit import _env

pytestmark = pytest.mark.integration

STACK = "198.18.0.2"

TRICKLE = r"""
import json, socket, time
s = socket.create_connection(("198.18.0.2", 25), timeout=30)
f = s.makefile("rb")
greeting = f.readline()
PRE
f.close()
t0 = time.monotonic()
reply, sent = b"", 0
s.settimeout(1.0)
for b in PAYLOAD:                      # one byte a second, bounded by the payload's length
    try:
        s.sendall(bytes([b]))
        sent += 1
    except OSError:
        break
    try:
        reply = s.recv(4096)
    except socket.timeout:
        continue
    break
print(json.dumps({"reply": reply.decode(), "after": time.monotonic() - t0, "sent": sent}))
"""


def _trickle(srv, payload: bytes, pre: str = "") -> dict:
    code = TRICKLE.replace("PRE", pre).replace("PAYLOAD", repr(payload))
    r = srv.python(code, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_command_line_at_one_byte_a_second_meets_the_line_deadline(serve_factory, tmp_path):
    srv = serve_factory("--maildir", str(tmp_path / "mail"), "--smtp-line-timeout", "3")
    res = _trickle(srv, b"EHLO a-slow-client.example.test\r\n")
    assert res["reply"] == "421 localhost Error: command line not completed in time\r\n", res
    assert 3 <= res["sent"] < 33, res                 # cut at the deadline (3 s), not at the line's end


def test_data_at_one_byte_a_second_fails_the_minimum_rate(serve_factory, tmp_path):
    srv = serve_factory("--maildir", str(tmp_path / "mail"), "--smtp-min-data-rate", "100",
                        "--smtp-data-rate-window", "3")
    pre = ('s.sendall(b"EHLO c\\r\\nMAIL FROM:<a@remote.test>\\r\\nRCPT TO:<bob@example.test>\\r\\nDATA\\r\\n")\n'
           'while not f.readline().startswith(b"354"): pass')
    res = _trickle(srv, b"Subject: slow\r\n\r\n" + b"x" * 40, pre)
    assert res["reply"] == "421 4.4.2 localhost Error: minimum data rate not met (100 octets/s)\r\n", res
    assert 3 <= res["sent"] < 56, res                 # cut at the window's end, not at the message's
    assert not os.path.exists(tmp_path / "mail" / "bob")


# 600 clients at one byte a second, reconnecting when closed, bounded in time.
SLOW_CROWD = r"""
import asyncio, json, resource, sys, time
N, DURATION = %d, %f
resource.setrlimit(resource.RLIMIT_NOFILE, (N + 200, N + 200))
stats = {"connects": 0, "greeted": 0, "closed_421": 0, "held": 0}

async def one(i, stop_at):
    while time.monotonic() < stop_at:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("198.18.0.2", 25), 10)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(1)
            continue
        stats["connects"] += 1
        try:
            line = await asyncio.wait_for(r.readline(), 10)
            if line.startswith(b"220"):
                stats["greeted"] += 1
                stats["held"] += 1
                try:
                    for b in b"EHLO slow%%d.example.test\r\n" %% i:
                        if time.monotonic() >= stop_at:
                            break
                        w.write(bytes([b]))
                        await w.drain()
                        try:
                            line = await asyncio.wait_for(r.readline(), 1.0)
                        except asyncio.TimeoutError:
                            continue
                        break
                finally:
                    stats["held"] -= 1
            if line.startswith(b"421"):
                stats["closed_421"] += 1
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            w.close()
        await asyncio.sleep(1)

async def main():
    stop_at = time.monotonic() + DURATION
    tasks = []
    for i in range(N):
        tasks.append(asyncio.create_task(one(i, stop_at)))
        if i %% 50 == 49:
            await asyncio.sleep(0.05)
    t_ready = time.monotonic() + 15
    while stats["held"] < 480 and time.monotonic() < t_ready:
        await asyncio.sleep(0.1)
    print(json.dumps({"ready": dict(stats)}), flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({"done": dict(stats)}), flush=True)

asyncio.run(main())
"""

NORMAL = r"""
import json, smtplib, time
t0 = time.monotonic()
c = smtplib.SMTP("198.18.0.2", 25, timeout=5)
c.ehlo("normal.example.test")
refused = c.sendmail("alice@remote.test", ["carol@example.test"], b"Subject: normal\r\n\r\nhello\r\n")
c.quit()
print(json.dumps({"elapsed": time.monotonic() - t0, "refused": {k: list(map(str, v)) for k, v in refused.items()}}))
"""


def test_600_slow_clients_cannot_stop_a_normal_delivery(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    crowd = subprocess.Popen(["ip", "netns", "exec", srv.netns, sys.executable, "-c", SLOW_CROWD % (600, 40.0)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        first = json.loads(crowd.stdout.readline())      # bounded: the crowd reports within 15 s
        assert first["ready"]["held"] >= 480, first       # the server is (nearly) full of slow clients
        time.sleep(3)                                     # they have been stalled longer than --smtp-shed-after
        t0 = time.monotonic()
        r = srv.python(NORMAL, timeout=20)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        res = json.loads(r.stdout.strip().splitlines()[-1])
        assert res["refused"] == {} and res["elapsed"] < 5.0, res
        print(f"\nnormal delivery among 600 slow clients: {res['elapsed'] * 1000:.0f} ms "
              f"(subprocess {elapsed:.1f} s); crowd at start: {first['ready']}")
    finally:
        if crowd.poll() is None:
            crowd.send_signal(signal.SIGTERM)             # our own child, by PID
        try:
            crowd.wait(timeout=15)
        except subprocess.TimeoutExpired:
            crowd.kill()
            crowd.wait(timeout=5)
        crowd.stdout.close()
        crowd.stderr.close()
    since = len(srv.stderr_so_far)
    srv.send_signal(signal.SIGUSR1)
    text = srv.wait_stderr("stalled sessions shed", since=since)      # the report goes to stderr
    assert srv.stop() == 0
    (copy,) = [open(os.path.join(maildir, "carol", "new", f), "rb").read()
               for f in os.listdir(maildir / "carol" / "new")]
    assert copy.endswith(b"Subject: normal\r\n\r\nhello\r\n")
    shed = int(text.split(" stalled sessions shed")[0].rsplit(", ", 1)[1])
    assert shed >= 1, text


RCPTS_110 = r"""
import json, smtplib
c = smtplib.SMTP("198.18.0.2", 25, timeout=150)      # 100 durable copies (fsync each) on a busy disk
c.ehlo("many.example.test")
rcpts = ["u%d@example.test" % i for i in range(110)]
refused = c.sendmail("alice@remote.test", rcpts, b"Subject: many\r\n\r\nto 110\r\n")
noop = c.noop()
c.quit()
print(json.dumps({"refused": {k: [v[0], v[1].decode()] for k, v in refused.items()}, "noop": noop[0]}))
"""


def test_110_rcpts_get_452_for_the_last_ten_and_the_session_goes_on(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    r = srv.python(RCPTS_110, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["refused"] == {f"u{i}@example.test": [452, "4.5.3 Error: too many recipients"] for i in range(100, 110)}
    assert res["noop"] == 250                              # not cut off with 421 4.7.0
    assert len(os.listdir(maildir)) == 100
    assert srv.stop() == 0


LONG_LINE = r"""
import json, socket
s = socket.create_connection(("198.18.0.2", 25), timeout=60)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return line.decode()
reply()
s.sendall(b"EHLO c\r\n"); reply()
s.sendall(b"MAIL FROM:<a@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<dave@example.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); data = reply()
block = b"L" * 65536
for _ in range(160):                                 # 10 MiB, no CRLF
    s.sendall(block)
s.sendall(b"\r\n.\r\n")
final = reply()
s.sendall(b"NOOP\r\n"); noop = reply()
s.sendall(b"QUIT\r\n"); reply()
print(json.dumps({"data": data, "final": final, "noop": noop}))
"""


def test_a_10mb_line_is_refused_with_500_552_in_bounded_memory(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    base = srv.rss_kib()
    r = srv.python(LONG_LINE, timeout=120)
    grew = srv.rss_kib() - base
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["data"].startswith("354")
    assert res["final"] == ("500 5.5.2 Error: line too long in message (at most 1000 octets with CRLF, "
                            "RFC 5321 4.5.3.1.6)\r\n"), res
    assert res["noop"].startswith("250 ")
    assert not os.path.exists(maildir / "dave")
    print(f"\n10 MiB line: server RSS grew {grew} KiB")
    assert grew < 8 * 1024, grew                          # the line (10 MiB) was never held
    assert srv.stop() == 0
