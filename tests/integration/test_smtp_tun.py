"""SMTP on netstack's own TCP over the TUN: real clients (smtplib, swaks) from the lab namespace.

`netstack serve` runs the SMTP server on the stack (198.18.0.2:25); every
client runs on the kernel side inside the lab namespace.  Delivered files are
compared byte for byte (sha256) with what was sent.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time

import pytest

from smtp.auth import set_user
from smtp.tls import generate_self_signed

STACK = "198.18.0.2"


def maildir_files(maildir) -> dict[str, list[bytes]]:
    out = {}
    if not os.path.isdir(maildir):
        return out
    for box in sorted(os.listdir(maildir)):
        new = os.path.join(maildir, box, "new")
        out[box] = [open(os.path.join(new, f), "rb").read() for f in sorted(os.listdir(new))]
    return out


def body_after_trace(data: bytes) -> bytes:
    """The message after Return-Path: and the folded Received: header."""
    i = data.index(b"\r\nReceived: ") + 2
    while True:
        k = data.index(b"\r\n", i)
        if data[k + 2:k + 3] not in (b"\t", b" "):
            return data[k + 2:]
        i = k + 2


def run_py(srv, code: str, timeout: float = 60) -> dict:
    r = srv.python(code, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


SMTPLIB = r"""
import hashlib, json, smtplib, ssl, sys
out = {}
msg = b"Subject: tun\r\n\r\n" + b"".join(b"line %07d .\r\n.dot line\r\n" % i for i in range(SIZE))
c = smtplib.SMTP("198.18.0.2", 25, timeout=60)
c.ehlo("client.test")
out["ext"] = sorted(c.esmtp_features)
out["refused"] = {k: [v[0], v[1].decode()] for k, v in c.sendmail("alice@remote.test", RCPTS, msg).items()}
c.quit()
out["sha"] = hashlib.sha256(msg).hexdigest()
print(json.dumps(out))
"""


def test_smtplib_plain_several_recipients_and_10mb(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    small = run_py(srv, SMTPLIB.replace("SIZE", "50").replace(
        "RCPTS", '["bob@example.test", "carol@localhost", "dave@[198.18.0.2]", "x@elsewhere.test"]'))
    assert small["refused"] == {"x@elsewhere.test": [550, "5.7.1 <x@elsewhere.test>: Relay access denied"]}
    assert {"pipelining", "8bitmime", "smtputf8", "chunking", "enhancedstatuscodes", "size"} <= set(small["ext"])
    big = run_py(srv, SMTPLIB.replace("SIZE", "400000").replace("RCPTS", '["erin@example.test"]'), timeout=120)
    got = maildir_files(maildir)
    for box in ("bob", "carol", "dave"):
        (copy,) = got[box]
        assert hashlib.sha256(body_after_trace(copy)).hexdigest() == small["sha"]
        assert b"Received: from client.test ([198.18.0.1])\r\n" in copy
    (copy,) = got["erin"]
    assert len(copy) > 10_000_000
    assert hashlib.sha256(body_after_trace(copy)).hexdigest() == big["sha"]
    srv.stop()
    assert "queued " in srv.stderr and "client=198.18.0.1:" in srv.stderr


def test_8bitmime_smtputf8_starttls_auth(serve_factory, tmp_path):
    cert, key, users = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "users"
    generate_self_signed(str(cert), str(key), hostname="mx.example.test", ips=(STACK,))
    set_user(str(users), "alice", "s3cret", ln=4)
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir), "--tls-cert", str(cert), "--tls-key", str(key),
                        "--users", str(users))
    code = r"""
