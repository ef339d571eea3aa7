"""The unit tier's guard (tests/support/unit_guard.py, switched on by tests/conftest.py) is on
in every unit test: kernel sockets, processes and the TUN raise, AF_UNIX and asyncio still work.

``unit_guard`` is the autouse fixture itself; these tests ask for it only to clear the
refusals they provoke on purpose (a refusal left over fails the test at teardown).
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from tests.support.unit_guard import UnitTierViolation, unit_tier_guard


def test_this_test_is_marked_unit_by_its_directory(request):
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("system") is None
    assert request.node.get_closest_marker("integration") is None


def test_a_tcp_socket_is_refused(unit_guard):
    with pytest.raises(UnitTierViolation, match=r"socket\.socket\(AF_INET\) in a unit test"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(UnitTierViolation, match=r"AF_INET\)"):
        socket.socket()                                   # the default family is AF_INET
    assert unit_guard.take_violations() == ["socket.socket(AF_INET)"] * 2


@pytest.mark.parametrize("family,kind", [
    (socket.AF_INET, socket.SOCK_DGRAM),
    (socket.AF_INET6, socket.SOCK_STREAM),
    (socket.AF_NETLINK, socket.SOCK_RAW),
], ids=["udp", "tcp6", "netlink"])
def test_other_kernel_sockets_are_refused(unit_guard, family, kind):
    with pytest.raises(UnitTierViolation):
        socket.socket(family, kind)
    assert unit_guard.take_violations() == [f"socket.socket({family.name})"]


def test_loopback_connections_are_refused(unit_guard):
    with pytest.raises(UnitTierViolation):
        socket.create_connection(("127.0.0.1", 9), timeout=1)

    async def connect():
        await asyncio.open_connection("127.0.0.1", 9)

    with pytest.raises(UnitTierViolation):
        asyncio.run(connect())
    assert len(unit_guard.take_violations()) == 2


def test_processes_are_refused(unit_guard):
    with pytest.raises(UnitTierViolation, match=r"subprocess\.Popen"):
        subprocess.run([sys.executable, "-c", "pass"])
    with pytest.raises(UnitTierViolation, match=r"os\.system"):
        os.system("true")

    async def spawn():
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")

    with pytest.raises(UnitTierViolation, match=r"subprocess\.Popen"):
        asyncio.run(spawn())
    assert len(unit_guard.take_violations()) == 3


def test_the_tun_device_is_refused(unit_guard):
    with pytest.raises(UnitTierViolation, match="/dev/net/tun"):
        open("/dev/net/tun", "rb")
    with pytest.raises(UnitTierViolation, match="/dev/net/tun"):
        os.open("/dev/net/tun", os.O_RDWR)
    assert len(unit_guard.take_violations()) == 2
    # python-pytun opens the device in C, so the guard replaces pytun.TunTapDevice too; not
    # called here, so that a broken guard could never make a device in the root namespace.


def test_unix_sockets_files_and_event_loops_still_work(tmp_path):
    a, b = socket.socketpair()                            # asyncio's self-pipe is made like this
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    (tmp_path / "f").write_text("ok")
    with open(tmp_path / "f") as f:
        assert f.read() == "ok"

    async def echo_over_a_pipe():
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(echo_over_a_pipe()) == "done"


def test_a_swallowed_violation_still_fails_the_test():
    with pytest.raises(pytest.fail.Exception, match=r"socket\.socket\(AF_INET\)"):
        with unit_tier_guard("demo"):
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except Exception:
                pass                                      # code under test that hides errors
