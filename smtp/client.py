"""An asyncio SMTP client on injected streams (RFC 5321 §3, §4).

The connection comes from an *opener*: ``async opener(host, port) ->
(reader, writer)``, e.g. ``asyncio.open_connection`` (kernel TCP) or
``functools.partial(netstack.sockets.streams.open_connection, stack)`` (netstack)::

    result = await send_message(asyncio.open_connection, "127.0.0.1", 25,
                                "me@example.test", ["you@example.test"], message_bytes)
    result.queue_id, result.refused

Behaviour: EHLO with fallback to HELO (RFC 5321 §3.2), STARTTLS when
offered (RFC 3207; ``starttls="require"`` fails without it, ``"never"``
skips it), PIPELINING when offered (RFC 2920: MAIL, RCPT... and DATA go in
one write), SIZE honoured (RFC 1870: declared, and a message larger than the
server's limit is not sent), BODY=8BITMIME / SMTPUTF8 when needed and
offered (refused locally otherwise), line ends normalised to CRLF and
dot-stuffing (RFC 5321 §4.5.2).
"""
from __future__ import annotations

import asyncio
import base64
import re
import ssl
from dataclasses import dataclass, field

from .replies import ReplyParser
from .tls import PlainStream, TlsStream, set_nodelay


class SmtpError(Exception):
    """The server answered with an error (or the client refused locally, code 0 or the RFC code)."""

    def __init__(self, code: int, text: str, command: str = ""):
        super().__init__(f"{code} {text}" + (f" (after {command})" if command else ""))
        self.code = code
        self.text = text
        self.command = command


class SmtpRecipientsRefused(SmtpError):
    def __init__(self, refused: dict):
        first = next(iter(refused.values()))
        super().__init__(first[0], f"all recipients refused: {refused}", "RCPT")
        self.refused = refused


@dataclass
class SendResult:
    code: int
    text: str
    queue_id: str | None
    accepted: list[str]
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)
    tls: bool = False
    pipelined: bool = False


def normalize_line_endings(message: bytes) -> bytes:
    """Every CR, LF or CRLF becomes CRLF; a missing final CRLF is added."""
    out = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." gets one more. Input must have CRLF line ends."""
    out = message.replace(b"\r\n.", b"\r\n..")
    if out.startswith(b"."):
        out = b"." + out
    return out


def _addr_param(address: str) -> str:
    return f"<{address}>"


