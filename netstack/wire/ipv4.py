"""IPv4 header parse and build (RFC 791 §3.1), sans-I/O and zero-copy.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The TOS byte is read as DSCP (6 bits, RFC 2474 §3) and ECN (2 bits, RFC 3168
§5).  Options are kept as raw bytes (:attr:`IPv4Packet.options`);
:func:`iter_ipv4_options` walks them for tools that want to show them.
Addresses are 32-bit ints in host arithmetic (network byte order decoded).

Parsing never copies: every bytes-valued field is a ``memoryview`` slice of the
caller's buffer, valid as long as that buffer is.
"""
from __future__ import annotations

import struct

from netstack import checksum as _cs
from netstack.wire.errors import MalformedPacket

__all__ = [
    "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "IPV4_HEADER_LEN", "IPV4_MAX_HEADER_LEN",
    "FLAG_RESERVED", "FLAG_DF", "FLAG_MF",
    "ip2int", "int2ip", "IPv4Packet", "parse_ipv4", "parse_ipv4_quoted",
    "build_ipv4_header", "ipv4_packet", "iter_ipv4_options", "read_plain_ipv4",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
IPV4_HEADER_LEN = 20
IPV4_MAX_HEADER_LEN = 60

# The 3-bit Flags field (RFC 791 §3.1): bit 0 reserved, bit 1 DF, bit 2 MF.
FLAG_RESERVED = 0x4
FLAG_DF = 0x2
FLAG_MF = 0x1

_HDR = struct.Struct("!BBHHHBBHII")
_unpack_hdr = _HDR.unpack_from
_pack_hdr = _HDR.pack_into
_pack_u16 = struct.Struct("!H").pack_into
_checksum = _cs.checksum

_LAYER = "ipv4"


def ip2int(text: str) -> int:
    """Dotted-quad text ``"a.b.c.d"`` to a 32-bit int (RFC 791 §2.3 addressing).

    Strict: exactly four decimal parts 0..255 without leading zeros, signs or
    spaces (``inet_aton`` shorthand such as ``"10.1"`` is refused).  Raises
    :class:`ValueError` on anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"IPv4 address must be text, got {type(text).__name__}")
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"bad IPv4 address {text!r}")
    value = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            raise ValueError(f"bad IPv4 address {text!r}")
        octet = int(part)
        if octet > 255:
            raise ValueError(f"bad IPv4 address {text!r}")
        value = (value << 8) | octet
    return value


def int2ip(value: int) -> str:
    """A 32-bit int to dotted-quad text; :class:`ValueError` outside 0..2**32-1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"not a 32-bit IPv4 address: {value!r}")
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _addr(value) -> int:
    """An address given as int or dotted-quad text, as an int."""
    if isinstance(value, str):
        return ip2int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
        return value
    raise ValueError(f"not an IPv4 address: {value!r}")


def _as_view(buf) -> memoryview:
    """A flat unsigned-byte memoryview of ``buf`` without copying."""
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