import json, smtplib, ssl
out = {}
ctx = ssl.create_default_context(cafile=CERT)
c = smtplib.SMTP("198.18.0.2", 25, timeout=30)
c.ehlo("client.test")
out["before"] = sorted(c.esmtp_features)
c.starttls(context=ctx)
c.ehlo("client.test")
out["after"] = sorted(c.esmtp_features)
c.login("alice", "s3cret")
msg = "Subject: grüße\r\n\r\nnaïve café\r\n".encode()
c.sendmail("jörg@bücher.test", ["Björn@example.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
c.quit()
print(json.dumps(out))
""".replace("CERT", repr(str(cert)))
    out = run_py(srv, code)
    assert "starttls" in out["before"] and "auth" not in out["before"]
    assert "auth" in out["after"] and "starttls" not in out["after"]
    (copy,) = maildir_files(maildir)["bj=C3=B6rn"]
    assert body_after_trace(copy) == "Subject: grüße\r\n\r\nnaïve café\r\n".encode()
    assert b" with UTF8SMTPSA (version=TLSv1.3" in copy


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_plain_pipeline_tls(serve_factory, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(str(cert), str(key), ips=(STACK,))
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir), "--tls-cert", str(cert), "--tls-key", str(key))
    for extra in ([], ["--pipeline"], ["-tls"]):
        r = srv.run(["swaks", "--server", STACK, "--port", "25", "--to", "bob@example.test", "--from",
                     "alice@remote.test", "--helo", "swaks.test", *extra], timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "<-  250 2.0.0 Ok: queued as " in r.stdout or "<~  250 2.0.0 Ok: queued as " in r.stdout
    copies = maildir_files(maildir)["bob"]
    assert len(copies) == 3
    assert sum(b"with ESMTPS (version=TLSv1.3" in c for c in copies) == 1


SMUGGLE = r"""
import json, socket
out = []
for seq in [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r.\r"]:
    s = socket.create_connection(("198.18.0.2", 25), timeout=20)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO c\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nhello" + seq +
              b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n")
    out.append([f.readline().decode() for _ in range(5)])
    s.close()
print(json.dumps(out))
"""


def test_smuggling_sequences_give_one_message_each(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    out = run_py(srv, SMUGGLE)
    for replies in out:
        assert replies[:3] == ["250 2.1.0 Ok\r\n", "250 2.1.5 Ok\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n"]
        assert replies[3].startswith("250 2.0.0 Ok: queued as ")
        assert replies[4] == "221 2.0.0 localhost Bye\r\n"
    got = maildir_files(maildir)
    assert list(got) == ["bob"] and len(got["bob"]) == 4      # no "victim" mailbox at all


CONCURRENT = r"""
import asyncio, json
from smtp.client import SmtpClient
async def client(c):
    cl = await SmtpClient.connect(asyncio.open_connection, "198.18.0.2", 25, local_hostname=f"c{c}")
    await cl.ehlo()
    for i in range(20):
        await cl.send("a@remote.test", [f"user{c % 5}@example.test"], b"Message-ID: <%d@t>\r\n\r\nbody %d\r\n" % (c * 100 + i, i))
    await cl.quit()
async def main():
    await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(50))), 240)
asyncio.run(main())
print(json.dumps({"ok": True}))
"""


def test_50_clients_20_messages_each_exactly_once(serve_factory, tmp_path):
    maildir = tmp_path / "mail"
    # --log-level ERROR: 1,000 "queued" lines would fill the stderr pipe, which the fixture reads only at stop()
    srv = serve_factory("--maildir", str(maildir), "--log-level", "ERROR")
    run_py(srv, CONCURRENT, timeout=300)
    ids = []
    for box, copies in maildir_files(maildir).items():
        for copy in copies:
            n = int(copy.split(b"Message-ID: <")[1].split(b"@")[0])
            assert box == f"user{(n // 100) % 5}"
            ids.append(n)
    assert sorted(ids) == sorted(c * 100 + i for c in range(50) for i in range(20))


KILL = r"""
import json, socket, sys
s = socket.create_connection(("198.18.0.2", 25), timeout=20)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
for _ in range(11):
    f.readline()
