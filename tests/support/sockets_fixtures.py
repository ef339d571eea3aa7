"""Two netstack Stacks wired back to back over the in-memory link, for the
socket-layer tests (tests/unit/test_sockets_*.py) and SMTP over netstack streams.

Real asyncio loop and real time: the socket layer is the asyncio driver of the
sans-I/O TCP core, so these tests exercise exactly what applications run.
RTO bounds are lowered so that loss recovery over a zero-delay link does not
wait whole seconds.
"""
from __future__ import annotations

import contextlib

from netstack.link.faults import FaultyLink
from netstack.link.memory import MemoryLink
from netstack.stack import Stack
from netstack.tcp import TCPConfig

A_ADDR = "10.9.0.1"
B_ADDR = "10.9.0.2"


def fast_config(**kw) -> TCPConfig:
    base = dict(rto_initial=0.2, rto_min=0.05, rto_max=2.0, msl=0.5, fin_timeout=2.0)
    base.update(kw)
    return TCPConfig(**base)


def make_stack(link, addr: str, config: TCPConfig | None = None) -> Stack:
    return Stack(link, addr, tcp=config or fast_config())


@contextlib.asynccontextmanager
async def stack_pair(*, config_a: TCPConfig | None = None, config_b: TCPConfig | None = None,
                     faults: dict | None = None, mtu: int = 1500, offload: bool = False, wrap_a=None):
    """``async with stack_pair() as (a, b):`` two running stacks A (10.9.0.1) and B (10.9.0.2).

    With ``faults`` (FaultyLink keywords), A's link impairs both directions;
    ``offload``: the links carry offload metadata (TSO super-segments, partial
    checksums) as a TUN with offloads does; ``wrap_a(link)`` may wrap A's link.
    """
    la, lb = MemoryLink.pair(mtu=mtu, offload=offload)
    if faults:
        la = FaultyLink(la, **faults)
    if wrap_a is not None:
        la = wrap_a(la)
    a = make_stack(la, A_ADDR, config_a)
    b = make_stack(lb, B_ADDR, config_b)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def blocking_pair(*, wrap_a=None, config_b: TCPConfig | None = None):
    """``with blocking_pair() as (a, b):`` two stacks over an in-memory link on
    one background loop thread, for the blocking facade (its sockets are
    driven from plain threads).  ``wrap_a(link)`` may wrap A's link (e.g. in a FaultyLink)."""
    from netstack.sockets.blocking import StackThread, background
    la, lb = MemoryLink.pair()
    a = make_stack(wrap_a(la) if wrap_a else la, A_ADDR)
    b = make_stack(lb, B_ADDR, config_b)
    runner = StackThread()
    background(a, share=runner)
    background(b, share=runner)
    try:
        yield a, b
    finally:
        runner.stop()
        assert not runner.thread.is_alive()
