"""The same SMTP server and client on netstack's own TCP streams (two stacks over the in-memory link).

Only the stream starter/opener differ from the kernel tests: that is the
one-line swap.  With a lossy link (FaultyLink) nothing is lost or duplicated.
"""
from __future__ import annotations

import asyncio
import functools
import os

from tests.support.sockets_fixtures import A_ADDR, B_ADDR, fast_config, stack_pair

from netstack.sockets.streams import open_connection, start_server
from smtp.client import SmtpClient, send_message
from smtp.server import SmtpServer
from smtp.session import SessionConfig
from smtp.tls import client_context, generate_self_signed, server_context


def _server(maildir, **kw):
    return SmtpServer(SessionConfig(hostname="mx.example.test", local_domains=("localhost", f"[{B_ADDR}]")),
                      maildir=str(maildir), **kw)


def test_starttls_send_over_netstack_streams(tmp_path):
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    generate_self_signed(cert, key, ips=(B_ADDR,))
    body = b"Subject: over netstack\r\n\r\n" + b"0123456789abcdef\r\n" * 20000 + b".dot\r\n"

    async def go():
        async with stack_pair() as (a, b):
            server = _server(tmp_path / "mail", tls_context=server_context(cert, key))
            srv = await server.start(functools.partial(start_server, b, port=25))
            opener = functools.partial(open_connection, a)
            try:
                return await send_message(opener, B_ADDR, 25, "alice@remote.test", [f"bob@[{B_ADDR}]"], body,
                                          tls_context=client_context(cafile=cert), server_hostname=B_ADDR)
            finally:
                srv.close()

    r = asyncio.run(go())
    assert r.tls and r.pipelined and r.queue_id
    (name,) = os.listdir(tmp_path / "mail" / "bob" / "new")
    data = (tmp_path / "mail" / "bob" / "new" / name).read_bytes()
    assert data.endswith(b"\r\n" + body)
    assert f"Received: from localhost ([{A_ADDR}])\r\n".encode() in data and b"with ESMTPS" in data


def test_many_messages_over_a_lossy_link_delivered_exactly_once(tmp_path):
    async def go():
        async with stack_pair(faults={"loss": 0.03, "reorder": 0.05, "seed": 7},
                              config_a=fast_config(), config_b=fast_config()) as (a, b):
            server = _server(tmp_path / "mail")
            srv = await server.start(functools.partial(start_server, b, port=25))

            async def client(n):
                c = await SmtpClient.connect(functools.partial(open_connection, a), B_ADDR, 25)
                await c.ehlo()
                for i in range(5):
                    await c.send("a@remote.test", ["bob@localhost"], b"Message-ID: <%d.%d@t>\r\n\r\nx\r\n" % (n, i))
                await c.quit()
            try:
                await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(4))), 60)
            finally:
                srv.close()
            return server.accepted

    assert asyncio.run(go()) == 20
    new = tmp_path / "mail" / "bob" / "new"
    ids = sorted((new / f).read_bytes().split(b"Message-ID: <")[1].split(b"@")[0] for f in os.listdir(new))
    assert ids == sorted(b"%d.%d" % (n, i) for n in range(4) for i in range(5))
