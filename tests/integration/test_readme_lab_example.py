"""The README's lab example runs as written, with the kernel's listener it talks to.

Two textual changes only, both forced by the shared machine: the namespace and
device names become unique ones, and the namespace is made beforehand (the lab
uses an existing namespace and keeps it) so that a kernel listener on port 8080
can wait inside it before the example starts.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.labkit import _env, remove_netns_we_created
from tests.support.nstest import require_tun, unique_lab_name
from tests.support.readme import needs_root, python_blocks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LISTENER = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen()
print("listening", flush=True)
s.settimeout(30)
c, _ = s.accept()
c.sendall(c.makefile("rb").readline().upper())
c.close()
"""


def test_lab_example_runs_as_written(capsys):
    require_tun()
    blocks = [b for b in python_blocks() if needs_root(b)]
    assert len(blocks) == 1
    block = blocks[0]
    assert 'netns="mylab", ifname="mylab0"' in block
    name = unique_lab_name()
    block = block.replace('netns="mylab", ifname="mylab0"', f'netns="{name}", ifname="{name}"')
    from pyroute2 import netns
    netns.create(name)
    listener = None
    try:
        listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", LISTENER],
                                    stdout=subprocess.PIPE, text=True, env=_env())
        assert listener.stdout.readline().strip() == "listening"
        exec(compile(block, "README.md", "exec"), {"__name__": "__main__"})
        assert capsys.readouterr().out == "b'HELLO\\n'\n"
        assert listener.wait(timeout=10) == 0
    finally:
        if listener is not None and listener.poll() is None:
            listener.kill()                         # our own child, by PID
            listener.wait(timeout=5)
        remove_netns_we_created(name)
