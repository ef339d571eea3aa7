"""A listening socket: SYN queue and accept queue (RFC 9293 §3.10.7.2).

A SYN to a listening port creates a Connection in SYN-RECEIVED that waits
in the SYN queue; when the handshake completes it moves to the accept queue,
and ``accept()`` hands it to the user.  Both queues are bounded by the
backlog: a SYN that finds either queue full is dropped and counted
(``tcp.listen.drops``, ``tcp.listen.overflows``) -- the peer retransmits
later.  SYN cookies come later.
"""
from __future__ import annotations

import logging
from collections import deque

from netstack.wire.tcp import ACK, RST, SYN

from .connection import Connection

log = logging.getLogger("netstack.tcp")


class Listener:
    def __init__(self, layer, port: int, backlog: int = 128, *, nodelay: bool | None = None):
        self.layer = layer
        self.port = port
        self.backlog = max(1, backlog)
        self.nodelay = nodelay
        self.syn_queue: dict = {}          # (remote_addr, remote_port) -> Connection in SYN-RECEIVED
        self.accept_queue: deque = deque()
        self.on_event = None               # called with "acceptable" (socket layer sets it)
        self.events: deque = deque(maxlen=64)
        self.closed = False

    def __repr__(self):
        return f"<Listener :{self.port} syn={len(self.syn_queue)} accept={len(self.accept_queue)}>"

    @property
    def state(self):
        """LISTEN while open, CLOSED after close() (RFC 9293 §3.3.2)."""
        from .connection import State
        return State.CLOSED if self.closed else State.LISTEN

    @property
    def pending(self) -> int:
        """Connections ready for accept()."""
        return len(self.accept_queue)

    def accept(self) -> Connection | None:
        """Pop the oldest established connection, or None if there is none."""
        if not self.accept_queue:
            return None
        conn = self.accept_queue.popleft()
        conn.listener = None       # (a connection reset while queued is still handed out,
        return conn                #  like Linux: its first recv raises ConnectionResetError)

    def close(self) -> None:
        """Stop listening; connections not yet accepted are reset (like Linux)."""
        if self.closed:
            return
        self.closed = True
        self.layer._unlisten(self)
        for conn in list(self.syn_queue.values()) + list(self.accept_queue):
            conn.listener = None
            conn.abort()
        self.syn_queue.clear()
        self.accept_queue.clear()

    def _event(self, name: str) -> None:
        self.events.append(name)
        cb = self.on_event
        if cb is not None:
            try:
                cb(name)
            except Exception:
                log.exception("listener on_event callback failed")

    def on_segment(self, src: int, dst: int, seg, now: float) -> None:
        """SEGMENT ARRIVES in LISTEN state (RFC 9293 §3.10.7.2)."""
        flags = seg.flags
        layer = self.layer
        if flags & RST:
            return                                   # first: ignore an RST
        if flags & ACK:
            # second: any ACK is bad here -> <SEQ=SEG.ACK><CTL=RST>
            layer._send_rst(dst, seg.dst_port, src, seg.src_port, seg.ack, 0, RST)
            return
        if not flags & SYN:
            layer._count("tcp.in.drop.listen_no_syn")
            return
        if len(self.syn_queue) >= self.backlog or len(self.accept_queue) >= self.backlog:
            layer._count("tcp.listen.drops")
            if len(self.accept_queue) >= self.backlog:
                layer._count("tcp.listen.overflows")
            return
        conn = Connection(layer, dst, self.port, src, seg.src_port, layer.config,
                          nodelay=self.nodelay, listener=self)
        layer._register(conn)
        self.syn_queue[(src, seg.src_port)] = conn
        layer._count("tcp.passive_opens")
        conn.open_passive(seg, layer._isn(conn, now), now)

    def _established(self, conn: Connection) -> None:
        self.syn_queue.pop((conn.remote_addr, conn.remote_port), None)
        self.accept_queue.append(conn)
        self._event("acceptable")

    def _forget(self, conn: Connection) -> None:
        if self.syn_queue.get((conn.remote_addr, conn.remote_port)) is conn:
            del self.syn_queue[(conn.remote_addr, conn.remote_port)]
