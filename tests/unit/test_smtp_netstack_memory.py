"""The same SMTP server and client on netstack's own TCP streams (two stacks over the in-memory link).

Only the stream starter/opener differ from the kernel tests: that is the
one-line swap.  With a lossy link (FaultyLink) nothing is lost or duplicated.
STARTTLS over these streams is in tests/system/test_smtp_netstack_memory_tls.py
(making its certificate may run the openssl command).
"""
from __future__ import annotations

import asyncio
import functools
import os

from tests.support.sockets_fixtures import B_ADDR, fast_config, stack_pair

from netstack.sockets.streams import open_connection, start_server
from smtp.client import SmtpClient
from smtp.server import SmtpServer
from smtp.session import SessionConfig


def _server(maildir, **kw):
    return SmtpServer(SessionConfig(hostname="mx.example.test", local_domains=("localhost", f"[{B_ADDR}]")),
                      maildir=str(maildir), **kw)


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
