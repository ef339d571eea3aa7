"""ICMP messages for IPv4 (RFC 792), sans-I/O.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 rest of header (4 bytes, by type)             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     data: echo payload, or the quoted original datagram ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-

The "rest of header" word is kept whole in :attr:`ICMPMessage.rest` and read
by type: identifier/sequence for Echo (RFC 792 "Echo or Echo Reply
Message"), next-hop MTU for Fragmentation Needed (RFC 1191 §4), unused
otherwise.  Error messages quote the original IP header plus its first 64 data
bits (RFC 792; RFC 1122 §3.2.2).  The checksum covers the whole ICMP message
(RFC 792).
"""
from __future__ import annotations

import struct

from netstack import checksum as _cs
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import IPv4Packet, _as_view, parse_ipv4_quoted

__all__ = [
    "ECHO_REPLY", "DEST_UNREACH", "SOURCE_QUENCH", "REDIRECT", "ECHO_REQUEST", "TIME_EXCEEDED",
    "PARAMETER_PROBLEM",
    "NET", "HOST", "PROTOCOL", "PORT", "FRAG_NEEDED", "SOURCE_ROUTE_FAILED", "NET_UNKNOWN",
    "HOST_UNKNOWN", "NET_PROHIBITED", "HOST_PROHIBITED", "ADMIN_PROHIBITED",
    "TTL_EXCEEDED", "FRAG_REASSEMBLY_EXCEEDED", "ICMP_HEADER_LEN",
    "ICMPMessage", "parse_icmp", "build_icmp", "echo_request", "echo_reply", "dest_unreachable",
    "time_exceeded", "quoted_datagram", "is_error_type",
]

# Types (RFC 792).
ECHO_REPLY = 0
DEST_UNREACH = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

# Destination Unreachable codes (RFC 792; 6..12 RFC 1122 §3.2.2.1; 13 RFC 1812 §5.2.7.1).
NET = 0
HOST = 1
PROTOCOL = 2
PORT = 3
FRAG_NEEDED = 4              # "fragmentation needed and DF set"; rest carries the next-hop MTU (RFC 1191 §4)
SOURCE_ROUTE_FAILED = 5
NET_UNKNOWN = 6
HOST_UNKNOWN = 7
NET_PROHIBITED = 9
HOST_PROHIBITED = 10
ADMIN_PROHIBITED = 13        # communication administratively prohibited (RFC 1812 §5.2.7.1)

# Time Exceeded codes (RFC 792).
TTL_EXCEEDED = 0             # time to live exceeded in transit
FRAG_REASSEMBLY_EXCEEDED = 1  # fragment reassembly time exceeded

ICMP_HEADER_LEN = 8
_QUOTED_DATA = 8             # "the first 64 bits of the original data datagram" (RFC 792)

_ERROR_TYPES = frozenset((DEST_UNREACH, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETER_PROBLEM))

_LAYER = "icmp"
_HDR = struct.Struct("!BBHI")
_unpack_hdr = _HDR.unpack_from
_pack_hdr = _HDR.pack_into
_pack_u16 = struct.Struct("!H").pack_into
_checksum = _cs.checksum


def is_error_type(icmp_type: int) -> bool:
    """True for ICMP error messages (RFC 1122 §3.2.2), which must never be answered with one."""
    return icmp_type in _ERROR_TYPES


class ICMPMessage:
    """A parsed ICMP message (RFC 792).

    ``type``, ``code``, ``checksum`` (as found), ``rest`` (the 32-bit word in
    bytes 4..7), ``payload`` (memoryview of bytes 8.., no copy) and
    ``checksum_ok``.  Readings of ``rest``: ``ident`` and ``seq`` (Echo),
    ``mtu`` (next-hop MTU of a Fragmentation Needed message, RFC 1191 §4;
    None for any other message).
    """

    __slots__ = ("type", "code", "checksum", "rest", "payload", "checksum_ok")

    @property
    def ident(self) -> int:
        """Echo identifier: the upper 16 bits of ``rest`` (RFC 792)."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Echo sequence number: the lower 16 bits of ``rest`` (RFC 792)."""
        return self.rest & 0xFFFF

    @property
    def mtu(self):
        """Next-hop MTU for Destination Unreachable / Fragmentation Needed (RFC 1191 §4), else None.

        0 means the router predates RFC 1191 and did not say.
        """
        if self.type == DEST_UNREACH and self.code == FRAG_NEEDED:
            return self.rest & 0xFFFF
        return None

    @property
    def is_error(self) -> bool:
        """True for error messages (RFC 1122 §3.2.2)."""
        return self.type in _ERROR_TYPES

    def __repr__(self) -> str:
        return (f"ICMPMessage(type {self.type} code {self.code} rest {self.rest:#010x} "
                f"len {len(self.payload)} cksum {self.checksum:#06x}{'' if self.checksum_ok else ' (bad)'})")


