"""pcapng capture files (tshark's and dumpcap's default format): a streaming reader.

Format: draft-ietf-opsawg-pcapng ("PCAP Now Generic").  A file is a sequence
of blocks, each ``type (4) | total length (4) | body | total length (4)``,
padded to 32 bits.  Blocks read here:

* Section Header Block (``0x0A0D0D0A``): starts a section and fixes its byte
  order (the byte-order magic ``0x1A2B3C4D``); a new section forgets the
  interfaces of the previous one.  Major version 1 only.
* Interface Description Block (1): link type and snaplen of one interface;
  the options ``if_tsresol`` (9: timestamp units, a power of 10 or, with the
  top bit set, of 2; default microseconds) and ``if_tsoffset`` (14: seconds
  added to every timestamp).
* Enhanced Packet Block (6): interface id, 64-bit timestamp, captured and
  original length, the packet.  Simple Packet Block (3) and the obsolete
  Packet Block (2) too.

Other blocks (name resolution, interface statistics, decryption secrets,
custom...) are skipped.  Every structural problem raises
:class:`netstack.capture.pcap.PcapError` naming the block (1-based, counting
every block of the file) or packet and the byte offset.  Link types are those
of :mod:`netstack.capture.pcap`; each record carries its interface's link
type, so one file may mix them.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from .pcap import _RAW_ALIASES, MAX_SNAPLEN, PCAPNG_MAGIC, PcapError, PcapRecord

__all__ = ["PcapngReader", "BYTE_ORDER_MAGIC"]

BYTE_ORDER_MAGIC = 0x1A2B3C4D
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_MAX_BLOCK = 16 * 1024 * 1024      # larger blocks mean a corrupt length field (Wireshark's limit)


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units: int = 1_000_000          # timestamp ticks per second
    offset: int = 0                 # if_tsoffset, seconds

    @property
    def digits(self) -> int:
        """Fraction digits worth printing: 6 for microseconds, 9 for anything finer."""
        return 6 if self.units <= 1_000_000 else 9


class PcapngReader:
    """Iterate the packets of a pcapng file as :class:`PcapRecord` objects.

    ``PcapngReader(binary_file)``; ``interfaces`` lists the interfaces of the
    current section; after each record, ``last_digits`` is the timestamp
    precision of its interface (6 or 9 fraction digits).  Records before a fatal error are yielded first.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._offset = 0
        self._block = 0
        self._number = 0
        self._order = "<"
        self.interfaces: list[_Interface] = []
        self.last_digits = 6            # timestamp digits of the last record's interface (6 or 9)
        head = f.read(12)
        if head[:4] != PCAPNG_MAGIC:
            raise PcapError(f"not a pcapng file (magic {head[:4].hex() or 'missing'})", offset=0)
        self._pending = head

    def _read_block(self) -> tuple[int, bytes, int] | None:
        """(type, body, offset) of the next block, or None at the end of the file."""
        offset = self._offset
        head, self._pending = (self._pending, b"") if self._pending else (self._f.read(8), b"")
        if not head:
            return None
        self._block += 1
        where = f"block {self._block}"
        if len(head) < 8:
            raise PcapError(f"{where}: block header cut short ({len(head)} of 8 bytes)", offset=offset)
        btype = struct.unpack_from(self._order + "I", head)[0]
        if btype == _SHB:
            if len(head) < 12:
                head += self._f.read(12 - len(head))
            if len(head) < 12:
                raise PcapError(f"{where}: section header cut short", offset=offset)
            bom = head[8:12]
            if bom == struct.pack("<I", BYTE_ORDER_MAGIC):
                self._order = "<"
            elif bom == struct.pack(">I", BYTE_ORDER_MAGIC):
                self._order = ">"
            else:
                raise PcapError(f"{where}: bad byte-order magic {bom.hex()} in the section header", offset=offset)
            extra = head[8:]
        else:
            extra = head[8:]
        length = struct.unpack_from(self._order + "I", head, 4)[0]
        if length < 12 or length % 4 or length > _MAX_BLOCK:
            raise PcapError(f"{where}: impossible block length {length}", offset=offset)
        rest = self._f.read(length - len(head))
        if len(rest) < length - len(head):
            raise PcapError(f"{where}: block cut short ({len(head) + len(rest)} of {length} bytes)", offset=offset)
        body = extra + rest[:-4]
        trailer = struct.unpack_from(self._order + "I", rest, len(rest) - 4)[0]
        if trailer != length:
            raise PcapError(f"{where}: trailing block length {trailer} differs from {length}", offset=offset)
        self._offset = offset + length
        return btype, body, offset

    def _options(self, body: bytes, at: int) -> Iterator[tuple[int, bytes]]:
        o = self._order
        while at + 4 <= len(body):
            code, olen = struct.unpack_from(o + "HH", body, at)
            if code == 0:                                   # opt_endofopt
                return
            yield code, body[at + 4: at + 4 + olen]
            at += 4 + olen + (-olen % 4)

    def _interface(self, body: bytes, offset: int) -> _Interface:
        if len(body) < 8:
            raise PcapError(f"block {self._block}: interface description cut short", offset=offset)
        linktype, _reserved, snaplen = struct.unpack_from(self._order + "HHI", body)
        iface = _Interface(_RAW_ALIASES.get(linktype, linktype), snaplen)
        for code, value in self._options(body, 8):
            if code == 9 and value:                         # if_tsresol
                r = value[0]
                iface.units = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
                if iface.units > 10 ** 18 or iface.units < 1:
                    raise PcapError(f"block {self._block}: timestamp resolution {r:#x} out of range", offset=offset)
            elif code == 14 and len(value) == 8:            # if_tsoffset
                iface.offset = struct.unpack(self._order + "q", value)[0]
        return iface

    def _record(self, iface_id: int, ticks: int | None, caplen: int, orig_len: int, body: bytes, at: int,
                offset: int) -> PcapRecord:
        number = self._number + 1
        if iface_id >= len(self.interfaces):
            raise PcapError(f"interface {iface_id} was not described (the section has {len(self.interfaces)})",
                            packet=number, offset=offset)
        iface = self.interfaces[iface_id]
        if caplen > MAX_SNAPLEN or at + caplen > len(body):
            raise PcapError(f"captured length {caplen} runs past the end of its block", packet=number, offset=offset)
        sec, nsec = 0, 0
        if ticks is not None:
            whole, frac = divmod(ticks, iface.units)
            sec, nsec = whole + iface.offset, frac * 1_000_000_000 // iface.units
        self._number = number
        self.last_digits = iface.digits
        return PcapRecord(number, sec, nsec, body[at: at + caplen], max(orig_len, caplen), iface.linktype, offset)

    def __iter__(self) -> Iterator[PcapRecord]:
        while True:
            block = self._read_block()
            if block is None:
                return
            btype, body, offset = block
            o = self._order
            if btype == _SHB:
                if len(body) < 8:
                    raise PcapError(f"block {self._block}: section header cut short", offset=offset)
                major = struct.unpack_from(o + "H", body, 4)[0]
                if major != 1:
                    raise PcapError(f"block {self._block}: unsupported pcapng version {major}", offset=offset)
                self.interfaces = []
                continue
            if self._block == 1:
                raise PcapError("the file does not start with a section header block", offset=0)
            if btype == _IDB:
                self.interfaces.append(self._interface(body, offset))
                continue
            if btype == _EPB:
                if len(body) < 20:
                    raise PcapError("enhanced packet block cut short", packet=self._number + 1, offset=offset)
                iface_id, hi, lo, caplen, orig_len = struct.unpack_from(o + "IIIII", body)
                rec = self._record(iface_id, (hi << 32) | lo, caplen, orig_len, body, 20, offset)
            elif btype == _SPB:
                if len(body) < 4 or not self.interfaces:
                    raise PcapError("simple packet block without an interface", packet=self._number + 1,
                                    offset=offset)
                orig_len = struct.unpack_from(o + "I", body)[0]
                snap = self.interfaces[0].snaplen or MAX_SNAPLEN
                rec = self._record(0, None, min(orig_len, snap, len(body) - 4), orig_len, body, 4, offset)
            elif btype == _PB:
                if len(body) < 20:
                    raise PcapError("packet block cut short", packet=self._number + 1, offset=offset)
                iface_id, _drops, hi, lo, caplen, orig_len = struct.unpack_from(o + "HHIIII", body)
                rec = self._record(iface_id, (hi << 32) | lo, caplen, orig_len, body, 20, offset)
            else:
                continue
            yield rec
