"""The async SMTP client (smtp.client) on kernel streams (127.0.0.1), against our server and a scripted fake.

The pure parts (line endings, dot-stuffing, `netstack send` usage errors) are in tests/unit/test_smtp_client.py.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from netstack.cli import main as cli_main
from smtp.client import (SmtpClient, SmtpError, SmtpRecipientsRefused, dot_stuff, normalize_line_endings,
                         send_message)
from smtp.server import SmtpServer
from smtp.session import SessionConfig
from smtp.tls import client_context, generate_self_signed, server_context

HOST = "127.0.0.1"


class FakeServer:
    """A scripted SMTP server that records each read() chunk and each command."""

    def __init__(self, *, ehlo: bytes | None = None, rcpt_reply=None):
        self.ehlo = ehlo if ehlo is not None else (
            b"250-fake\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n")
        self.rcpt_reply = rcpt_reply or (lambda line: b"250 2.1.5 ok\r\n")
        self.chunks: list[bytes] = []
        self.commands: list[str] = []
        self.messages: list[bytes] = []

    async def handle(self, reader, writer):
        writer.write(b"220 fake ESMTP\r\n")
        await writer.drain()
        buf, data, rcpt_ok = b"", None, False
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            self.chunks.append(chunk)
            buf += chunk
            out = b""
            while True:
                if data is not None:
                    i = buf.find(b"\r\n.\r\n")
                    if i < 0 and buf != b".\r\n" and not buf.startswith(b".\r\n"):
                        break
                    if buf.startswith(b".\r\n"):
                        self.messages.append(b"")
                        buf = buf[3:]
                    else:
                        self.messages.append(buf[:i + 2])
                        buf = buf[i + 5:]
                    data, rcpt_ok = None, False
                    out += b"250 2.0.0 Ok: queued as FAKE1\r\n"
                    continue
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                line, buf = buf[:i].decode(), buf[i + 2:]
                self.commands.append(line)
                verb = line.split(" ")[0].upper()
                if verb == "EHLO":
                    out += self.ehlo
                elif verb == "HELO":
                    out += b"250 fake\r\n"
                elif verb == "RCPT":
                    r = self.rcpt_reply(line)
                    rcpt_ok = rcpt_ok or r.startswith(b"250")
                    out += r
                elif verb == "DATA":
                    if rcpt_ok:
                        data = b""
                        out += b"354 go\r\n"
                    else:
                        out += b"503 no\r\n"
                elif verb == "QUIT":
                    writer.write(out + b"221 bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    out += b"250 ok\r\n"
            if out:
                writer.write(out)
                await writer.drain()
        writer.close()


async def _with_fake(fake, coro_fn):
    srv = await asyncio.start_server(fake.handle, HOST, 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        result = await coro_fn(port)
        await asyncio.sleep(0.02)   # let the fake see the client's EOF
        return result
    finally:
        srv.close()
        await srv.wait_closed()


def run_fake(fake, coro_fn):
    return asyncio.run(_with_fake(fake, coro_fn))


def test_pipelining_used_when_offered_and_size_declared():
    fake = FakeServer()
    msg = b"Subject: x\n\n.dot\nbody"

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test", "c@y.test"], msg)

    r = run_fake(fake, go)
    assert r.pipelined and r.queue_id == "FAKE1" and r.accepted == ["b@y.test", "c@y.test"]
    body = normalize_line_endings(msg)
    group = f"MAIL FROM:<a@x.test> SIZE={len(body)}\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
    assert group.encode() in fake.chunks              # one write for the whole group (RFC 2920)
    assert fake.messages == [dot_stuff(body)]


def test_no_pipelining_when_not_offered():
    fake = FakeServer(ehlo=b"250-fake\r\n250 8BITMIME\r\n")

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], b"hi\r\n")

    r = run_fake(fake, go)
    assert not r.pipelined
    assert b"MAIL FROM:<a@x.test>\r\n" in fake.chunks and b"RCPT TO:<b@y.test>\r\n" in fake.chunks
    assert b"DATA\r\n" in fake.chunks


def test_ehlo_refused_falls_back_to_helo():
    fake = FakeServer(ehlo=b"502 5.5.1 EHLO not implemented\r\n")

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], b"hi\r\n",
                                  local_hostname="me.test")

    r = run_fake(fake, go)
    assert fake.commands[:5] == ["EHLO me.test", "HELO me.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"]
    assert r.code == 250 and not r.pipelined


def test_size_limit_honoured_before_sending():
    fake = FakeServer()   # SIZE 1000

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], b"x" * 2000)

    with pytest.raises(SmtpError) as exc:
        run_fake(fake, go)
    assert exc.value.code == 552
    assert not any(c.startswith("MAIL") for c in fake.commands)


def test_8bit_message_needs_8bitmime():
    fake = FakeServer(ehlo=b"250-fake\r\n250 PIPELINING\r\n")

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], "café\r\n".encode())

    with pytest.raises(SmtpError) as exc:
        run_fake(fake, go)
    assert exc.value.code == 554 and not any(c.startswith("MAIL") for c in fake.commands)


def test_8bit_message_declares_body_8bitmime():
    fake = FakeServer()

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], "café\r\n".encode())

    run_fake(fake, go)
    assert fake.commands[1].endswith(" BODY=8BITMIME")


def test_some_recipients_refused_and_all_refused():
    fake = FakeServer(rcpt_reply=lambda line: b"550 5.7.1 no\r\n" if "bad" in line else b"250 ok\r\n")

    async def go(port):
        r = await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["good@y", "bad@y"], b"hi\r\n")
        with pytest.raises(SmtpRecipientsRefused) as exc:
            await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["bad@y"], b"hi\r\n")
        return r, exc.value

    r, exc = run_fake(fake, go)
    assert r.accepted == ["good@y"] and r.refused == {"bad@y": (550, "5.7.1 no")}
    assert exc.refused == {"bad@y": (550, "5.7.1 no")}
    assert len(fake.messages) == 1


def test_starttls_required_but_not_offered():
    fake = FakeServer()

    async def go(port):
        return await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["b@y.test"], b"hi\r\n",
                                  starttls="require")

    with pytest.raises(SmtpError):
        run_fake(fake, go)
    assert not any(c.startswith("MAIL") for c in fake.commands)


# ------------------------------------------------------------------ against our server


@pytest.fixture
def tls_files(tmp_path):
    c, k = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    generate_self_signed(c, k)
    return c, k


def test_client_against_our_server_with_starttls(tmp_path, tls_files):
    maildir = tmp_path / "mail"
    msg = b"Subject: t\n\n.leading dot\n..two\nend"

    async def go():
        server = SmtpServer(SessionConfig(), maildir=str(maildir), tls_context=server_context(*tls_files))
        srv = await server.start(lambda h: asyncio.start_server(h, HOST, 0))
        port = srv.sockets[0].getsockname()[1]
        try:
            r1 = await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["bob@localhost"], msg,
                                    tls_context=client_context(cafile=tls_files[0]), server_hostname="localhost")
            r2 = await send_message(asyncio.open_connection, HOST, port, "a@x.test", ["bob@localhost"], msg,
                                    starttls="never")
            c = await SmtpClient.connect(asyncio.open_connection, HOST, port)   # one connection, two messages
            await c.ehlo()
            r3 = await c.send("a@x.test", ["carol@localhost"], b"one\r\n")
            r4 = await c.send("a@x.test", ["carol@localhost"], b"two\r\n")
            await c.quit()
            return r1, r2, r3, r4
        finally:
            srv.close()
            await srv.wait_closed()

    r1, r2, r3, r4 = asyncio.run(go())
    assert r1.tls and r1.pipelined and not r2.tls
    files = sorted(os.listdir(maildir / "bob" / "new"))
    assert len(files) == 2 and len(os.listdir(maildir / "carol" / "new")) == 2
    contents = [(maildir / "bob" / "new" / f).read_bytes() for f in files]
    for data in contents:
        assert data.endswith(b"\r\n\r\n.leading dot\r\n..two\r\nend\r\n")
    assert any(f"id {r1.queue_id}\r\n".encode() in d and b"with ESMTPS" in d for d in contents)


def test_netstack_send_cli_kernel(tmp_path, capsys):
    maildir = tmp_path / "mail"
    msg_file = tmp_path / "msg.eml"
    msg_file.write_bytes(b"Subject: cli\n\nhello\n")

    async def go():
        server = SmtpServer(SessionConfig(), maildir=str(maildir))
        srv = await server.start(lambda h: asyncio.start_server(h, HOST, 0))
        port = srv.sockets[0].getsockname()[1]
        try:
            ok = await asyncio.to_thread(cli_main, ["send", "--kernel", "--server", f"{HOST}:{port}",
                                                    "--from", "a@x.test", "--to", "bob@localhost,carol@localhost",
                                                    str(msg_file)])
            refused = await asyncio.to_thread(cli_main, ["send", "--kernel", "--server", f"{HOST}:{port}",
                                                         "--from", "a@x.test", "--to", "x@elsewhere.test",
                                                         str(msg_file)])
            return ok, refused
        finally:
            srv.close()
            await srv.wait_closed()

    ok, refused = asyncio.run(go())
    out = capsys.readouterr()
    assert ok == 0 and refused == 1
    assert "250 2.0.0 Ok: queued as " in out.out and "550" in out.err
    for box in ("bob", "carol"):
        (f,) = os.listdir(maildir / box / "new")
        assert (maildir / box / "new" / f).read_bytes().endswith(b"\r\n\r\nhello\r\n")


def test_netstack_send_cli_starttls_and_auth(tmp_path, tls_files, capsys):
    from smtp.auth import Users, hash_password

    maildir = tmp_path / "mail"
    msg_file, pw_file = tmp_path / "msg.eml", tmp_path / "pw"
    msg_file.write_bytes(b"Subject: auth\r\n\r\nsecret stuff\r\n")
    pw_file.write_text("s3cret\n")

    async def go():
        server = SmtpServer(SessionConfig(), maildir=str(maildir), tls_context=server_context(*tls_files),
                            users=Users({"alice": hash_password("s3cret", ln=4)}))
        srv = await server.start(lambda h: asyncio.start_server(h, HOST, 0))
        port = srv.sockets[0].getsockname()[1]
        base = ["send", "--kernel", "--server", f"{HOST}:{port}", "--from", "alice@x.test", "--to", "bob@localhost",
                "--cafile", tls_files[0], "--starttls", "require", "--auth-user", "alice"]
        try:
            good = await asyncio.to_thread(cli_main, base + ["--password-file", str(pw_file), str(msg_file)])
            pw_file.write_text("wrong\n")
            bad = await asyncio.to_thread(cli_main, base + ["--password-file", str(pw_file), str(msg_file)])
            return good, bad
        finally:
            srv.close()
            await srv.wait_closed()

    good, bad = asyncio.run(go())
    assert (good, bad) == (0, 1)
    assert "535 5.7.8" in capsys.readouterr().err
    (f,) = os.listdir(maildir / "bob" / "new")
    data = (maildir / "bob" / "new" / f).read_bytes()
    assert b" with ESMTPSA (version=TLSv1.3" in data and data.endswith(b"\r\n\r\nsecret stuff\r\n")