s.sendall(b"Subject: k\r\n\r\n" + (b"x" * 98 + b"\r\n") * 1000 + (b".\r\n" if FINISH else b""))
reply = f.readline().decode() if FINISH else ""
print(json.dumps({"reply": reply}))
"""


@pytest.mark.parametrize("finish", [False, True])
def test_sigkill_mid_data_and_after_250(serve_factory, tmp_path, finish):
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir))
    out = run_py(srv, KILL.replace("FINISH", str(finish)))
    if not finish:
        time.sleep(0.5)            # the server holds the partial DATA
    srv.send_signal(signal.SIGKILL)
    srv.stop()
    got = maildir_files(maildir)
    if finish:
        assert out["reply"].startswith("250 2.0.0 Ok: queued as ")
        (copy,) = got["bob"]
        assert body_after_trace(copy) == b"Subject: k\r\n\r\n" + (b"x" * 98 + b"\r\n") * 1000
    else:
        assert got.get("bob", []) == []


def test_netstack_send_from_the_stack_to_a_kernel_side_server(tmp_path):
    """`netstack send` over netstack's TCP to our server running on the kernel side of the lab."""
    import subprocess
    import sys

    from tests.support.nstest import require_tun, unique_lab_name
    from tests.support.labkit import _env, remove_netns_we_created

    require_tun()
    name = unique_lab_name("nss")
    maildir, port_file = tmp_path / "mail", tmp_path / "port"
    msg = tmp_path / "msg.eml"
    msg.write_bytes(b"Subject: from the stack\n\n.leading dot\nbody\n")
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    server = None
    try:
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m", "netstack.cli.smtp_server", "--host",
                                   "0.0.0.0", "--port", "2525", "--port-file", str(port_file), "--maildir",
                                   str(maildir)], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert server.poll() is None and time.monotonic() < deadline, "kernel-side server did not start"
            time.sleep(0.05)
        r = subprocess.run([sys.executable, "-m", "netstack", "send", "--netns", name, "--ifname", name,
                            "--server", "198.18.0.1:2525", "--from", "student@example.test", "--to",
                            "bob@localhost", str(msg)], capture_output=True, text=True, timeout=60, env=_env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("250 2.0.0 Ok: queued as ")
    finally:
        if server is not None and server.poll() is None:
            server.kill()                     # our own child, by PID
            server.wait(10)
        remove_netns_we_created(name)
    (copy,) = maildir_files(maildir)["bob"]
    assert b"Received: from localhost ([198.18.0.2])\r\n" in copy
    assert body_after_trace(copy) == b"Subject: from the stack\r\n\r\n.leading dot\r\nbody\r\n"


SIGTERM_DRAIN = r"""
import json, os, signal, socket
def session():
    s = socket.create_connection(("198.18.0.2", 25), timeout=20)
    f = s.makefile("rb")
    f.readline()
    return s, f
idle, fi = session()
idle.sendall(b"EHLO idle\r\n")
while not fi.readline().startswith(b"250 "):
    pass
busy, fb = session()
busy.sendall(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
for _ in range(11):
    fb.readline()
busy.sendall(b"Subject: drain\r\n\r\nfirst half ")
os.kill(SERVE_PID, signal.SIGTERM)
out = {"idle": fi.readline().decode(), "idle_eof": fi.readline().decode()}
busy.sendall(b"second half\r\n.\r\n")
out["busy"] = fb.readline().decode()
busy.sendall(b"RSET\r\n")
out["after"] = fb.readline().decode()
print(json.dumps(out))
"""


def test_sigterm_drains_smtp_before_the_stack_stops(serve_factory, tmp_path):
    """SIGTERM to `netstack serve`: idle SMTP sessions get 421 4.3.2, a message in DATA finishes over
    netstack's TCP and gets its 250 (then 421 4.3.2), and only then does the stack stop; exit 0."""
    maildir = tmp_path / "mail"
    srv = serve_factory("--maildir", str(maildir), "--smtp-drain-seconds", "20")
    out = run_py(srv, SIGTERM_DRAIN.replace("SERVE_PID", str(srv.proc.pid)))
    assert out["idle"].startswith("421 4.3.2 ") and "shutting down" in out["idle"] and out["idle_eof"] == ""
    assert out["busy"].startswith("250 2.0.0 Ok: queued as ")
    assert out["after"].startswith("421 4.3.2 ")
    assert srv.stop() == 0
    (copy,) = maildir_files(maildir)["bob"]
    assert body_after_trace(copy) == b"Subject: drain\r\n\r\nfirst half second half\r\n"