def parse_icmp(buf, *, verify: bool = True) -> ICMPMessage:
    """Parse an ICMP message (RFC 792); ``buf`` is exactly the IP payload.

    Raises :class:`MalformedPacket` (layer ``icmp``): ``truncated`` (under 8
    bytes) or, with ``verify``, ``bad_checksum``.  With ``verify=False`` the
    checksum is still computed into ``checksum_ok``.  The quoted datagram of an
    error message is read with :func:`quoted_datagram`.
    """
    mv = _as_view(buf)
    n = len(mv)
    if n < 8:
        raise MalformedPacket(_LAYER, "truncated", f"{n} bytes, an ICMP header needs 8")
    icmp_type, code, csum, rest = _unpack_hdr(mv)
    ok = _checksum(mv) == 0
    if verify and not ok:
        raise MalformedPacket(_LAYER, "bad_checksum", f"checksum {csum:#06x} does not verify")
    m = ICMPMessage()
    m.type = icmp_type
    m.code = code
    m.checksum = csum
    m.rest = rest
    m.payload = mv[8:]
    m.checksum_ok = ok
    return m


def quoted_datagram(message: ICMPMessage) -> IPv4Packet:
    """The original datagram quoted by an ICMP error (RFC 792; RFC 1122 §3.2.2).

    Returns an :class:`~netstack.wire.ipv4.IPv4Packet` whose ``payload`` is the
    quoted part of the original data (at least 8 bytes: the TCP/UDP ports, and
    TCP's sequence number).  Raises :class:`MalformedPacket` (layer ``icmp``,
    reason ``bad_quoted_datagram``) for a non-error message or a quote that is
    not an IPv4 header followed by 8 data bytes.
    """
    if message.type not in _ERROR_TYPES:
        raise MalformedPacket(_LAYER, "bad_quoted_datagram", f"ICMP type {message.type} is not an error message")
    try:
        ip = parse_ipv4_quoted(message.payload)
    except MalformedPacket as exc:
        raise MalformedPacket(_LAYER, "bad_quoted_datagram", f"quoted IPv4 header: {exc.reason}: {exc.detail}") from None
    if len(ip.payload) < _QUOTED_DATA and ip.total_length - ip.header_len >= _QUOTED_DATA:
        raise MalformedPacket(_LAYER, "bad_quoted_datagram",
                              f"quote holds {len(ip.payload)} data bytes, RFC 792 requires 8")
    return ip


def build_icmp(type: int, code: int, rest: int, payload=b"") -> bytes:
    """An ICMP message with its checksum filled (RFC 792 "Checksum")."""
    out = bytearray(8 + len(payload))
    try:
        _pack_hdr(out, 0, type, code, 0, rest)
    except struct.error as exc:
        raise ValueError(f"ICMP header field out of range: {exc}") from None
    out[8:] = payload
    _pack_u16(out, 2, _checksum(out))
    return bytes(out)


def echo_request(ident: int, seq: int, payload=b"") -> bytes:
    """An Echo Request (type 8; RFC 792 "Echo or Echo Reply Message")."""
    return build_icmp(ECHO_REQUEST, 0, ((ident & 0xFFFF) << 16) | (seq & 0xFFFF), payload)


def echo_reply(request: ICMPMessage) -> bytes:
    """The Echo Reply to ``request``: same identifier, sequence number and data (RFC 792; RFC 1122 §3.2.2.6)."""
    if request.type != ECHO_REQUEST:
        raise ValueError(f"echo_reply needs an Echo Request, got ICMP type {request.type}")
    return build_icmp(ECHO_REPLY, 0, request.rest, request.payload)


def _quote(original_datagram) -> memoryview:
    """The original IP header plus its first 64 data bits (RFC 792; RFC 1122 §3.2.2)."""
    if isinstance(original_datagram, IPv4Packet):
        header = original_datagram.header
        return _as_view(bytes(header) + bytes(original_datagram.payload[:_QUOTED_DATA]))
    mv = _as_view(original_datagram)
    if len(mv) < 20 or mv[0] >> 4 != 4:
        raise ValueError("the original datagram is not an IPv4 datagram")
    hlen = (mv[0] & 15) << 2
    total = (mv[2] << 8) | mv[3]
    if hlen < 20 or hlen > len(mv):
        raise ValueError("the original datagram has a broken IPv4 header")
    end = min(hlen + _QUOTED_DATA, len(mv), max(total, hlen))
    return mv[:end]


def dest_unreachable(code: int, original_datagram, *, next_hop_mtu: int = 0) -> bytes:
    """Destination Unreachable (type 3, RFC 792) quoting ``original_datagram``.

    ``original_datagram`` is the offending datagram (bytes-like, or an
    :class:`~netstack.wire.ipv4.IPv4Packet`).  For ``FRAG_NEEDED`` the next-hop
    MTU goes in the low 16 bits of the rest word (RFC 1191 §4).  Codes:
    ``NET``, ``HOST``, ``PROTOCOL``, ``PORT``, ``FRAG_NEEDED``,
    ``ADMIN_PROHIBITED`` and the others above.
    """
    rest = (next_hop_mtu & 0xFFFF) if code == FRAG_NEEDED else 0
    return build_icmp(DEST_UNREACH, code, rest, _quote(original_datagram))


def time_exceeded(code: int, original_datagram) -> bytes:
    """Time Exceeded (type 11, RFC 792): ``TTL_EXCEEDED`` or ``FRAG_REASSEMBLY_EXCEEDED``."""
    return build_icmp(TIME_EXCEEDED, code, 0, _quote(original_datagram))
