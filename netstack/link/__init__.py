"""Links: where packets enter and leave the stack.

- :mod:`netstack.link.base`    the :class:`Link` interface and :class:`PacketMeta` (virtio-net header fields)
- :mod:`netstack.link.tun`     the Linux TUN device (python-pytun)
- :mod:`netstack.link.memory`  an in-memory pair for deterministic tests
- :mod:`netstack.link.faults`  loss/duplication/reordering/corruption/delay wrapper
- :mod:`netstack.link.capture` recording wrapper: pcap file and packet trace
- :mod:`netstack.link.lab`     the lab namespace over netlink (pyroute2)

``tun`` and ``lab`` import pytun/pyroute2 only when used.
"""
from netstack.link.base import GSO_NONE, GSO_TCPV4, Link, PacketMeta
from netstack.link.capture import CaptureLink
from netstack.link.faults import FaultyLink, parse_fault_spec
from netstack.link.memory import MemoryLink

__all__ = ["Link", "PacketMeta", "GSO_NONE", "GSO_TCPV4", "MemoryLink", "FaultyLink", "parse_fault_spec",
           "CaptureLink", "TunLink", "Lab"]


def __getattr__(name):
    if name == "TunLink":
        from netstack.link.tun import TunLink
        return TunLink
    if name == "Lab":
        from netstack.link.lab import Lab
        return Lab
    raise AttributeError(name)
