"""Packet capture: pcap files, tcpdump hex dumps, and the tcpdump-style dissector.

Modules, one job each:

- :mod:`netstack.capture.pcap`     libpcap reader and the cheap :class:`PcapWriter` the stack records with
- :mod:`netstack.capture.pcapng`   pcapng reader (section header, interface description, packet blocks)
- :mod:`netstack.capture.filter`   a small tcpdump-style filter expression (``tcp port 25 and host ...``)
- :mod:`netstack.capture.hexdump`  tcpdump ``-x``/``-X`` hex dumps (the seed article's format); hex dump -> pcap
- :mod:`netstack.capture.dissect`  one IPv4 packet -> layers + checksum verdicts (found vs expected)
- :mod:`netstack.capture.format`   the one-line tcpdump-style printer (relative sequence numbers, options)
- :mod:`netstack.capture.explain`  ``-x/--explain``: hex + ASCII and a field-by-field reading

This module turns any capture into a stream of :class:`Frame` objects
(:func:`read_frames`, format auto-detected) and peels the link layer
(:func:`network_layer`).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from .pcap import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP,
                   LINKTYPE_NULL, LINKTYPE_RAW, PCAPNG_MAGIC, PcapError, PcapReader, PcapWriter, is_pcap)
from .pcapng import PcapngReader
from .hexdump import HexDumpError, guess_linktype, parse_hexdump

__all__ = ["CaptureError", "Frame", "read_frames", "network_layer", "link_header", "arp_packet", "PcapWriter", "PcapReader", "PcapError",
           "HexDumpError", "LINKTYPE_RAW", "LINKTYPE_ETHERNET", "LINKTYPE_IPV4"]


class CaptureError(ValueError):
    """A capture file that cannot be read; ``str()`` is one line naming the place."""


@dataclass(slots=True)
class Frame:
    """One captured packet, whatever the file format."""

    number: int
    data: bytes
    linktype: int
    ts_sec: int | None = None        # None: no timestamp known (hex dump without header line)
    ts_nsec: int = 0
    ts_digits: int = 6               # fraction digits to print (9 for nanosecond pcaps)
    date_known: bool = True
    orig_len: int | None = None      # length on the wire, when the capture was cut
    where: str = ""                  # "packet 3 (offset 120)" or "line 17"
    header: str | None = None        # hex dump header line
    redacted: frozenset = frozenset()             # offsets (into data) of redacted bytes
    ascii_mismatches: list = field(default_factory=list)


def _pcap_frames(f: BinaryIO) -> Iterator[Frame]:
    reader = PcapReader(f)
    digits = 9 if reader.nanosecond else 6
    for r in reader:
        yield Frame(r.number, r.data, r.linktype, r.ts_sec, r.ts_nsec, digits, True,
                    r.orig_len if r.orig_len > len(r.data) else None, f"packet {r.number} (offset {r.offset})")


def _pcapng_frames(f: BinaryIO) -> Iterator[Frame]:
    reader = PcapngReader(f)
    for r in reader:
        yield Frame(r.number, r.data, r.linktype, r.ts_sec, r.ts_nsec, reader.last_digits, True,
                    r.orig_len if r.orig_len > len(r.data) else None, f"packet {r.number} (offset {r.offset})")


def _hex_frames(text: str) -> Iterator[Frame]:
    for p in parse_hexdump(text):
        yield Frame(p.number, p.data, guess_linktype(p.data), p.ts_sec, p.ts_nsec, p.ts_digits, p.date_known,
                    None, f"line {p.line}", p.header, p.redacted, p.ascii_mismatches)


def read_frames(source: str | BinaryIO, name: str | None = None) -> Iterator[Frame]:
    """Frames of a capture: a pcap file (any byte order, µs or ns), a pcapng file or a tcpdump hex dump.

    *source*: a path, ``"-"`` for standard input, or a binary file object.
    pcap files are streamed (any size); hex dumps are read whole.  Errors are
    :class:`CaptureError` with a one-line message naming *name* (the file) and
    the packet number/offset (pcap) or line (hex dump).  Frames read before a
    fatal error are yielded first.
    """
    import sys

    owned = None
    if isinstance(source, str):
        name = name or source
        if source == "-":
            f = sys.stdin.buffer
        else:
            try:
                f = owned = open(source, "rb")
            except OSError as exc:
                raise CaptureError(f"{name}: {exc.strerror or exc}") from None
    else:
        name = name or getattr(source, "name", "<input>")
        f = source
    try:
        head = f.peek(4)[:4] if hasattr(f, "peek") else b""
        if not hasattr(f, "peek"):
            head = f.read(4)
            f = io.BufferedReader(_Prepend(head, f))
        if head == PCAPNG_MAGIC:
            yield from _pcapng_frames(f)
            return
        if is_pcap(head):
            yield from _pcap_frames(f)
            return
        raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\0" in text:
            raise CaptureError(f"{name}: neither a pcap file (magic {raw[:4].hex()}) nor a tcpdump hex dump")
        count = 0
        for frame in _hex_frames(text):
            count += 1
            yield frame
        if count == 0:
            raise CaptureError(f"{name}: no packets found (expected a pcap file or a tcpdump hex dump "
                               "with 0x0000 lines)")
    except (PcapError, HexDumpError) as exc:
        raise CaptureError(f"{name}: {exc}") from None
    finally:
        if owned is not None:
            owned.close()


class _Prepend(io.RawIOBase):
    """A raw stream that replays *head* and then reads on from *rest*."""

    def __init__(self, head: bytes, rest) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


_ETHERTYPES = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP", 0x8035: "Reverse ARP", 0x8100: "802.1Q", 0x88CC: "LLDP"}
# Link headers that carry an EtherType: link type -> (name, header length, offset of the EtherType).
_ETHERTYPE_LINKS = {LINKTYPE_ETHERNET: ("Ethernet", 14, 12), LINKTYPE_LINUX_SLL: ("Linux cooked", 16, 14),
                    LINKTYPE_LINUX_SLL2: ("Linux cooked v2", 20, 0)}


def _ethertype_payload(frame: Frame) -> tuple[str, int | None, int]:
    """(link name, EtherType or None when cut short, offset of the payload) of a frame whose link
    header carries an EtherType (802.1Q/802.1ad tags skipped)."""
    data, lt = frame.data, frame.linktype
    name, off, at = _ETHERTYPE_LINKS[lt]
    if len(data) < off:
        return name, None, off
    etype = struct.unpack_from("!H", data, at)[0]
    while lt == LINKTYPE_ETHERNET and etype in (0x8100, 0x88A8) and len(data) >= off + 4:   # VLAN tags
        etype, off = struct.unpack_from("!H", data, off + 2)[0], off + 4
    return name, etype, off


def arp_packet(frame: Frame) -> bytes | None:
    """The ARP (or RARP) packet of a frame whose link header says it carries one, else None
    (for the filter's ``host``/``net``, which match ARP addresses as tcpdump's do)."""
    if frame.linktype not in _ETHERTYPE_LINKS:
        return None
    _name, etype, off = _ethertype_payload(frame)
    return frame.data[off:] if etype in (0x0806, 0x8035) else None


def network_layer(frame: Frame) -> tuple[bytes | None, int, str | None]:
    """Peel the link layer: ``(ipv4_bytes, offset_in_frame, None)`` or
    ``(None, 0, description)`` for a frame that carries no IPv4 packet."""
    data, lt = frame.data, frame.linktype
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4):
        off = 0
    elif lt in _ETHERTYPE_LINKS:
        name, etype, off = _ethertype_payload(frame)
        if etype is None:
            return None, 0, f"{name} header cut short ({len(data)} bytes)"
        if etype != 0x0800:
            return None, 0, f"ethertype {_ETHERTYPES.get(etype, 'Unknown')} (0x{etype:04x}), length {len(data)}"
    elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None, 0, "loopback header cut short"
        fam = int.from_bytes(data[:4], "big" if lt == LINKTYPE_LOOP else "little")
        if lt == LINKTYPE_NULL and fam > 0xFFFF:                      # written on the other byte order
            fam = int.from_bytes(data[:4], "big")
        if fam != 2:
            return None, 0, f"loopback address family {fam}, length {len(data)}"
        off = 4
    else:
        return None, 0, (f"link type {lt} not supported (raw IP, Ethernet, Linux cooked, loopback are), "
                         f"length {len(data)}")
    if len(data) > off and data[off] >> 4 == 6:
        return None, 0, f"IP6, not dissected, length {len(data) - off}"
    return data[off:], off, None


_SLL_TYPES = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}


def _ethertype(etype: int) -> str:
    return f"ethertype {_ETHERTYPES.get(etype, 'Unknown')} (0x{etype:04x})"


def link_header(frame: Frame) -> str | None:
    """The link-layer header in ``tcpdump -e``'s words, without the trailing ``": "``, e.g.
    ``02:00:00:00:00:02 > 02:00:00:00:00:01, ethertype IPv4 (0x0800), length 74``
    (Ethernet), `` In 02:00:00:00:00:01 ethertype IPv4 (0x0800), length 76`` (Linux
    cooked), ``AF IPv4 (2), length 88`` (loopback), ``ip`` (raw IP: tcpdump's
    ``ip: ...``); None when the header is cut short or the link type is unknown."""
    data, lt = frame.data, frame.linktype
    length = frame.orig_len or len(data)
    mac = lambda b: ":".join(f"{x:02x}" for x in b)
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return "ip"
    if lt == LINKTYPE_ETHERNET and len(data) >= 14:
        etype = struct.unpack_from("!H", data, 12)[0]
        head = f"{mac(data[6:12])} > {mac(data[0:6])}, {_ethertype(etype)}, length {length}"
        off = 14
        while etype in (0x8100, 0x88A8) and len(data) >= off + 4:                 # 802.1Q / 802.1ad tags
            tci, etype = struct.unpack_from("!HH", data, off)
            head += f": vlan {tci & 0xFFF}, p {tci >> 13}{', DEI' if tci & 0x1000 else ''}, {_ethertype(etype)}"
            off += 4
        return head
    if lt == LINKTYPE_LINUX_SLL and len(data) >= 16:
        pkttype, _hatype, halen = struct.unpack_from("!HHH", data)
        etype = struct.unpack_from("!H", data, 14)[0]
        return f"{_SLL_TYPES.get(pkttype, '?'):>3} {mac(data[6: 6 + min(halen, 8)])} {_ethertype(etype)}, length {length}"
    if lt == LINKTYPE_LINUX_SLL2 and len(data) >= 20:
        etype, _res, ifindex, _hatype, pkttype, halen = struct.unpack_from("!HHIHBB", data)
        return (f"ifindex {ifindex} {_SLL_TYPES.get(pkttype, '?'):>3} {mac(data[12: 12 + min(halen, 8)])} "
                f"{_ethertype(etype)}, length {length}")
    if lt in (LINKTYPE_NULL, LINKTYPE_LOOP) and len(data) >= 4:
        fam = int.from_bytes(data[:4], "big" if lt == LINKTYPE_LOOP else "little")
        if lt == LINKTYPE_NULL and fam > 0xFFFF:
            fam = int.from_bytes(data[:4], "big")
        name = {2: "IPv4", 24: "IPv6", 28: "IPv6", 30: "IPv6"}.get(fam, "Unknown")
        return f"AF {name} ({fam}), length {length}"
    return None