class IPv4Packet:
    """A parsed IPv4 datagram header (RFC 791 §3.1) and views of its parts.

    Integer fields: ``version``, ``ihl`` (32-bit words), ``tos``,
    ``total_length``, ``ident``, ``flags`` (3 bits: reserved, DF, MF),
    ``frag_offset`` (in BYTES: the 13-bit field times 8), ``ttl``, ``protocol``,
    ``checksum`` (as found), ``src``, ``dst``.  Derived: ``dscp``, ``ecn``
    (RFC 2474 / RFC 3168 reading of TOS), ``df``, ``mf``, ``is_fragment``,
    ``header_len``.

    Views (``memoryview`` slices of the parsed buffer, no copy): ``header``
    (``ihl*4`` bytes), ``options`` (header bytes 20..ihl*4, raw), ``payload``
    (``buf[ihl*4:total_length]``; link-layer padding beyond total length is
    ignored).  ``checksum_ok`` tells whether the header checksum verified.
    """

    version = 4  # parse_ipv4 accepts nothing else

    __slots__ = (
        "ihl", "tos", "total_length", "ident", "flags", "frag_offset",
        "ttl", "protocol", "checksum", "src", "dst", "payload", "checksum_ok", "_view",
    )

    @property
    def header(self) -> memoryview:
        """The ``ihl*4`` header bytes (a view of the parsed buffer)."""
        return self._view[:self.ihl << 2]

    @property
    def options(self) -> memoryview:
        """The raw option bytes, header bytes 20..``ihl*4`` (RFC 791 §3.1 "Options"; a view)."""
        return self._view[20:self.ihl << 2]

    @property
    def dscp(self) -> int:
        """Differentiated Services code point: the upper 6 TOS bits (RFC 2474 §3)."""
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        """ECN field: the lower 2 TOS bits (RFC 3168 §5)."""
        return self.tos & 3

    @property
    def df(self) -> bool:
        """Don't Fragment (RFC 791 §3.1, Flags bit 1)."""
        return bool(self.flags & FLAG_DF)

    @property
    def mf(self) -> bool:
        """More Fragments (RFC 791 §3.1, Flags bit 2)."""
        return bool(self.flags & FLAG_MF)

    @property
    def is_fragment(self) -> bool:
        """True for any piece of a fragmented datagram (MF set or offset != 0; RFC 791 §3.2)."""
        return bool(self.flags & FLAG_MF) or self.frag_offset != 0

    @property
    def header_len(self) -> int:
        """Header length in bytes (``ihl * 4``)."""
        return self.ihl << 2

    def __repr__(self) -> str:
        return (
            f"IPv4Packet({int2ip(self.src)} > {int2ip(self.dst)} proto {self.protocol} "
            f"len {self.total_length} ihl {self.ihl} id {self.ident} ttl {self.ttl} "
            f"flags {self.flags:#x} frag_offset {self.frag_offset} tos {self.tos:#04x} "
            f"cksum {self.checksum:#06x}{'' if self.checksum_ok else ' (bad)'})"
        )


def parse_ipv4(buf, *, verify: bool = True, _quoted: bool = False) -> IPv4Packet:
    """Parse an IPv4 datagram (RFC 791 §3.1; receive checks of RFC 1122 §3.2.1).

    ``buf`` is any bytes-like object (``bytes``, ``bytearray``, ``memoryview``)
    and may be longer than the total length (link padding is ignored).  Raises
    :class:`MalformedPacket` (layer ``ipv4``) with reason ``truncated``,
    ``bad_version``, ``bad_ihl``, ``bad_total_length`` or, when ``verify`` is
    true, ``bad_checksum`` (RFC 1122 §3.2.1.2: a datagram with a bad header
    checksum MUST be silently discarded).  With ``verify=False`` the checksum
    is still computed and reported in ``checksum_ok``.  (``_quoted`` is
    internal: use :func:`parse_ipv4_quoted`.)
    """
    mv = buf if type(buf) is memoryview else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    n = len(mv)
    if n < 20:
        raise MalformedPacket(_LAYER, "truncated", f"{n} bytes, an IPv4 header needs at least 20")
    vihl, tos, total_length, ident, fragword, ttl, protocol, csum, src, dst = _unpack_hdr(mv)
    if vihl == 0x45:  # version 4, no options: nearly every datagram
        hlen = 20
        # RFC 1071 §2: the ones' complement sum is the sum modulo 2**16 - 1 (2**16 counts as 1, so a
        # 32-bit address adds as its two halves), and a valid header sums to -0.  The fields are
        # unpacked already, so the 20-byte header is verified without another pass over its bytes.
        ok = (((vihl << 8) | tos) + total_length + ident + fragword + ((ttl << 8) | protocol) + csum
              + src + dst) % 0xFFFF == 0
    else:
        if vihl >> 4 != 4:
            raise MalformedPacket(_LAYER, "bad_version", f"version {vihl >> 4}, expected 4")
        hlen = (vihl & 15) << 2
        if hlen < 20:
            raise MalformedPacket(_LAYER, "bad_ihl", f"IHL {hlen >> 2} words, minimum is 5")
        if hlen > n:
            raise MalformedPacket(_LAYER, "truncated", f"IHL says {hlen} header bytes, only {n} present")
        ok = _checksum(mv[:hlen]) == 0
    if total_length > n or total_length < hlen:
        if total_length < hlen:
            raise MalformedPacket(_LAYER, "bad_total_length",
                                  f"total length {total_length} below header length {hlen}")
        if not _quoted:
            raise MalformedPacket(_LAYER, "bad_total_length",
                                  f"total length {total_length} beyond the {n} bytes received")
        end = n
    else:
        end = total_length
    if verify and not ok:
        raise MalformedPacket(_LAYER, "bad_checksum", f"header checksum {csum:#06x} does not verify")
    p = IPv4Packet()
    p.ihl = hlen >> 2
    p.tos = tos
    p.total_length = total_length
    p.ident = ident
    p.flags = fragword >> 13
    p.frag_offset = (fragword & 0x1FFF) << 3
    p.ttl = ttl
    p.protocol = protocol
    p.checksum = csum
    p.src = src
    p.dst = dst
    p.payload = mv[hlen:end]
    p.checksum_ok = ok
    p._view = mv
    return p


