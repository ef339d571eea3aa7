"""netstack: a userspace TCP/IP stack in Python.

Layers, bottom up (each a package):

- ``netstack.checksum``  RFC 1071 Internet checksum (native C via cffi, or the pure-Python twin)
- ``netstack.wire``      parse/build IPv4, ICMP and TCP headers; no state
- ``netstack.link``      links: TUN device, in-memory pair, fault injection, capture, the lab namespace
- ``netstack.ip``        IPv4 input/output, reassembly, ICMP responder
- ``netstack.tcp``       the sans-I/O TCP connection and its timers
- ``netstack.transport`` the contract between the stack and a transport (TCP)
- ``netstack.stack``     the one loop that ties link + ip + tcp + timers together; owns its TCP
- ``netstack.sockets``   asyncio streams and the blocking socket facade
- ``netstack.capture``   pcap files, hex dumps and the tcpdump-style dissector

The two names a first script needs are here too, imported on first use (so
``import netstack.wire`` stays light)::

    from netstack import Stack, MemoryLink
"""

__version__ = "0.1.0"

__all__ = ["Stack", "MemoryLink", "__version__"]


def __getattr__(name):
    """``netstack.Stack`` and ``netstack.MemoryLink``, imported when first asked for (PEP 562)."""
    if name == "Stack":
        from netstack.stack import Stack
        return Stack
    if name == "MemoryLink":
        from netstack.link.memory import MemoryLink
        return MemoryLink
    raise AttributeError(f"module 'netstack' has no attribute {name!r}")