class SmtpClient:
    """One SMTP client connection over a reader/writer pair."""

    def __init__(self, reader, writer, *, local_hostname: str = "localhost", timeout: float = 60.0):
        self.reader, self.writer = reader, writer
        set_nodelay(writer)
        self.stream = PlainStream(reader, writer)
        self.local_hostname = local_hostname
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.tls = False
        self._parser = ReplyParser()
        self._ready: list[tuple[int, list[str]]] = []

    @classmethod
    async def connect(cls, opener, host: str, port: int, **kw) -> "SmtpClient":
        reader, writer = await opener(host, port)
        client = cls(reader, writer, **kw)
        try:
            code, lines = await client.read_reply()
            if code != 220:
                raise SmtpError(code, " ".join(lines), "greeting")
        except BaseException:
            client.close()
            raise
        return client

    # -------------------------------------------------------------- low level

    def _write(self, data: bytes) -> None:
        self.stream.write(data)

    async def read_reply(self) -> tuple[int, list[str]]:
        async with asyncio.timeout(self.timeout):
            while not self._ready:
                data = await self.stream.read(65536)
                if not data:
                    raise ConnectionResetError("server closed the connection")
                self._parser.feed(data)
                self._ready += self._parser.replies()
        return self._ready.pop(0)

    async def command(self, line: str) -> tuple[int, list[str]]:
        self._write(line.encode("utf-8") + b"\r\n")
        await self.stream.drain()
        return await self.read_reply()

    # -------------------------------------------------------------- session steps

    async def ehlo(self) -> None:
        """EHLO, falling back to HELO when EHLO is refused (RFC 5321 §3.2)."""
        code, lines = await self.command(f"EHLO {self.local_hostname}")
        if code == 250:
            self.esmtp = True
            self.extensions = {}
            for line in lines[1:]:
                key, _, value = line.partition(" ")
                self.extensions[key.upper()] = value
            return
        if code == 421:
            raise SmtpError(code, " ".join(lines), "EHLO")
        code, lines = await self.command(f"HELO {self.local_hostname}")
        if code != 250:
            raise SmtpError(code, " ".join(lines), "HELO")
        self.esmtp = False
        self.extensions = {}

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        code, lines = await self.command("STARTTLS")
        if code != 220:
            raise SmtpError(code, " ".join(lines), "STARTTLS")
        tls = TlsStream(self.reader, self.writer, context, server_side=False, server_hostname=server_hostname)
        async with asyncio.timeout(self.timeout):
            await tls.handshake()
        self.stream = tls
        self.tls = True
        self._parser = ReplyParser()   # nothing from before TLS is kept (RFC 3207 §4.2)
        self._ready.clear()
        await self.ehlo()

    async def login(self, username: str, password: str) -> None:
        """AUTH PLAIN (RFC 4616), or LOGIN when only that is offered."""
        mechs = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechs or not mechs:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            code, lines = await self.command(f"AUTH PLAIN {token}")
        else:
            code, lines = await self.command("AUTH LOGIN")
            if code == 334:
                code, lines = await self.command(base64.b64encode(username.encode()).decode())
            if code == 334:
                code, lines = await self.command(base64.b64encode(password.encode()).decode())
        if code != 235:
            raise SmtpError(code, " ".join(lines), "AUTH")

    async def send(self, mail_from: str, rcpt_tos: list[str], message: bytes, *,
                   pipelining: bool = True) -> SendResult:
        """One transaction. Returns when the server accepted the message; raises SmtpError otherwise."""
        body = normalize_line_endings(message)
        ext = self.extensions
        params = []
        if "SIZE" in ext:
            limit = ext["SIZE"].strip()
            if limit.isdigit() and int(limit) and len(body) > int(limit):
                raise SmtpError(552, f"5.3.4 message of {len(body)} octets exceeds the server's SIZE {limit}", "SIZE")
            params.append(f"SIZE={len(body)}")
        if not body.isascii():
            if "8BITMIME" not in ext:
                raise SmtpError(554, "5.6.3 8-bit message but the server does not offer 8BITMIME", "MAIL")
            params.append("BODY=8BITMIME")
        if not (mail_from.isascii() and all(r.isascii() for r in rcpt_tos)):
            if "SMTPUTF8" not in ext:
                raise SmtpError(553, "5.6.7 non-ASCII address but the server does not offer SMTPUTF8", "MAIL")
            params.append("SMTPUTF8")
        mail = f"MAIL FROM:{_addr_param(mail_from)}" + "".join(" " + p for p in params)
        pipelined = pipelining and "PIPELINING" in ext
        rcpt_cmds = [f"RCPT TO:{_addr_param(r)}" for r in rcpt_tos]
        if pipelined:   # RFC 2920 §3.1: MAIL, RCPT... and DATA in one group
            self._write("".join(c + "\r\n" for c in [mail, *rcpt_cmds, "DATA"]).encode("utf-8"))
            await self.stream.drain()
            replies = [await self.read_reply() for _ in range(len(rcpt_cmds) + 2)]
            mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        else:
            mail_reply = await self.command(mail)
            rcpt_replies, data_reply = [], None
            if mail_reply[0] == 250:
                rcpt_replies = [await self.command(c) for c in rcpt_cmds]
        if mail_reply[0] != 250:
            await self._rset()
            raise SmtpError(mail_reply[0], " ".join(mail_reply[1]), "MAIL")
        accepted, refused = [], {}
        for rcpt, r in zip(rcpt_tos, rcpt_replies):
            if r[0] in (250, 251):
                accepted.append(rcpt)
            else:
                refused[rcpt] = (r[0], " ".join(r[1]))
        if data_reply is None:
            if not accepted:
                await self._rset()
                raise SmtpRecipientsRefused(refused)
            data_reply = await self.command("DATA")
        if data_reply[0] != 354:
            await self._rset()
            if not accepted:
                raise SmtpRecipientsRefused(refused)
            raise SmtpError(data_reply[0], " ".join(data_reply[1]), "DATA")
        if not accepted:   # a server that said 354 with no recipient: end the empty message
            self._write(b".\r\n")
            await self.stream.drain()
            await self.read_reply()
            raise SmtpRecipientsRefused(refused)
        self._write(dot_stuff(body) + b".\r\n")
        await self.stream.drain()
        code, lines = await self.read_reply()
        text = " ".join(lines)
        if code != 250:
            raise SmtpError(code, text, "end of DATA")
        m = re.search(r"queued as (\S+)", text)
        return SendResult(code, text, m.group(1) if m else None, accepted, refused, self.tls, pipelined)

    async def _rset(self) -> None:
        try:
            await self.command("RSET")
        except (SmtpError, ConnectionError, TimeoutError):
            pass

    async def quit(self) -> None:
        try:
            await self.command("QUIT")
        except (ConnectionError, TimeoutError, SmtpError):
            pass
        self.close()

    def close(self) -> None:
        try:
            if isinstance(self.stream, TlsStream):
                self.stream.close()     # close_notify, then the TCP close
            else:
                self.writer.close()
        except (ConnectionError, OSError):
            pass


async def send_message(opener, host: str, port: int, mail_from: str, rcpt_tos: list[str], message: bytes, *,
                       local_hostname: str = "localhost", starttls: str = "auto",
                       tls_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                       auth: tuple[str, str] | None = None, pipelining: bool = True,
                       timeout: float = 60.0) -> SendResult:
    """Connect with ``opener``, EHLO, STARTTLS if offered (``starttls``: auto/require/never), send, QUIT."""
    if starttls not in ("auto", "require", "never"):
        raise ValueError("starttls must be auto, require or never")
    client = await SmtpClient.connect(opener, host, port, local_hostname=local_hostname, timeout=timeout)
    try:
        await client.ehlo()
        if starttls != "never" and "STARTTLS" in client.extensions:
            ctx = tls_context or ssl.create_default_context()
            await client.starttls(ctx, server_hostname or host)
        elif starttls == "require":
            raise SmtpError(0, "server does not offer STARTTLS and --starttls=require was given", "EHLO")
        if auth:
            await client.login(*auth)
        result = await client.send(mail_from, rcpt_tos, message, pipelining=pipelining)
    except BaseException:
        client.close()
        raise
    await client.quit()
    return result
