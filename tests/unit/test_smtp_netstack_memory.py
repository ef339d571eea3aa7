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

import pytest

from tests.support.sockets_fixtures import B_ADDR, fast_config, stack_pair

from netstack.sockets.streams import create_server, open_connection, start_server
from smtp.client import SmtpClient
from smtp.server import SmtpServer
from smtp.session import SessionConfig


def _start(server, stack, driver):
    """Our server on ``stack`` port 25: conversations on stream pairs, or as protocols on the
    transports (what ``netstack serve`` runs)."""
    if driver == "protocol":
        return server.start_protocol(functools.partial(create_server, stack, port=25))
    return server.start(functools.partial(start_server, stack, port=25))


def _server(maildir, **kw):
    return SmtpServer(SessionConfig(hostname="mx.example.test", local_domains=("localhost", f"[{B_ADDR}]")),
                      maildir=str(maildir), **kw)


@pytest.mark.parametrize("driver", ["streams", "protocol"])
def test_many_messages_over_a_lossy_link_delivered_exactly_once(tmp_path, driver):
    async def go():
        async with stack_pair(faults={"loss": 0.03, "reorder": 0.05, "seed": 7},
                              config_a=fast_config(), config_b=fast_config()) as (a, b):
            server = _server(tmp_path / "mail")
            srv = await _start(server, b, driver)

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


def _segments_from(pcap: bytes, src: str):
    """(flags, payload length) of each TCP segment ``src`` sent, in order, from a raw-IPv4 pcap."""
    import io
    import ipaddress

    from netstack.capture.pcap import read_pcap
    from netstack.wire.ipv4 import parse_ipv4
    from netstack.wire.tcp import parse_tcp

    out = []
    for rec in read_pcap(io.BytesIO(pcap)):
        ip = parse_ipv4(bytes(rec.data), verify=False)
        if ip.protocol == 6 and ip.src == int(ipaddress.IPv4Address(src)):
            seg = parse_tcp(ip.payload, verify=False)
            out.append((seg.flags & 0x3F, len(seg.payload)))
    return out


@pytest.mark.parametrize("driver", ["streams", "protocol"])
def test_an_smtp_transaction_costs_the_server_eight_segments_and_no_pure_ack(driver):
    """One message the way Postfix's smtp-source sends it (a new connection, one command per round
    trip, no pipelining, a reset after the 221): the server sends its SYN-ACK, the six replies and
    the 221 with its FIN, eight segments; every ACK rides on a reply (Linux, for the same exchange,
    sends ten: a pure ACK of EHLO and a FIN of its own)."""
    import io

    from netstack.link.capture import CaptureLink
    from netstack.wire.tcp import ACK, FIN, PSH, SYN
    from smtp.delivery import MemorySink

    pcap = io.BytesIO()

    async def go():
        async with stack_pair(offload=True, wrap_a=lambda link: CaptureLink(link, pcap=pcap)) as (a, b):
            server = SmtpServer(SessionConfig(hostname="mx.example.test"), delivery=MemorySink())
            srv = await _start(server, b, driver)
            reader, writer = await open_connection(a, B_ADDR, 25)

            async def reply():
                while (line := await reader.readline())[3:4] == b"-":
                    pass
                return line[:3]

            codes = [await reply()]
            for cmd in (b"EHLO client.test\r\n", b"MAIL FROM:<a@remote.test>\r\n", b"RCPT TO:<bob@example.test>\r\n",
                        b"DATA\r\n", b"Subject: t\r\n\r\n" + (b"y" * 64 + b"\r\n") * 32 + b".\r\n", b"QUIT\r\n"):
                writer.write(cmd)
                codes.append(await reply())
            writer.transport.abort()                   # smtp-source resets after the 221 (SO_LINGER 0)
            await asyncio.sleep(0.05)
            srv.close()
            return codes, server.accepted

    codes, accepted = asyncio.run(go())
    assert codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"] and accepted == 1
    sent = _segments_from(pcap.getvalue(), B_ADDR)
    assert [f for f, _ in sent] == [SYN | ACK] + [PSH | ACK] * 6 + [FIN | PSH | ACK]
    assert all(n > 0 for _, n in sent[1:])             # no pure ACK
