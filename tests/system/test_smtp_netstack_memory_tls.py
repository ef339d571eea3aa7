"""STARTTLS and a 360 KB message over netstack's own TCP streams (two stacks over the in-memory link).

A system test only because of its certificate: smtp.tls.generate_self_signed runs the
openssl command when the `cryptography` package is not installed.  The rest of SMTP over
these streams is in tests/unit/test_smtp_netstack_memory.py.
"""
from __future__ import annotations

import asyncio
import functools
import os

import pytest

from netstack.sockets.streams import create_server, open_connection, start_server
from smtp.client import send_message
from smtp.server import SmtpServer
from smtp.session import SessionConfig
from smtp.tls import client_context, generate_self_signed, server_context
from tests.support.sockets_fixtures import A_ADDR, B_ADDR, stack_pair


def _server(maildir, **kw):
    return SmtpServer(SessionConfig(hostname="mx.example.test", local_domains=("localhost", f"[{B_ADDR}]")),
                      maildir=str(maildir), **kw)


@pytest.mark.parametrize("driver", ["streams", "protocol"])
def test_starttls_send_over_netstack_streams(tmp_path, driver):
    """On stream pairs, or as a protocol on netstack's transport that STARTTLS moves onto streams."""
    cert, key = str(tmp_path / "c.pem"), str(tmp_path / "k.pem")
    generate_self_signed(cert, key, ips=(B_ADDR,))
    body = b"Subject: over netstack\r\n\r\n" + b"0123456789abcdef\r\n" * 20000 + b".dot\r\n"

    async def go():
        async with stack_pair() as (a, b):
            server = _server(tmp_path / "mail", tls_context=server_context(cert, key))
            if driver == "protocol":
                srv = await server.start_protocol(functools.partial(create_server, b, port=25))
            else:
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
