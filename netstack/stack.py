"""The stack's one event loop: link + IPv4 + transports + timers.

::

    TUN fd readable ──▶ link.recv_batch() ──▶ ip.input_batch() ──▶ transport.on_datagram()
                                                  │                  │
    link.send() ◀── ip.send() (fragments) ◀───────┴── transports' outbox, drained after every round
    timer (earliest deadline of ip and transports) ──▶ ip.poll(now), transport.poll(now)

No polling: the loop sleeps in asyncio until the link's fd is readable
(``add_reader``) or the single timer set for the earliest deadline fires.
Each wakeup reads a batch of packets, feeds them through the sans-I/O cores
with one ``now`` and flushes what the transports queued; then the
callbacks queued for the round's end run (the socket layer hands the
application its data there), a kick they or the round asked for
(:meth:`Stack.kick`: the ACK that waited for the application's read, a
reply it wrote) is served in the same turn, and the timer is re-armed once,
by whichever of the two ran last.  Recording a pcap and printing the packet trace are link wrappers
(:class:`netstack.link.capture.CaptureLink`), so the stack's receive and
transmit paths have no capture branches.

What the stack asks of a transport (TCP) is :class:`netstack.transport.Transport`:
``on_datagram``, ``on_icmp_error``, ``poll``, ``next_deadline``, an ``outbox``
of :class:`~netstack.transport.Outgoing` ``(dst, segment, df)`` items, and
``on_output``, which the stack sets to :meth:`Stack.kick`.

Counters are also exposed for SIGUSR1 handling by the CLI.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable

from netstack.counters import Counters
from netstack.ip.layer import DatagramTooBig, IPLayer
from netstack.link.base import GSO_NONE, GSO_TCPV4, Link, PacketMeta
from netstack.tcp import TCPConfig, TCPLayer
from netstack.transport import Transport
from netstack.wire.ipv4 import PROTO_TCP, ip2int, ipv4_packet

__all__ = ["Stack"]

log = logging.getLogger("netstack.stack")

BATCH = 64
#: the offload metadata of every TCP segment with data under the MSS: a partial checksum at
#: offset 16 of the transport header (never changed after it is made: one for all of them)
_CSUM_TCP = PacketMeta(GSO_NONE, 0, 0, 20, 16, True)
#: the largest TSO super-segment's payload: a 65535-byte IPv4 datagram less the IPv4 header and
#: the largest TCP header (timestamps and three SACK blocks fit in its 40 option bytes)
TSO_MAX_SEGMENT = 65535 - 20 - 60


class Stack:
    """A host on one link: ``Stack(link, "198.18.0.2")`` (see module doc)."""

    def __init__(self, link: Link, addr: str | int, *, tcp: TCPConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, counters: Counters | None = None,
                 ttl: int = 64, reassembly_timeout: float = 30.0, reassembly_max_datagrams: int = 64,
                 reassembly_max_bytes: int = 4 * 1024 * 1024, icmp_error_rate: float = 100.0,
                 icmp_error_burst: int = 50, broadcast: int | None = None, min_pmtu: int = 552,
                 pmtu_decrease_interval: float = 1.0, isn_secret: bytes | None = None, cookie_clock=None,
                 shared_flows: bool = False) -> None:
        """One IPv4 address ``addr`` (dotted quad or int) on ``link``, with its own TCP.

        ``tcp``: the TCP layer's configuration (:class:`~netstack.tcp.TCPConfig`); by
        default ``TCPConfig.for_mtu(link.mtu)``.  Whatever it says, the MSS we announce
        is at most the link MTU - 40 (RFC 9293 §3.7.1).  The layer is :attr:`tcp`.

        ``clock``: the stack's time source, in seconds (every core gets ``now`` from it);
        ``counters``: where every layer counts (a fresh :class:`~netstack.counters.Counters`
        by default).

        The IPv4 layer's options (:class:`~netstack.ip.IPLayer`): ``ttl`` of what we
        send; fragment reassembly's ``reassembly_timeout`` (seconds),
        ``reassembly_max_datagrams`` and ``reassembly_max_bytes`` (held at most);
        ICMP errors sent at ``icmp_error_rate`` per second sustained, bursts of
        ``icmp_error_burst``; ``broadcast``: the link's broadcast address (an int),
        never accepted as a source; ``min_pmtu``: the path-MTU floor (Linux's 552) and
        ``pmtu_decrease_interval``: at most one believed path-MTU decrease per destination
        in that many seconds (:mod:`netstack.ip.pmtu`, RFC 1191, RFC 8201).

        ``isn_secret``, ``cookie_clock``, ``shared_flows``: for several stacks on one
        address, each receiving some of its flows (a multi-queue server's workers; see
        :class:`~netstack.tcp.TCPLayer`).  A stack alone leaves them out.
        """
        self.link = link
        self.addr = ip2int(addr) if isinstance(addr, str) else int(addr)
        self.clock = clock
        self.counters = counters if counters is not None else Counters()
        self.ip = IPLayer(self.addr, mtu=link.mtu, counters=self.counters, ttl=ttl,
                          reassembly_timeout=reassembly_timeout, reassembly_max_datagrams=reassembly_max_datagrams,
                          reassembly_max_bytes=reassembly_max_bytes, icmp_error_rate=icmp_error_rate,
                          icmp_error_burst=icmp_error_burst, broadcast=broadcast, min_pmtu=min_pmtu,
                          pmtu_decrease_interval=pmtu_decrease_interval)
        #: IP protocol number -> transport; TCP (6) is :attr:`tcp`
        self.transports: dict[int, Transport] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._kick_handle: asyncio.Handle | None = None
        self._inline_kick = False         # _run_after_round is doing a kick's work in its own turn
        self._round_kick = False          # a kick now is served at the end of the round under way
        self._in_round = False            # inside _on_readable/_on_timer/_on_kick: callbacks wait for its end
        self._after: list = []            # call_after_round callbacks of the round under way
        self._stopped: asyncio.Future | None = None
        self.started = False
        self.closed = False
        #: this stack's TCP (RFC 9293), the transport for protocol 6
        config = tcp if tcp is not None else TCPConfig.for_mtu(link.mtu)
        offload = self._offload = bool(getattr(link, "offload", False))
        if offload and config.max_segment is None:
            config = replace(config, max_segment=TSO_MAX_SEGMENT)
        self.tcp = TCPLayer(self.addr, counters=self.counters, config=config, mtu=link.mtu, offload=offload,
                            path_mtu=self.ip.pmtu, isn_secret=isn_secret, cookie_clock=cookie_clock,
                            shared_flows=shared_flows)
        self.register_transport(PROTO_TCP, self.tcp)

    # -- transports ----------------------------------------------------------------------------
    def register_transport(self, proto: int, transport: Transport) -> None:
        """Attach a transport for IP protocol ``proto``, one not taken yet (TCP is the
        stack's own, :attr:`tcp`; ICMP is the IP layer's)."""
        if proto in self.transports:
            raise ValueError(f"IP protocol {proto} already has a transport")
        self.ip.register(proto, transport)
        self.transports[proto] = transport
        transport.on_output = self.kick
        if self.started:
            self.kick()

    # -- the socket API (netstack.sockets), as methods ------------------------------------------
    def open_connection(self, host, port, **kwds):
        """``reader, writer = await stack.open_connection(host, port)``: like :func:`asyncio.open_connection`,
        over this stack's TCP (see :func:`netstack.sockets.streams.open_connection`)."""
        from netstack.sockets import open_connection
        return open_connection(self, host, port, **kwds)

    def start_server(self, client_connected_cb, host=None, port: int = 0, **kwds):
        """``server = await stack.start_server(handler, port=25)``: like :func:`asyncio.start_server`
        (see :func:`netstack.sockets.streams.start_server`)."""
        from netstack.sockets import start_server
        return start_server(self, client_connected_cb, host, port, **kwds)

    def socket(self, family: int = 2, type: int = 1, proto: int = 0):
        """A blocking, BSD-shaped TCP socket on this stack (see :mod:`netstack.sockets.blocking`)."""
        from netstack.sockets import socket
        return socket(self, family, type, proto)

    def call_after_round(self, callback) -> None:
        """Run ``callback()`` once the round under way (a batch of received packets, due timers, a
        kick) has sent its output, in the same loop turn, as asyncio's selector transports call
        their protocols from the reader callback itself; outside a round, ``loop.call_soon``.
        The socket layer hands connection events to the application this way: no extra loop
        turn between a segment's arrival and the application seeing its data."""
        if self._in_round:
            self._after.append(callback)
        else:
            self._loop.call_soon(callback)

    def _run_after_round(self, now: float) -> None:
        """The end of a round whose output has left: the callbacks queued for it, then the kick
        they (or the round) asked for, in this turn, else the timer filed for the next deadline."""
        self._in_round = False
        after = self._after
        if after:
            self._after = []
            for cb in after:
                try:
                    cb()
                except Exception as exc:
                    self._loop.call_exception_handler({"message": "stack: callback after a round failed",
                                                       "exception": exc})
        self._round_kick = False
        # What the round or its callbacks asked for (the ACK that waited for the application's
        # read, a window update, a reply it wrote) leaves in this turn, not through the kick's
        # own loop turn, and that kick's round files the timer: one deadline pass per round.
        # Once: a kick from this inner round's callbacks waits for its turn.
        if self._flush_scheduled and not self._inline_kick and not self.closed:
            self._inline_kick = True
            try:
                if self._kick_handle is not None:
                    self._kick_handle.cancel()
                    self._kick_handle = None
                self._on_kick()
            finally:
                self._inline_kick = False
        elif not self.closed:
            self._file_timer(now)

    def kick(self) -> None:
        """Ask the loop to flush transports' outboxes and re-arm timers soon (thread-unsafe; loop
        thread only): at the end of the round under way, if one is, else in a loop turn of its own."""
        if self._loop is not None and not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            if self._round_kick:
                self._kick_handle = None         # _run_after_round serves it
            else:
                self._kick_handle = self._loop.call_soon(self._on_kick)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self.started:
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self.ip.emit = self.link.send
        self.started = True
        self.link.attach(self._loop, self._on_readable)
        self._after_round()

    def stop(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def run(self) -> None:
        """Run until :meth:`stop` (or cancellation); always closes."""
        self.start()
        try:
            await self._stopped
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.link.detach()
        except Exception:
            log.exception("link detach failed")
        self.stop()

    async def __aenter__(self) -> "Stack":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    # -- the packet paths ----------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            batch = self.link.recv_batch(BATCH)
        except OSError as exc:
            self.counters.inc("link.in.errors")
            log.warning("link read failed: %s", exc)
            return
        if not batch:
            return
        now = self.clock()
        if self._offload:               # offloads: GSO super-segments, partial or verified checksums
            gso = sum(1 for _view, meta in batch if meta is not None and meta.gso_type)
            if gso:
                self.counters.inc("link.in.gso_packets", gso)
        self._in_round = True
        self._round_kick = True
        try:
            self.ip.input_batch(batch, now)
            self.counters.inc("link.in.packets", len(batch))
            self._flush_outboxes(now)
        finally:
            self._run_after_round(now)

    def _on_kick(self) -> None:
        """A user call (a write, a close) gave a transport work: do it in this loop turn.  A
        transport whose poll is due now (TCP with writes to flush) is polled here, so the
        segments leave in the kick's own turn, not one turn later through the timer."""
        self._flush_scheduled = False
        self._kick_handle = None
        if not self.closed:
            self._poll_due(self.clock(), ip=False)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self.closed:
            self._poll_due(self.clock(), ip=True)

    def _poll_due(self, now: float, *, ip: bool) -> None:
        """A round: poll the IP layer (``ip``) and the transports whose deadline has come, send."""
        self._in_round = True
        if not self._inline_kick:
            self._round_kick = True
        try:
            if ip:
                ip_deadline = self.ip.next_deadline()
                if ip_deadline is not None and ip_deadline <= now:
                    self.ip.poll(now)
            for t in self.transports.values():
                d = t.next_deadline()
                if d is not None and d <= now:
                    try:
                        t.poll(now)
                    except Exception:
                        self.counters.inc("stack.transport_errors")
                        log.exception("transport poll failed")
            self._flush_outboxes(now)
        finally:
            self._run_after_round(now)

    def _flush_outboxes(self, now: float) -> None:
        send = self.ip.send
        send_plain = self.ip.send_plain
        for proto, t in self.transports.items():
            box = t.outbox
            while box:
                dst, segment, df, partial, gso, headroom = box.popleft()
                try:
                    if partial:           # checksum (and segmentation) offload: the link finishes it
                        send(dst, proto, segment, now, df=df, meta=PacketMeta(
                            GSO_TCPV4, gso, 20 + (segment[12] >> 4 << 2), 20, 16 if proto == 6 else 6, True) if gso else (
                            _CSUM_TCP if proto == 6 else PacketMeta(GSO_NONE, 0, 0, 20, 6, True)),
                            headroom=headroom)
                    elif headroom:        # built in place behind room for the IP header
                        send(dst, proto, segment, now, df=df, headroom=headroom)
                    else:
                        send_plain(dst, proto, segment, df)
                except DatagramTooBig as exc:
                    self._local_too_big(t, proto, dst, segment, exc, now)

    def _local_too_big(self, transport: Transport, proto: int, dst: int, segment, exc: DatagramTooBig,
                       now: float) -> None:
        """Too big for our own link: tell the local sender, like an ICMP "fragmentation
        needed" (RFC 1191) from the first hop.  With DF clear the IP layer fragments, so
        this is a DF datagram, or one over 65535 bytes (then ``exc.mtu`` is 65535)."""
        quoted = ipv4_packet(src=self.addr, dst=dst, protocol=proto, payload=bytes(memoryview(segment)[:8]), df=True)
        try:
            transport.on_icmp_error(3, 4, exc.mtu, memoryview(quoted), now)
        except Exception:
            log.exception("transport on_icmp_error failed")

    def _after_round(self, now: float | None = None) -> None:
        if now is None:
            now = self.clock()
        self._flush_outboxes(now)
        self._file_timer(now)

    def _file_timer(self, now: float) -> None:
        # the one timer, at or before the earliest deadline
        deadline = self.ip.next_deadline()
        for t in self.transports.values():
            d = t.next_deadline()
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            # Moved later (a retransmission timer restarted, a delayed ACK went out with data)
            # or gone: the timer already set fires first, finds nothing due and is set again
            # then.  Deadlines move later on nearly every round; re-arming each time would make
            # and cancel a loop timer per round.
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - now), self._on_timer)
