"""The transport contract: what the IP layer and the stack's loop ask of a transport.

A transport (TCP, :class:`netstack.tcp.TCPLayer`) is a sans-I/O object for
one IP protocol number.  It never reads a clock and never writes to the
link: datagrams and ``now`` come in, segments wait in ``outbox`` and the
stack sends them.  :class:`Transport` spells the contract out;
:class:`Outgoing` is the one shape of an outbox item.

This module imports nothing from the rest of netstack, so any layer can name
the contract without depending on another layer.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, NamedTuple, Protocol, runtime_checkable

__all__ = ["Transport", "Outgoing", "PathMtu"]


class Outgoing(NamedTuple):
    """One segment a transport wants sent: an item of :attr:`Transport.outbox`.

    ``dst``: the destination IPv4 address (an int); ``segment``: the transport
    header and data, its checksum already filled (bytes-like; the stack copies
    it into the datagram before the next item is taken); ``df``: send with
    Don't Fragment set (path-MTU discovery, RFC 1191): if the datagram does not
    fit the link MTU the stack does not fragment it but reports "fragmentation
    needed" to :meth:`Transport.on_icmp_error`.

    With offloads (the link's ``offload``; the transport was told so):
    ``csum_partial``: the checksum field holds only the pseudo-header sum and
    the link completes it (checksum offload, the virtio-net header's
    NEEDS_CSUM); ``gso_size`` > 0: the segment is a super-segment the link cuts
    into segments of ``gso_size`` payload bytes, each with a copy of the
    header (TCP segmentation offload), so it may exceed the MTU.

    ``headroom`` > 0: ``segment`` is a memoryview of the tail of a bytearray
    (``segment.obj``) that has exactly ``headroom`` free bytes in front of it,
    for the network header: the IP layer writes its header there and sends the
    datagram from that buffer, without copying the segment again (one copy of
    the payload, from the send buffer into the segment, instead of two).
    """

    dst: int
    segment: bytes | bytearray | memoryview
    df: bool
    csum_partial: bool = False
    gso_size: int = 0
    headroom: int = 0


@runtime_checkable
class Transport(Protocol):
    """What the stack asks of the transport for one IP protocol number.

    * ``on_datagram(src, dst, payload, now)``: the IP layer accepted a datagram
      of this protocol for us; ``payload`` is a memoryview of the transport
      segment, valid only during the call.  Must not raise for bad input
      (count and drop it); the IP layer counts any exception as
      ``ip.in.drop.transport_error``.
    * ``on_icmp_error(icmp_type, code, info, quoted, now)``: an ICMP error
      about a datagram we sent (RFC 1122 §3.2.2), or the stack's own
      "fragmentation needed" (type 3 code 4, ``info`` the MTU) for an
      :class:`Outgoing` with ``df`` set that does not fit the link.  ``quoted``
      is the IPv4 header plus at least 8 bytes of our segment.
    * ``poll(now)``: do what is due at ``now`` (timers, writes queued by user
      calls).  The stack calls it when ``next_deadline()`` has come.
    * ``next_deadline() -> float | None``: the earliest instant ``poll`` is
      needed, on the stack's clock; ``None``: nothing scheduled.
    * ``outbox``: a deque of :class:`Outgoing`.  The stack drains it after
      every ``on_datagram``/``poll``/``on_icmp_error`` round and after a kick.
    * ``on_output``: set by the stack to its ``kick``; the transport calls it
      when the outbox gained items, or a poll became due, outside those rounds
      (a user call such as ``send`` or ``close``).  ``None`` until the stack
      sets it.

    Two optional entry points, used when present (TCP has both):
    ``on_datagram_trusted(src, dst, payload, now)``, for a datagram whose
    checksum the link vouches for (checksum offload), and
    ``on_datagrams(items, now, trusted)``, for consecutive datagrams of one link
    read: ``items`` a list of ``(src, dst, payload)`` in order, each to be taken
    as ``on_datagram`` (or, with ``trusted``, ``on_datagram_trusted``) would.

    All of it runs in the stack's event-loop thread.
    """

    outbox: deque[Outgoing]
    on_output: Callable[[], None] | None

    def on_datagram(self, src: int, dst: int, payload: memoryview, now: float) -> None: ...

    def on_icmp_error(self, icmp_type: int, code: int, info: int, quoted: memoryview, now: float) -> None: ...

    def poll(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...


@runtime_checkable
class PathMtu(Protocol):
    """What a transport asks the IP layer about path MTUs (RFC 1191, RFC 8201):
    :class:`netstack.ip.pmtu.PathMtuTable`, handed to TCP by the stack.

    * ``report(dst, mtu, now) -> int | None``: the transport validated an ICMP
      "fragmentation needed" about a datagram to ``dst`` (next-hop MTU ``mtu``);
      the answer is the path MTU to use (never below the floor), or None when
      the decrease is not believed (rate-limited, counted by the IP layer).
    """

    def report(self, dst: int, mtu: int, now: float) -> int | None: ...
