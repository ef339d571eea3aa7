"""The control socket over a real Unix socket, and `netstack ss` / `netstack stats` as
commands against it: two in-memory stacks on a background loop, no root needed.
(`netstack serve` with its socket under /run/netstack is in tests/integration/test_serve_daemon.py.)"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from netstack.control import MAX_REQUEST, ControlServer, ControlSocketBusy
from netstack.services import echo
from netstack.sockets import open_connection, start_server
from netstack.sockets.blocking import StackThread, background
from tests.support.labkit import REPO, _env
from tests.support.sockets_fixtures import B_ADDR, blocking_pair

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running(tmp_path):
    """Stacks A and B on a loop thread, an echo server on B:7, B's control socket, and
    one connection A -> B:7 held open.  Yields (runner, a, b, control, path)."""
    path = str(tmp_path / "ctl" / "b.sock")
    with blocking_pair() as (a, b):
        runner = background(b)

        async def setup():
            server = await start_server(b, echo, port=7)
            control = await ControlServer(b, path).start()
            reader, writer = await open_connection(a, B_ADDR, 7)
            writer.write(b"hello\n")
            assert await reader.readline() == b"hello\n"
            return server, control, writer
        server, control, writer = runner.call(setup(), 20)
        try:
            yield runner, a, b, control, path
        finally:
            async def teardown():
                writer.close()
                control.close()
                await control.wait_closed()
                server.close()
            runner.call(teardown(), 20)


def netstack(*argv, timeout=30):
    return subprocess.run([sys.executable, "-m", "netstack", *argv], capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=str(REPO))


def ask(path, *lines: bytes) -> list:
    """Send raw request lines on one connection; the replies (one per line until EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_socket_is_mode_0600_and_removed_at_close(running):
    runner, a, b, control, path = running
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    runner.call(_close(control), 10)
    assert not os.path.exists(path)


async def _close(control):
    control.close()
    await control.wait_closed()


def test_ss_command(running):
    _, _, _, _, path = running
    r = netstack("ss", "-tanio", "--socket", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["State", "Recv-Q", "Send-Q", "Local", "Address:Port"]
    # the accept queue (empty) and start_server's backlog (100, as asyncio's)
    assert any(l.split()[:5] == ["LISTEN", "0", "100", f"{B_ADDR}:7", "0.0.0.0:*"] for l in lines), r.stdout
    estab = [i for i, l in enumerate(lines) if l.startswith("ESTAB")]
    assert len(estab) == 1
    detail = lines[estab[0] + 1]
    assert detail.startswith("\t ") and "cwnd:" in detail and "cwnd_bytes:" in detail and "segs_in:" in detail
    r = netstack("ss", "--socket", path)                            # default: connected sockets only
    assert r.returncode == 0 and "LISTEN" not in r.stdout and "ESTAB" in r.stdout
    r = netstack("ss", "-l", "-n", "--socket", path)
    assert "LISTEN" in r.stdout and "ESTAB" not in r.stdout


def test_stats_command_text_and_json(running):
    _, _, _, _, path = running
    r = netstack("stats", "--socket", path)
    assert r.returncode == 0, r.stderr
    rows = dict(l.split()[:2] for l in r.stdout.splitlines() if l and not l.startswith("#"))
    assert rows["TcpPassiveOpens"] == "1" and rows["TcpCurrEstab"] == "1" and int(rows["TcpInSegs"]) >= 3
    assert r.stdout.startswith(f"#netstack {B_ADDR} pid {os.getpid()}")
    r = netstack("stats", "--json", "--socket", path)
    data = json.loads(r.stdout)
    assert data["mib"]["TcpPassiveOpens"] == 1 and data["gauges"]["tcp.listeners"] == 1
    assert data["counters"]["tcp.passive_opens"] == 1
    r1 = netstack("stats", "--delta", "--socket", path)
    r2 = netstack("stats", "--delta", "--json", "--socket", path)
    assert "delta over" in r1.stdout
    assert json.loads(r2.stdout)["mib"]["TcpPassiveOpens"] == 0          # nothing new since r1


def test_malformed_requests_get_error_replies_and_the_stack_keeps_running(running):
    runner, a, b, control, path = running
    replies = ask(path, b"garbage\n", b'{"op": 1}\n', b"[]\n", b"\n", b'{"op": "ss"}\n')
    assert [r["ok"] for r in replies] == [False, False, False, True]      # the blank line is skipped
    assert "not JSON" in replies[0]["error"] and "unknown op" in replies[1]["error"]
    (too_long,) = ask(path, b"x" * (MAX_REQUEST * 4) + b"\n", b'{"op": "ss"}\n')   # then closed
    assert too_long["ok"] is False and "longer than" in too_long["error"]
    assert ask(path, b'{"op": "ping"}\n')[0]["ok"]

    async def still_echoes():
        reader, writer = await open_connection(a, B_ADDR, 7)
        writer.write(b"after\n")
        line = await reader.readline()
        writer.close()
        return line
    assert runner.call(still_echoes(), 20) == b"after\n"


def test_stale_socket_is_replaced_but_a_live_one_is_not(running, tmp_path):
    runner, a, b, control, path = running
    with pytest.raises(ControlSocketBusy):
        runner.call(ControlServer(b, path).start(), 10)
    assert os.path.exists(path)                                         # the live one is untouched
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()                                                           # a socket file nobody serves
    second = runner.call(ControlServer(b, stale).start(), 10)
    assert ask(stale, b'{"op": "ping"}\n')[0]["ok"]
    runner.call(_close(second), 10)
    regular = tmp_path / "file.sock"
    regular.write_text("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        runner.call(ControlServer(b, str(regular)).start(), 10)
    assert regular.read_text() == "not a socket"


def test_no_stack_is_one_line_exit_1(tmp_path):
    for cmd in ("ss", "stats"):
        r = netstack(cmd, "--socket", str(tmp_path / "none.sock"))
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"netstack {cmd}: no running stack")
    r = netstack("ss", "--netns", "a/b")
    assert r.returncode == 2 and "not a namespace name" in r.stderr
