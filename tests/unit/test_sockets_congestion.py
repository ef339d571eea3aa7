"""TCP_CONGESTION on the blocking facade, and --tcp-cc on `netstack serve`."""
from __future__ import annotations

import errno
import socket as std_socket

import pytest

from netstack.cli import build_parser
from netstack.cli import tcp_options as tcp_serve
from netstack.sockets import blocking
from netstack.sockets.options import TCP_CONGESTION, SocketOptions
from netstack.tcp import TCPConfig
from tests.support.sockets_fixtures import B_ADDR, blocking_pair

IPPROTO_TCP = std_socket.IPPROTO_TCP


def test_serve_tcp_cc_reaches_the_config():
    parse = build_parser().parse_args
    assert tcp_serve.config_from_args(parse(["serve"]), 1500).congestion == "cubic"
    cfg = tcp_serve.config_from_args(parse(["serve", "--tcp-cc", "newreno", "--tcp-loss-detection", "rfc6675"]),
                                     1500)
    assert (cfg.congestion, cfg.loss_detection) == ("newreno", "rfc6675")
    with pytest.raises(SystemExit):
        parse(["serve", "--tcp-cc", "bbr"])


def test_option_table_parses_names_and_rejects_unknown():
    opts = SocketOptions()
    assert opts.set(IPPROTO_TCP, TCP_CONGESTION, b"newreno\0\0\0") == {"congestion": "newreno"}
    assert opts.set(IPPROTO_TCP, TCP_CONGESTION, b"reno") == {"congestion": "newreno"}
    assert opts.get(IPPROTO_TCP, TCP_CONGESTION) == b"newreno"
    assert opts.get(IPPROTO_TCP, TCP_CONGESTION, buflen=16) == b"newreno".ljust(16, b"\0")
    with pytest.raises(OSError) as e:
        opts.set(IPPROTO_TCP, TCP_CONGESTION, b"bbr")
    assert e.value.errno == errno.ENOENT
    assert SocketOptions().get(IPPROTO_TCP, TCP_CONGESTION, defaults=TCPConfig(congestion="newreno")) == b"newreno"


@pytest.mark.timeout(10)
def test_blocking_socket_switches_congestion_control():
    with blocking_pair() as (a, b):
        c = blocking.socket(a)
        assert c.getsockopt(IPPROTO_TCP, TCP_CONGESTION) == b"cubic"          # the stack's default
        c.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"newreno")                 # before connect: kept
        srv = blocking.socket(b)
        srv.bind(("", 7102))
        srv.listen()
        c.connect((B_ADDR, 7102))
        conn, _ = srv.accept()
        try:
            tc = c._connection()
            assert tc.cc.name == "newreno" and tc.info()["cc"] == "newreno"
            assert conn._connection().cc.name == "cubic"
            c.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"cubic")               # connected: switches
            assert tc.cc.name == "cubic" and c.getsockopt(IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
            c.sendall(b"x" * 100_000)
            got = b""
            while len(got) < 100_000:
                got += conn.recv(65536)
            assert got == b"x" * 100_000
        finally:
            conn.close()
            c.close()
            srv.close()