def _nbytes(buf) -> int:
    """The length of ``buf`` in bytes, whatever its items (as the native twin takes it)."""
    if buf.__class__ is bytes or buf.__class__ is bytearray:
        return len(buf)
    return buf.nbytes if buf.__class__ is memoryview else memoryview(buf).nbytes


def _read_plain_ipv4(buf, addr: int):
    """The IPv4 layer's fast-path read of a datagram (RFC 791 §3.1, RFC 1122 §3.2.1), in Python.

    ``(protocol, src, total_length)`` when ``buf`` (any C-contiguous buffer, taken as its
    bytes; BufferError for another) holds a
    datagram for ``addr`` (an int) with the plain 20-byte header (version 4, IHL 5), not a
    fragment (MF clear, offset 0), a total length of at least 20 that fits the buffer, and a
    header checksum that verifies; None for anything else (which the full path then parses,
    counting its drops by reason).  The checksum is computed from the unpacked fields: the
    ones' complement sum is the sum modulo 2**16 - 1, a 32-bit field adding as its two halves
    (RFC 1071 §2), and a valid header sums to -0.  :func:`read_plain_ipv4` is this, or its
    native twin (identical results).
    """
    try:
        vihl, tos, tlen, ident, frag, ttl, proto, csum, src, dst = _unpack_hdr(buf)
    except struct.error:                       # under 20 bytes
        return None
    if (vihl == 0x45 and dst == addr and 20 <= tlen <= _nbytes(buf) and not frag & 0x3FFF
            and ((0x4500 | tos) + tlen + ident + frag + ((ttl << 8) | proto) + csum + src + dst) % 0xFFFF == 0):
        return proto, src, tlen
    return None


_entry = _cs.native_entry()
#: ``read_plain_ipv4(buf, addr)``: see :func:`_read_plain_ipv4`; natively (netstack._native_entry)
#: when that was built.
read_plain_ipv4 = _entry.read_plain_ipv4 if _entry is not None else _read_plain_ipv4


def parse_ipv4_quoted(buf) -> IPv4Packet:
    """Parse the (possibly cut short) datagram quoted inside an ICMP error.

    RFC 792 / RFC 1122 §3.2.2: an ICMP error quotes the original IP header and
    at least the first 8 data bytes, so the total length normally runs past the
    bytes present.  ``payload`` is whatever part of the original data was
    quoted.  The checksum is reported in ``checksum_ok`` but never enforced
    (routers may have changed the TTL after computing it).  Raises
    :class:`MalformedPacket` (layer ``ipv4``) if the header itself is broken.
    """
    return parse_ipv4(buf, verify=False, _quoted=True)


