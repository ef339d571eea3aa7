"""The unit tier's guard: a unit test may not reach outside the Python process.

While a test marked ``unit`` runs (tests/conftest.py applies it to every test in
tests/unit/), these raise :class:`UnitTierViolation` instead of doing anything:

- creating a socket of any family but AF_UNIX (AF_INET, AF_INET6, AF_NETLINK,
  AF_PACKET, ...): kernel TCP/UDP/raw sockets, loopback included.  AF_UNIX stays
  allowed because asyncio's event loop makes its self-pipe with socket.socketpair();
- starting a process: subprocess.Popen (so subprocess.run, asyncio's subprocesses
  and every external tool), os.system, os.fork/forkpty, os.posix_spawn(p), os.exec*;
- opening /dev/net/tun, by open()/os.open() or python-pytun.

The guard is on from the first function-scoped fixture of a test (the autouse fixture
that installs it runs first) to the last teardown; module- and session-scoped fixtures
are made outside it, so a unit test module keeps those pure by hand.

The guard is not an OSError, so code that handles network errors cannot mistake it
for one; and every refusal is recorded, so a violation that the code under test
catches and swallows still fails the test when the guard comes off.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import os
import platform
import socket
import subprocess
from collections.abc import Iterator

import pytest

TUN_PATH = "/dev/net/tun"
ALLOWED_SOCKET_FAMILIES = frozenset({socket.AF_UNIX})
PROCESS_FUNCTIONS = ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve")


class UnitTierViolation(Exception):
    """A unit test reached for a kernel socket, a subprocess or the TUN device."""


def _family_name(family) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return str(family)


def _is_tun(file) -> bool:
    if isinstance(file, int):
        return False
    try:
        return os.path.abspath(os.fsdecode(os.fspath(file))) == TUN_PATH
    except TypeError:
        return False


class UnitGuard:
    """The patches for one test; see :func:`unit_tier_guard`."""

    def __init__(self, nodeid: str):
        self.nodeid = nodeid
        self.violations: list[str] = []

    def refuse(self, what: str):
        self.violations.append(what)
        raise UnitTierViolation(
            f"{what} in a unit test ({self.nodeid}): the unit tier is pure (no kernel sockets, "
            f"subprocesses, external tools or TUN); put this test in tests/system/ or tests/integration/")

    def take_violations(self) -> list[str]:
        """The refusals so far, forgotten (for a test that provokes one on purpose)."""
        taken, self.violations = self.violations, []
        return taken

    def install(self, mp: pytest.MonkeyPatch) -> None:
        # The standard library runs `uname -p` once per process, on the first platform.uname()
        # (platform.platform(), as in bench reports, needs it).  Its answer is cached: ask before
        # the guard goes on, so whether a unit test spawns it does not depend on test order.
        platform.uname().processor
        guard = self
        real_socket_init = socket.socket.__init__

        def socket_init(sock, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None:
                wanted = socket.AF_INET if family == -1 else family
                if wanted not in ALLOWED_SOCKET_FAMILIES:
                    guard.refuse(f"socket.socket({_family_name(wanted)})")
            real_socket_init(sock, family, type, proto, fileno)
            if sock.family not in ALLOWED_SOCKET_FAMILIES:       # wrapped an existing fd
                sock.close()
                guard.refuse(f"socket.socket({_family_name(sock.family)}, fileno=...)")

        def popen_init(proc, args, *rest, **kwargs):
            guard.refuse(f"subprocess.Popen({args!r})")

        mp.setattr(socket.socket, "__init__", socket_init)
        mp.setattr(subprocess.Popen, "__init__", popen_init)
        for name in PROCESS_FUNCTIONS:
            if hasattr(os, name):
                mp.setattr(os, name, self._refusing(f"os.{name}"))

        real_open, real_os_open = builtins.open, os.open

        def open_(file, *args, **kwargs):
            if _is_tun(file):
                guard.refuse(f"open({TUN_PATH!r})")
            return real_open(file, *args, **kwargs)

        def os_open(path, *args, **kwargs):
            if _is_tun(path):
                guard.refuse(f"os.open({TUN_PATH!r})")
            return real_os_open(path, *args, **kwargs)

        mp.setattr(builtins, "open", open_)
        mp.setattr(io, "open", open_)
        mp.setattr(os, "open", os_open)
        try:
            import pytun
        except ImportError:
            pass
        else:
            mp.setattr(pytun, "TunTapDevice", self._refusing(f"pytun.TunTapDevice ({TUN_PATH})"))

    def _refusing(self, what: str):
        def refused(*args, **kwargs):
            self.refuse(what)
        return refused


@contextlib.contextmanager
def unit_tier_guard(nodeid: str) -> Iterator[UnitGuard]:
    """Refuse kernel sockets, processes and the TUN inside the block; fail if one was tried."""
    guard = UnitGuard(nodeid)
    mp = pytest.MonkeyPatch()
    try:
        guard.install(mp)
        yield guard
    finally:
        mp.undo()
    if guard.violations:
        pytest.fail(f"{nodeid} tried to reach outside the process (the unit tier forbids it): "
                    + "; ".join(guard.violations), pytrace=False)
