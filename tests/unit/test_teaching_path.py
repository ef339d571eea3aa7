"""The root-free teaching path: the package's top-level names, and the blocking facade
over two in-memory stacks exactly as a first script would use it (no shared runner given)."""
from __future__ import annotations

import threading

import pytest

import netstack

pytestmark = pytest.mark.timeout(60)


def test_top_level_names():
    from netstack import MemoryLink, Stack
    from netstack.link.memory import MemoryLink as ML
    from netstack.stack import Stack as S
    assert Stack is S and MemoryLink is ML
    assert {"Stack", "MemoryLink"} <= set(netstack.__all__)
    with pytest.raises(AttributeError):
        netstack.NoSuchThing


def _blocking_roundtrip(out: dict) -> None:
    from netstack import MemoryLink, Stack
    try:
        la, lb = MemoryLink.pair()
        a, b = Stack(la, "10.0.0.1"), Stack(lb, "10.0.0.2")
        srv = b.socket()                    # each stack gets its loop thread on first use
        srv.bind(("", 7))
        srv.listen()
        c = a.socket()
        c.settimeout(8)
        srv.settimeout(8)
        c.connect(("10.0.0.2", 7))
        conn, _ = srv.accept()
        c.sendall(b"ping")
        out["got"] = conn.recv(100)
        conn.sendall(b"pong")
        out["back"] = c.recv(100)
        for s in (c, conn, srv):
            s.close()
        out["stacks"] = (a, b)
    except BaseException as exc:            # surfaced in the test thread
        out["error"] = exc


def test_blocking_facade_over_two_memory_stacks_out_of_the_box():
    """Each stack on its own loop thread by default: the memory link must wake its peer
    thread-safely (it used loop.call_soon from the other loop's thread, and hung)."""
    from netstack.sockets.blocking import background
    out: dict = {}
    t = threading.Thread(target=_blocking_roundtrip, args=(out,), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "blocking facade over two in-memory stacks hung"
    if "error" in out:
        raise out["error"]
    assert out["got"] == b"ping" and out["back"] == b"pong"
    for st in out["stacks"]:
        background(st).stop()