def build_ipv4_header(buf, offset: int, *, src, dst, protocol: int, payload_len: int, ttl: int = 64,
                      ident: int = 0, df: bool = False, mf: bool = False, frag_offset: int = 0,
                      tos: int = 0, options=b"") -> int:
    """Write an IPv4 header with its checksum filled at ``buf[offset:]`` (RFC 791 §3.1).

    ``src``/``dst`` are ints (dotted text also accepted).  ``frag_offset`` is in
    bytes and must be a multiple of 8.  ``options`` are raw option bytes,
    zero-padded (End of Option List) to a 32-bit boundary; at most 40 bytes.
    The header checksum is the RFC 1071 checksum of the header (RFC 791 §3.1,
    "Header Checksum").  Returns the header length in bytes.  Raises
    :class:`ValueError` for out-of-range arguments or a too-small buffer.
    """
    olen = len(options)
    padded = (olen + 3) & ~3
    if padded > 40:
        raise ValueError(f"IPv4 options are {olen} bytes, at most 40 fit")
    hlen = 20 + padded
    if frag_offset & 7 or not 0 <= frag_offset <= 0x1FFF << 3:
        raise ValueError(f"fragment offset {frag_offset} is not a multiple of 8 in 0..65528")
    total_length = hlen + payload_len
    if payload_len < 0 or total_length > 0xFFFF:
        raise ValueError(f"total length {total_length} does not fit IPv4's 16-bit field")
    if offset < 0 or len(buf) - offset < hlen:
        raise ValueError(f"buffer too small for a {hlen}-byte IPv4 header at offset {offset}")
    if type(src) is not int:
        src = _addr(src)
    if type(dst) is not int:
        dst = _addr(dst)
    fragword = (FLAG_DF << 13 if df else 0) | (FLAG_MF << 13 if mf else 0) | (frag_offset >> 3)
    if olen:
        csum = 0
    else:
        # RFC 1071 §2 arithmetic (see parse_ipv4): the sum modulo 2**16 - 1, complemented.
        try:
            csum = (0x4500 | tos) + total_length + ident + fragword + (ttl << 8 | protocol) + src + dst
        except TypeError:
            raise ValueError("IPv4 header fields must be ints") from None
        csum = 0xFFFF - (csum % 0xFFFF) if csum % 0xFFFF else 0
    try:
        _pack_hdr(buf, offset, 0x40 | (hlen >> 2), tos, total_length, ident, fragword, ttl, protocol, csum, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv4 header field out of range: {exc}") from None
    if olen:
        mv = memoryview(buf)
        mv[offset + 20:offset + 20 + olen] = options
        if padded != olen:
            mv[offset + 20 + olen:offset + hlen] = bytes(padded - olen)
        _pack_u16(buf, offset + 10, _checksum(mv[offset:offset + hlen]))
    return hlen


def ipv4_packet(*, src, dst, protocol: int, payload=b"", **kw) -> bytes:
    """A whole IPv4 datagram as ``bytes`` (convenience for tests and tools).

    ``src``/``dst`` may be ints or dotted text; other keywords as for
    :func:`build_ipv4_header`.
    """
    options = kw.get("options", b"")
    hlen = 20 + ((len(options) + 3) & ~3)
    out = bytearray(hlen + len(payload))
    build_ipv4_header(out, 0, src=_addr(src), dst=_addr(dst), protocol=protocol,
                      payload_len=len(payload), **kw)
    out[hlen:] = payload
    return bytes(out)


# RFC 791 §3.1 option types that are a single byte (no length byte).
_IP_OPT_EOL = 0
_IP_OPT_NOP = 1


def iter_ipv4_options(options):
    """Walk raw IPv4 options (RFC 791 §3.1 "Options"): yield ``(offset, type, data)``.

    ``type`` is the whole option-type byte (copied flag, class, number);
    ``data`` is a memoryview of the option's bytes after the length byte
    (empty for End of Option List and No Operation).  Stops at End of Option
    List.  Raises :class:`MalformedPacket` (``ipv4``, ``bad_option_length``) when
    a length byte is missing, below 2 or runs past the options area.
    """
    mv = _as_view(options)
    n = len(mv)
    i = 0
    while i < n:
        kind = mv[i]
        if kind == _IP_OPT_EOL:
            yield i, kind, mv[i + 1:i + 1]
            return
        if kind == _IP_OPT_NOP:
            yield i, kind, mv[i + 1:i + 1]
            i += 1
            continue
        if i + 1 >= n:
            raise MalformedPacket(_LAYER, "bad_option_length", f"option type {kind} at offset {i} has no length byte")
        olen = mv[i + 1]
        if olen < 2 or i + olen > n:
            raise MalformedPacket(_LAYER, "bad_option_length",
                                  f"option type {kind} at offset {i} has length {olen}, {n - i} bytes left")
        yield i, kind, mv[i + 2:i + olen]
        i += olen
