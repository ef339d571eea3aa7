"""An in-memory link pair: two endpoints in one process, for deterministic tests.

``a, b = MemoryLink.pair()``: what ``a`` sends, ``b`` receives (and back).
Without an event loop the pair is fully synchronous: ``a.send(p)`` then
``b.recv_batch()`` returns ``p``.  Attached to an asyncio loop, a send schedules
the peer's ``on_readable`` on the peer's loop (once per burst): with
``loop.call_soon`` from the peer loop's own thread, with
``loop.call_soon_threadsafe`` from any other thread, so the two ends may run on
two loops in two threads (as the blocking facade does by default).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from netstack.link.base import Link, PacketMeta

__all__ = ["MemoryLink"]


class MemoryLink(Link):
    """One endpoint of an in-memory pair (see :meth:`pair`)."""

    def __init__(self, mtu: int = 1500, name: str = "memory", *, queue_limit: int = 100_000,
                 offload: bool = False) -> None:
        self.mtu = mtu
        #: as a TUN with offloads: packets carry PacketMeta (super-segments, partial checksums)
        #: both ways, handed over as they are (the peer stands for the kernel's GRO/TSO)
        self.offload = offload
        self.name = name
        self.queue_limit = queue_limit
        self.peer: MemoryLink | None = None
        self._inbox: deque[tuple[bytes, PacketMeta | None]] = deque()
        self._loop = None
        self._thread: int | None = None      # ident of the thread running _loop
        self._on_readable: Callable[[], None] | None = None
        self._scheduled = False
        self.closed = False
        self.sent = 0
        self.received = 0
        self.dropped = 0          # peer's queue full or peer closed

    @classmethod
    def pair(cls, mtu: int = 1500, **kw) -> tuple["MemoryLink", "MemoryLink"]:
        a = cls(mtu, "memory:a", **kw)
        b = cls(mtu, "memory:b", **kw)
        a.peer, b.peer = b, a
        return a, b

    def send(self, data, meta: PacketMeta | None = None) -> None:
        if self.closed:
            raise OSError("link is closed")
        peer = self.peer
        self.sent += 1
        if peer is None or peer.closed or len(peer._inbox) >= peer.queue_limit:
            self.dropped += 1
            return
        peer._inbox.append((bytes(data), meta))
        peer._notify()

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and self._on_readable is not None and not self._scheduled:
            self._scheduled = True
            if threading.get_ident() == self._thread:
                loop.call_soon(self._fire)
            else:                                   # the sender runs another loop, in another thread
                try:
                    loop.call_soon_threadsafe(self._fire)
                except RuntimeError:                # that loop is closed: nobody will read
                    self._scheduled = False

    def _fire(self) -> None:
        # Cleared before reading the inbox: a packet appended by another thread after this
        # point schedules a new call, one appended before it is read here.
        self._scheduled = False
        if self._on_readable is not None and self._inbox:
            self._on_readable()
            if self._inbox:          # more than one batch waiting: come back
                self._notify()

    def recv_batch(self, max_packets: int = 64):
        inbox = self._inbox
        n = min(max_packets, len(inbox))
        out = []
        for _ in range(n):
            data, meta = inbox.popleft()
            out.append((memoryview(data), meta))
        self.received += n
        return out

    def pending(self) -> int:
        return len(self._inbox)

    def attach(self, loop, on_readable) -> None:
        """Call ``on_readable`` on ``loop`` when packets arrive; call this from the loop's thread."""
        self._loop = loop
        self._thread = threading.get_ident()
        self._on_readable = on_readable
        if self._inbox:
            self._notify()

    def detach(self) -> None:
        self._on_readable = None
        self._loop = None
        self._thread = None
        self._scheduled = False

    def close(self) -> None:
        self.detach()
        self.closed = True
        self._inbox.clear()
