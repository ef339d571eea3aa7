"""The link interface: how IPv4 packets enter and leave the stack.

Every link (the TUN device, the in-memory pair, the fault-injecting wrapper)
implements :class:`Link`.  Two design points are fixed now for later work:

* **Batches.**  :meth:`Link.recv_batch` returns several packets per wakeup, as
  memoryviews into buffers the link reuses; a view is valid until the next
  ``recv_batch`` call on that link (copy it to keep it), except a **read-only**
  view: that one the link never writes again while it is referenced (an
  immutable ``bytes``, or, on the TUN, a read buffer lent out while a view of
  it lives), so a receiver may keep it instead of copying it, as TCP's receive
  buffer does with a super-segment's payload.
* **Per-packet metadata.**  Each packet travels with a :class:`PacketMeta` or
  ``None`` ("a plain packet").  The fields are those of the virtio-net header
  that Linux puts in front of each packet on a TUN opened with
  ``IFF_VNET_HDR`` (``include/uapi/linux/virtio_net.h``): GSO type and size and
  checksum state.  With offloads on, a "packet" may then be a TCP segment
  larger than the MTU.
"""
from __future__ import annotations

import abc
from typing import Callable

__all__ = [
    "Link", "PacketMeta",
    "GSO_NONE", "GSO_TCPV4", "GSO_UDP", "GSO_TCPV6", "GSO_ECN",
]

# virtio_net_hdr.gso_type values
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_ECN = 0x80


class PacketMeta:
    """Offload metadata for one packet (the virtio-net header's fields).

    ``needs_csum``: the checksum at ``csum_start + csum_offset`` is partial and
    must be completed (VIRTIO_NET_HDR_F_NEEDS_CSUM); ``data_valid``: the
    checksum has already been verified (VIRTIO_NET_HDR_F_DATA_VALID).
    """

    __slots__ = ("gso_type", "gso_size", "hdr_len", "csum_start", "csum_offset", "needs_csum", "data_valid")

    def __init__(self, gso_type: int = GSO_NONE, gso_size: int = 0, hdr_len: int = 0,
                 csum_start: int = 0, csum_offset: int = 0, needs_csum: bool = False,
                 data_valid: bool = False) -> None:
        self.gso_type = gso_type
        self.gso_size = gso_size
        self.hdr_len = hdr_len
        self.csum_start = csum_start
        self.csum_offset = csum_offset
        self.needs_csum = needs_csum
        self.data_valid = data_valid

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PacketMeta):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"PacketMeta({fields})"


class Link(abc.ABC):
    """One network interface seen from the stack: raw IPv4 packets in and out."""

    #: largest IP datagram the link carries without fragmentation
    mtu: int = 1500
    #: a short human name for logs ("tun:nstk0", "memory:a", ...)
    name: str = "link"
    #: True when packets may carry offload metadata both ways: the peer segments and
    #: checksums what is sent with GSO fields or a partial checksum (TSO), and may hand
    #: over super-segments and partial checksums
    offload: bool = False

    @abc.abstractmethod
    def send(self, data, meta: PacketMeta | None = None) -> None:
        """Transmit one packet.  ``data`` is bytes-like; the link does not keep it
        after returning (it copies if it must hold on to it)."""

    def send_batch(self, packets) -> None:
        """Transmit several ``(data, meta)`` packets (default: one by one)."""
        for data, meta in packets:
            self.send(data, meta)

    @abc.abstractmethod
    def recv_batch(self, max_packets: int = 64) -> list[tuple[memoryview, PacketMeta | None]]:
        """Up to ``max_packets`` received packets, without blocking; ``[]`` when
        none are waiting.  The views stay valid until the next call; read-only ones
        for as long as they are referenced (module doc)."""

    @abc.abstractmethod
    def attach(self, loop, on_readable: Callable[[], None]) -> None:
        """Ask ``loop`` (asyncio) to call ``on_readable()`` whenever packets may be waiting."""

    @abc.abstractmethod
    def detach(self) -> None:
        """Undo :meth:`attach`."""

    def fileno(self) -> int | None:
        """The file descriptor, for links that have one."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
