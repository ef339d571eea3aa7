"""A listening socket: SYN queue and accept queue (RFC 9293 §3.10.7.2).

A SYN to a listening port creates a Connection in SYN-RECEIVED that waits
in the SYN queue; when the handshake completes it moves to the accept queue,
and ``accept()`` hands it to the user.  Both queues are bounded by the
backlog.  A SYN that finds the SYN queue full is answered with a SYN
cookie (syncookies.py; ``TCPConfig.syncookies``), or dropped and counted
(``tcp.listen.drops``) when cookies are off; one that finds the accept queue
full is dropped (``tcp.listen.overflows``): the peer retransmits later.

The listener makes connections through :class:`ListenerHost` (the layer):
it never touches the layer's members, and the layer tells it of its
connections' progress through :meth:`Listener.connection_established` and
:meth:`Listener.connection_closed`.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol

from netstack.wire.tcp import ACK, RST, SYN

from .events import ListenerEvent
from .state import CLOSED, LISTEN, State
from .syncookies import SynCookieMode

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger("netstack.tcp")


class ListenerHost(Protocol):
    """What a listener asks of the TCP layer."""

    def count(self, name: str, n: int = 1) -> None: ...

    def reset_segment(self, src: int, dst: int, seg) -> None:
        """Answer ``seg`` (from ``src`` to ``dst``) with an RST (RFC 9293 §3.10.7.1)."""

    #: When to answer with SYN cookies.
    syncookies: SynCookieMode

    def open_passive(self, listener: "Listener", src: int, dst: int, seg, now: float) -> "Connection | None":
        """Make, register and open a connection for this SYN (it sends the SYN-ACK); None if a
        resource limit refused it (the host answered with an RST)."""

    def send_syn_cookie(self, src: int, dst: int, seg, now: float) -> None:
        """Answer this SYN with a SYN cookie and keep no state."""

    def accept_cookie(self, listener: "Listener", src: int, dst: int, seg, now: float) -> "Connection | None":
        """The ESTABLISHED connection a valid cookie in this ACK stands for, or None."""

    def unlisten(self, listener: "Listener") -> None:
        """The listener closed: free its port."""


class Listener:
    def __init__(self, host: ListenerHost, port: int, backlog: int = 128, *, nodelay: bool | None = None):
        self.host = host
        self.port = port
        self.backlog = max(1, backlog)
        self.nodelay = nodelay
        self.syn_queue: dict = {}          # (remote_addr, remote_port) -> Connection in SYN-RECEIVED
        self.accept_queue: deque = deque()
        self.on_event = None               # called with ListenerEvent.ACCEPTABLE (the socket layer sets it)
        self.events: deque = deque(maxlen=64)
        self.closed = False

    def __repr__(self):
        return f"<Listener :{self.port} syn={len(self.syn_queue)} accept={len(self.accept_queue)}>"

    @property
    def state(self) -> State:
        """LISTEN while open, CLOSED after close() (RFC 9293 §3.3.2)."""
        return CLOSED if self.closed else LISTEN

    @property
    def pending(self) -> int:
        """Connections ready for accept()."""
        return len(self.accept_queue)

    def info(self) -> dict:
        """A snapshot for the connection table, in ss's shape for a LISTEN socket:
        ``recv_q`` is the accept queue's length (connections waiting for accept()),
        ``send_q`` the backlog; ``syn_queue``, the half-open connections."""
        return {"state": self.state.value, "port": self.port, "recv_q": len(self.accept_queue),
                "send_q": self.backlog, "backlog": self.backlog, "syn_queue": len(self.syn_queue)}

    def accept(self) -> "Connection | None":
        """Pop the oldest established connection, or None if there is none.

        (A connection reset while queued is still handed out, like Linux: its
        first recv raises ConnectionResetError.)"""
        if not self.accept_queue:
            return None
        return self.accept_queue.popleft()

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset (like Linux)."""
        if self.closed:
            return
        self.closed = True
        self.host.unlisten(self)
        queued = list(self.syn_queue.values()) + list(self.accept_queue)
        self.syn_queue.clear()
        self.accept_queue.clear()
        for conn in queued:
            conn.abort()

    def _event(self, ev: ListenerEvent) -> None:
        self.events.append(ev)
        cb = self.on_event
        if cb is not None:
            try:
                cb(ev)
            except Exception:
                log.exception("listener on_event callback failed")

    def on_segment(self, src: int, dst: int, seg, now: float) -> None:
        """SEGMENT ARRIVES in LISTEN state (RFC 9293 §3.10.7.2)."""
        flags = seg.flags
        host = self.host
        if flags & RST:
            return                                   # first: ignore an RST
        accept_full = len(self.accept_queue) >= self.backlog
        if flags & ACK:
            if not flags & SYN:
                # the third segment of a SYN-cookie handshake? (RFC 4987 §3.6)
                if accept_full:
                    host.count("tcp.listen.overflows")
                    return
                conn = host.accept_cookie(self, src, dst, seg, now)
                if conn is not None:
                    self.accept_queue.append(conn)
                    self._event(ListenerEvent.ACCEPTABLE)
                    return
            # second: any other ACK is bad here -> <SEQ=SEG.ACK><CTL=RST>
            host.reset_segment(src, dst, seg)
            return
        if not flags & SYN:
            host.count("tcp.in.drop.listen_no_syn")
            return
        if accept_full:
            host.count("tcp.listen.drops")
            host.count("tcp.listen.overflows")
            return
        mode = host.syncookies
        syn_full = len(self.syn_queue) >= self.backlog
        if mode is SynCookieMode.ALWAYS or (syn_full and mode is SynCookieMode.AUTO):
            host.send_syn_cookie(src, dst, seg, now)
            return
        if syn_full:
            host.count("tcp.listen.drops")
            return
        conn = host.open_passive(self, src, dst, seg, now)
        if conn is None:
            return
        host.count("tcp.passive_opens")
        if conn.state is not CLOSED:
            self.syn_queue[(src, seg.src_port)] = conn

    def connection_established(self, conn: "Connection") -> None:
        """A connection of the SYN queue completed its handshake: move it to the accept queue."""
        if self.syn_queue.get((conn.remote_addr, conn.remote_port)) is conn:
            del self.syn_queue[(conn.remote_addr, conn.remote_port)]
            self.accept_queue.append(conn)
            self._event(ListenerEvent.ACCEPTABLE)

    def connection_closed(self, conn: "Connection") -> None:
        """A connection of the SYN queue went back to CLOSED: forget it."""
        if self.syn_queue.get((conn.remote_addr, conn.remote_port)) is conn:
            del self.syn_queue[(conn.remote_addr, conn.remote_port)]
