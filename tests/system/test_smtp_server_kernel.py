"""The SMTP server on asyncio's kernel streams (127.0.0.1) with real clients.

smtplib (plain, several recipients, 10 MB, 8BITMIME + SMTPUTF8, STARTTLS with
a generated certificate, AUTH after TLS), swaks (plain, --pipeline, -tls), 50
concurrent clients x 20 messages, a failing disk (451), and a server process
killed with SIGKILL mid-DATA / right after 250.  The same server runs on
netstack's streams by swapping the stream starter (see smtp/server.py).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from smtp.auth import Users, hash_password
from smtp.client import SmtpClient, dot_stuff
from smtp.delivery import MaildirDelivery
from smtp.server import SmtpServer
from smtp.session import SessionConfig
from smtp.tls import generate_self_signed, server_context

HOST = "127.0.0.1"


class ServerThread:
    """An SmtpServer on kernel asyncio streams, in its own thread and event loop; ``driver``: its
    conversations on stream pairs (``start``) or as protocols on the transports (``start_protocol``)."""

    driver = "streams"

    def __init__(self, maildir, **kw):
        cfg = kw.pop("config", None) or SessionConfig(hostname="mx.example.test")
        self.server = SmtpServer(cfg, maildir=str(maildir), **kw)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)

        async def start():
            if self.driver == "protocol":
                loop = asyncio.get_running_loop()
                self.srv = await self.server.start_protocol(lambda factory: loop.create_server(factory, HOST, 0))
            else:
                self.srv = await self.server.start(lambda h: asyncio.start_server(h, HOST, 0))
            self.port = self.srv.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        async def stop():
            self.srv.close()
            await self.srv.wait_closed()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(autouse=True, params=["streams", "protocol"])
def driver(request, monkeypatch):
    """Every test runs on both conversation drivers: they must behave identically."""
    monkeypatch.setattr(ServerThread, "driver", request.param)
    return request.param


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    c, k = str(d / "cert.pem"), str(d / "key.pem")
    generate_self_signed(c, k, hostname="localhost", ips=("127.0.0.1",))
    return c, k


def delivered(maildir) -> dict[str, list[bytes]]:
    out = {}
    for box in sorted(os.listdir(maildir)):
        new = os.path.join(maildir, box, "new")
        out[box] = [open(os.path.join(new, f), "rb").read() for f in sorted(os.listdir(new))]
        assert os.listdir(os.path.join(maildir, box, "tmp")) == []
    return out


def split_trace(data: bytes) -> tuple[bytes, bytes]:
    """(Return-Path + Received lines, the message as sent)."""
    assert data.startswith(b"Return-Path: <")
    i = data.index(b"\r\nReceived: ")
    j = i + 2
    while True:   # Received: is folded; its last line ends with the date
        k = data.index(b"\r\n", j)
        if data[k + 2:k + 3] not in (b"\t", b" "):
            return data[:k + 2], data[k + 2:]
        j = k + 2


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def message(n: int = 0, size: int = 200, subject: str = "test") -> bytes:
    body = b"".join(b"line %06d of message %d %s\r\n" % (i, n, b"x" * 40) for i in range(size // 60 + 1))
    return (f"From: a@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\nMessage-ID: <m{n}@t>\r\n\r\n"
            .encode() + b".starts with a dot\r\n" + body)


# ------------------------------------------------------------------ smtplib


def test_smtplib_plain_send_byte_for_byte(tmp_path):
    msg = message(1)
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port) as c:
        c.ehlo("client.test")
        assert c.has_extn("pipelining") and c.has_extn("chunking") and not c.has_extn("starttls")
        refused = c.sendmail("alice@remote.test", ["bob@example.test"], msg)
        assert refused == {}
        code, text = c.noop()
        assert code == 250
    (copy,) = delivered(tmp_path)["bob"]
    trace, body = split_trace(copy)
    assert sha(body) == sha(msg)
    assert trace.startswith(b"Return-Path: <alice@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n"
                            b"\tby mx.example.test (netstack) with ESMTP\r\n\tid ")
    assert b"\tfor <bob@example.test>; " in trace


def test_queue_id_in_250_matches_received_header_and_log(tmp_path, caplog):
    caplog.set_level("INFO", logger="smtp.server")
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port) as c:
        c.ehlo("client.test")
        c.mail("alice@remote.test")
        c.rcpt("bob@example.test")
        c.rcpt("carol@localhost")
        code, text = c.data(message(2))
    assert code == 250
    qid = text.decode().rsplit(" ", 1)[1]
    (copy,) = delivered(tmp_path)["bob"]
    assert f"\tid {qid}; ".encode() in copy      # several recipients: no "for" clause
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("queued")]
    assert len(lines) == 1
    assert lines[0].startswith(f"queued {qid} client=127.0.0.1:")
    assert lines[0].endswith(f"from=<alice@remote.test> to=<bob@example.test>,<carol@localhost> size={len(message(2))}")


def test_smtplib_several_recipients_and_relay_refused(tmp_path):
    msg = message(3)
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port) as c:
        refused = c.sendmail("alice@remote.test", ["bob@example.test", "CAROL@localhost", "x@gmail.example",
                                                   "postmaster"], msg)
    assert refused == {"x@gmail.example": (550, b"5.7.1 <x@gmail.example>: Relay access denied")}
    got = delivered(tmp_path)
    assert sorted(got) == ["bob", "carol", "postmaster"]
    for copies in got.values():
        assert len(copies) == 1 and sha(split_trace(copies[0])[1]) == sha(msg)


def test_smtplib_10_megabyte_message(tmp_path):
    msg = message(4, size=10 * 1024 * 1024)
    assert len(msg) > 10 * 1024 * 1024
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port, timeout=60) as c:
        c.sendmail("alice@remote.test", ["bob@example.test"], msg)
    (copy,) = delivered(tmp_path)["bob"]
    assert sha(split_trace(copy)[1]) == sha(msg)


def test_smtplib_size_limit_declared_552(tmp_path):
    cfg = SessionConfig(hostname="mx.example.test", max_message_size=1000)
    with ServerThread(tmp_path, config=cfg) as st, smtplib.SMTP(HOST, st.port) as c:
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            c.sendmail("alice@remote.test", ["bob@example.test"], message(5, size=5000))
        assert exc.value.smtp_code == 552 and exc.value.smtp_error.startswith(b"5.3.4 ")
    assert not os.path.exists(tmp_path / "bob")


def test_smtplib_8bitmime_and_smtputf8_addresses(tmp_path):
    msg = "From: jörg@bücher.test\r\nSubject: grüße\r\n\r\nnaïve café ☕\r\n".encode("utf-8")
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port) as c:
        c.ehlo("client.test")
        assert c.has_extn("smtputf8") and c.has_extn("8bitmime")
        c.sendmail("jörg@bücher.test", ["Björn@example.test"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            c.sendmail("a@remote.test", ["Björn@example.test"], b"x\r\n")
        assert exc.value.recipients["Björn@example.test"][0] == 553
    (copy,) = delivered(tmp_path)["bj=C3=B6rn"]
    trace, body = split_trace(copy)
    assert body == msg and "Return-Path: <jörg@bücher.test>".encode() in trace
    assert b" with UTF8SMTP\r\n" in trace


def test_starttls_and_auth_after_tls(tmp_path, cert):
    users = Users({"alice": hash_password("s3cret", ln=4)})
    ctx = ssl.create_default_context(cafile=cert[0])
    msg = message(6)
    with ServerThread(tmp_path, tls_context=server_context(*cert), users=users) as st:
        with smtplib.SMTP(HOST, st.port) as c:
            c.ehlo("client.test")
            assert c.has_extn("starttls") and not c.has_extn("auth")
            with pytest.raises(smtplib.SMTPNotSupportedError):
                c.login("alice", "s3cret")
            code, _ = c.docmd("AUTH", "PLAIN AGFsaWNlAHMzY3JldA==")
            assert code == 538
            c.starttls(context=ctx)
            c.ehlo("client.test")
            assert c.has_extn("auth") and not c.has_extn("starttls")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.login("alice", "wrong")
            c.login("alice", "s3cret")
            c.sendmail("alice@remote.test", ["bob@example.test"], msg)
        with smtplib.SMTP(HOST, st.port) as c:      # AUTH LOGIN too
            c.starttls(context=ctx)
            c.ehlo("client.test")
            c.user, c.password = "alice", "s3cret"
            code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
            assert code == 235
    (copy,) = delivered(tmp_path)["bob"]
    trace, body = split_trace(copy)
    assert body == msg
    assert b" with ESMTPSA (version=TLSv1." in trace


def test_starttls_pipelined_plaintext_is_discarded(tmp_path, cert):
    ctx = ssl.create_default_context(cafile=cert[0])
    with ServerThread(tmp_path, tls_context=server_context(*cert)) as st:
        raw = socket.create_connection((HOST, st.port), timeout=10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO c\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"MAIL FROM:<a@b.test>\r\n")
        tf = tls.makefile("rb")
        assert tf.readline() == b"503 Error: send HELO/EHLO first\r\n"   # state was reset; injection dropped
        tls.sendall(b"EHLO c\r\n")
        lines = []
        while not lines or not lines[-1].startswith(b"250 "):
            lines.append(tf.readline())
        assert b"250-STARTTLS\r\n" not in lines
        tls.sendall(b"STARTTLS\r\n")
        assert tf.readline() == b"503 5.5.1 Error: TLS already active\r\n"
        tls.close()


@pytest.mark.parametrize("err, expected", [
    (5, (451, b"4.3.0 Error: local delivery failed, try again later")),                 # EIO
    (28, (452, b"4.3.1 Error: insufficient system storage, try again later")),          # ENOSPC
])
def test_write_error_gives_451_or_452_and_nothing_in_new(tmp_path, err, expected):
    class FailingDisk(MaildirDelivery):
        def _write_tmp(self, path, data):
            super()._write_tmp(path, data[:100])
            raise OSError(err, os.strerror(err))

    st = ServerThread(tmp_path)
    st.server.delivery = FailingDisk(str(tmp_path))
    with st, smtplib.SMTP(HOST, st.port) as c:
        c.ehlo("c")
        c.mail("a@remote.test")
        c.rcpt("bob@localhost")
        code, text = c.data(message(7))
        assert (code, text) == expected
        assert c.noop()[0] == 250
    assert os.listdir(tmp_path / "bob" / "new") == [] and os.listdir(tmp_path / "bob" / "tmp") == []


def test_idle_timeout_on_the_wire(tmp_path):
    cfg = SessionConfig(hostname="mx.example.test", idle_timeout=0.3)
    with ServerThread(tmp_path, config=cfg) as st:
        s = socket.create_connection((HOST, st.port), timeout=5)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"EHLO c\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        t0 = time.monotonic()
        assert f.readline() == b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
        assert f.readline() == b""       # and the server closed
        assert 0.2 < time.monotonic() - t0 < 3


def test_connection_limit_421(tmp_path):
    st = ServerThread(tmp_path)
    st.server.max_connections = 1
    with st:
        first = socket.create_connection((HOST, st.port), timeout=5)
        assert first.makefile("rb").readline().startswith(b"220 ")
        second = socket.create_connection((HOST, st.port), timeout=5)
        f = second.makefile("rb")
        assert f.readline() == b"421 4.7.0 mx.example.test Error: too many connections (at most 1), try again later\r\n"
        assert f.readline() == b""
        first.close()
        second.close()


def test_maildir_removed_while_running_is_recreated(tmp_path):
    with ServerThread(tmp_path) as st, smtplib.SMTP(HOST, st.port) as c:
        c.sendmail("a@remote.test", ["bob@localhost"], b"one\r\n")
        shutil.rmtree(tmp_path / "bob")
        c.sendmail("a@remote.test", ["bob@localhost"], b"two\r\n")
    (copy,) = delivered(tmp_path)["bob"]
    assert copy.endswith(b"\r\ntwo\r\n")


# ------------------------------------------------------------------ swaks


SWAKS = shutil.which("swaks")


@pytest.mark.skipif(SWAKS is None, reason="swaks not installed")
@pytest.mark.parametrize("extra,with_", [([], b"with ESMTP\r\n"), (["--pipeline"], b"with ESMTP\r\n"),
                                         (["-tls"], b"with ESMTPS (version=TLSv1.3")])
def test_swaks(tmp_path, cert, extra, with_):
    maildir = tmp_path / "mail"
    with ServerThread(maildir, tls_context=server_context(*cert)) as st:
        r = subprocess.run([SWAKS, "--server", f"{HOST}:{st.port}", "--to", "bob@example.test",
                            "--from", "alice@remote.test", "--helo", "swaks.test", "--body", "hello from swaks",
                            *extra], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    if extra == ["--pipeline"]:
        assert " -> MAIL FROM:<alice@remote.test>\n -> RCPT TO:<bob@example.test>\n -> DATA\n" in r.stdout
    (copy,) = delivered(maildir)["bob"]
    trace, body = split_trace(copy)
    assert b"from swaks.test ([127.0.0.1])" in trace and with_ in trace
    assert b"\r\n\r\nhello from swaks\r\n" in body


# ------------------------------------------------------------------ concurrency


def test_50_concurrent_clients_20_messages_each_delivered_exactly_once(tmp_path):
    maildir = tmp_path / "mail"
    clients, per_client = 50, 20

    async def one_client(port, c):
        if c % 2:   # odd clients: one connection for all their messages
            cl = await SmtpClient.connect(asyncio.open_connection, HOST, port, local_hostname=f"c{c}")
            await cl.ehlo()
            for i in range(per_client):
                await cl.send("a@remote.test", [f"user{c % 5}@example.test"], message(c * 1000 + i))
            await cl.quit()
        else:       # even clients: a new connection per message
            for i in range(per_client):
                cl = await SmtpClient.connect(asyncio.open_connection, HOST, port, local_hostname=f"c{c}")
                await cl.ehlo()
                await cl.send("a@remote.test", [f"user{c % 5}@example.test"], message(c * 1000 + i))
                await cl.quit()

    with ServerThread(maildir) as st:
        async def main():
            await asyncio.gather(*(one_client(st.port, c) for c in range(clients)))
        asyncio.run(main())
        assert st.server.accepted == clients * per_client
    _check_exactly_once(maildir, clients, per_client, boxes=5, size=lambda n: 200)


def _check_exactly_once(maildir, clients, per_client, *, boxes, size) -> None:
    """Every message ``c * 1000 + i`` in its mailbox ``user{c % boxes}`` exactly once, byte for byte."""
    ids = []
    for box, copies in delivered(maildir).items():
        for copy in copies:
            body = split_trace(copy)[1]
            n = int(body.split(b"Message-ID: <m", 1)[1].split(b"@", 1)[0])
            assert body == message(n, size=size(n))
            assert box == f"user{(n // 1000) % boxes}"
            ids.append(n)
    assert sorted(ids) == sorted(c * 1000 + i for c in range(clients) for i in range(per_client))


# ------------------------------------------------------------------ SIGKILL


class ServerProcess:
    """``python -m netstack.cli.smtp_server`` on kernel streams in a child process (killed by PID only)."""

    def __init__(self, tmp_path, *extra):
        self.maildir = tmp_path / "mail"
        self.port_file = tmp_path / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "netstack.cli.smtp_server", "--port", "0", "--port-file",
                                      str(self.port_file), "--maildir", str(self.maildir), "--smtp-hostname", "mx",
                                      *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self.port_file.exists():
            assert self.proc.poll() is None, "server died"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def _start_txn(port, body_part: bytes):
    s = socket.create_connection((HOST, port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
    lines = [f.readline() for _ in range(11)]
    assert lines[-1] == b"354 End data with <CR><LF>.<CR><LF>\r\n", lines
    s.sendall(body_part)
    return s, f


def test_sigkill_mid_data_leaves_nothing_in_new(tmp_path):
    sp = ServerProcess(tmp_path)
    try:
        s, f = _start_txn(sp.port, message(8, size=200_000))   # all but the final dot
        s.sendall(b"NOOP\r\n")      # a command inside DATA: content, so there is no reply
        time.sleep(0.3)             # the server has read it all and waits for CRLF.CRLF
        sp.kill()
        s.close()
    finally:
        sp.kill()
    new = sp.maildir / "bob" / "new"
    assert not new.exists() or os.listdir(new) == []


def test_sigkill_right_after_250_loses_nothing(tmp_path):
    sp = ServerProcess(tmp_path)
    msg = message(9, size=200_000)
    try:
        s, f = _start_txn(sp.port, dot_stuff(msg) + b".\r\n")
        reply = f.readline()
        sp.kill()                   # immediately after the 250
        s.close()
    finally:
        sp.kill()
    assert reply.startswith(b"250 2.0.0 Ok: queued as ")
    (copy,) = delivered(sp.maildir)["bob"]
    assert sha(split_trace(copy)[1]) == sha(msg)
    assert b"\tid " + reply.split()[-1] + b"\r\n" in copy


def _queue_id(copy: bytes) -> bytes:
    return copy.split(b"\tid ", 1)[1].split(b"\r\n", 1)[0].split(b";", 1)[0]


def test_sigkill_with_8_clients_mid_transaction_loses_no_250_and_leaves_nothing_partial(tmp_path):
    """8 clients deliver 100 KB messages, each sent in pieces, until the server is SIGKILLed in
    the middle of their transactions.  Every message that got its 250 is in new/, intact; every
    file in new/ is a whole message that a client sent; at most the 8 messages in flight (durable
    but killed before their 250 went out) are there without a 250."""
    sp = ServerProcess(tmp_path)
    sent: dict[int, bytes] = {}
    acked: dict[bytes, int] = {}            # queue id -> message number
    lock = threading.Lock()
    stop = threading.Event()

    def client(c):
        n = 0
        while not stop.is_set():
            num = c * 100_000 + n
            n += 1
            msg = message(num, size=100_000)
            with lock:
                sent[num] = msg
            try:
                s, f = _start_txn(sp.port, b"")
                wire = dot_stuff(msg) + b".\r\n"
                for i in range(0, len(wire), 16384):
                    s.sendall(wire[i:i + 16384])
                reply = f.readline()
                s.close()
            except (OSError, AssertionError):   # the server is gone
                return
            if not reply.startswith(b"250 "):
                return
            with lock:
                acked[reply.split()[-1]] = num

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(8)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        sp.kill()                           # clients are mid-transaction: they never stop on their own
    finally:
        stop.set()
        sp.kill()
        for t in threads:
            t.join(20)
    assert len(acked) >= 40
    new = sp.maildir / "bob" / "new"
    copies = [(new / name).read_bytes() for name in sorted(os.listdir(new))]   # tmp/ may hold killed writes
    by_qid = {}
    for copy in copies:
        body = split_trace(copy)[1]
        num = int(body.split(b"Message-ID: <m", 1)[1].split(b"@", 1)[0])
        assert body == sent[num]            # whole and intact, never half-written
        by_qid[_queue_id(copy)] = num
    for qid, num in acked.items():          # nothing that got a 250 is lost
        assert by_qid.get(qid) == num, qid
    assert len(set(by_qid) - set(acked)) <= 8
    tmp = sp.maildir / "bob" / "tmp"
    assert len(os.listdir(tmp)) <= 8        # at most the copies being written when killed (readers ignore tmp/)


def test_200_concurrent_clients_10_messages_each_delivered_exactly_once_intact(tmp_path):
    maildir = tmp_path / "mail"
    clients, per_client = 200, 10

    async def one_client(port, c):
        for i in range(per_client):
            if i % 2 == 0:
                cl = await SmtpClient.connect(asyncio.open_connection, HOST, port, local_hostname=f"c{c}")
                await cl.ehlo()
            await cl.send("a@remote.test", [f"user{c % 7}@example.test"], message(c * 1000 + i, size=2000 + c))
            if i % 2 == 1:
                await cl.quit()

    with ServerThread(maildir) as st:
        async def main():
            async with asyncio.timeout(240):
                await asyncio.gather(*(one_client(st.port, c) for c in range(clients)))
        asyncio.run(main())
        assert st.server.accepted == clients * per_client
    _check_exactly_once(maildir, clients, per_client, boxes=7, size=lambda n: 2000 + n // 1000)


# ------------------------------------------------------------------ limits and SIGTERM, on the wire


def test_per_address_limit_on_the_wire(tmp_path):
    st = ServerThread(tmp_path, max_per_ip=2)
    with st:
        keep = [socket.create_connection((HOST, st.port), timeout=5) for _ in range(2)]
        for s in keep:
            assert s.makefile("rb").readline().startswith(b"220 ")
        third = socket.create_connection((HOST, st.port), timeout=5)
        f = third.makefile("rb")
        assert f.readline() == (b"421 4.7.0 mx.example.test Error: too many connections from your address "
                                b"(at most 2), try again later\r\n")
        assert f.readline() == b""
        assert st.server.refused_per_ip == 1
        for s in keep + [third]:
            s.close()


def test_sigterm_graceful_shutdown(tmp_path):
    """SIGTERM: an idle session gets 421 4.3.2; a message in DATA finishes and gets its 250; its
    next command gets 421 4.3.2; a message never finished is dropped at the drain deadline
    (nothing in new/); no new connection is served; the process exits 0."""
    sp = ServerProcess(tmp_path, "--smtp-drain-seconds", "3")
    try:
        idle = socket.create_connection((HOST, sp.port), timeout=10)
        fi = idle.makefile("rb")
        fi.readline()
        idle.sendall(b"EHLO idle\r\n")
        while not fi.readline().startswith(b"250 "):
            pass
        msg = message(1, size=50_000)
        busy, fb = _start_txn(sp.port, dot_stuff(msg)[:20_000])
        stuck, fs = _start_txn(sp.port, b"Subject: never finished\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        sp.proc.send_signal(signal.SIGTERM)
        assert fi.readline() == b"421 4.3.2 mx Service shutting down, closing the connection\r\n"
        assert fi.readline() == b""
        busy.sendall(dot_stuff(msg)[20_000:] + b".\r\n")
        reply = fb.readline()
        assert reply.startswith(b"250 2.0.0 Ok: queued as ")
        busy.sendall(b"MAIL FROM:<a@remote.test>\r\n")
        assert fb.readline() == b"421 4.3.2 mx Service shutting down, closing the connection\r\n"
        with pytest.raises(OSError):           # the listener is closed
            late = socket.create_connection((HOST, sp.port), timeout=5)
            late.makefile("rb").readline() or late.recv(1)
            raise ConnectionRefusedError
        assert sp.proc.wait(15) == 0
        assert time.monotonic() - t0 < 14      # bounded by the drain deadline, not by the stuck client
        assert fs.read() == b""                # the stuck transaction was closed without a reply
        for s in (idle, busy, stuck):
            s.close()
    finally:
        sp.kill()
    (copy,) = delivered(sp.maildir)["bob"]
    assert split_trace(copy)[1] == msg
