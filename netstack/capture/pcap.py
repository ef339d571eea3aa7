"""libpcap capture files: a tolerant reader and a cheap writer.

Format: the classic libpcap file format (draft-ietf-opsawg-pcap, "PCAP Capture
File Format"): a 24-byte file header (magic, version 2.4, snaplen, link type)
followed by records, each a 16-byte header (seconds, fraction, captured length,
original length) and the captured bytes.

Reading accepts both byte orders and both timestamp resolutions (magic
``0xA1B2C3D4`` microseconds, ``0xA1B23C4D`` nanoseconds).  pcapng files are
recognised and sent to :mod:`netstack.capture.pcapng`.  Every structural
problem raises :class:`PcapError`, which names the packet number (1-based, as
tshark counts) and the byte offset of its record header.

Writing is meant for the stack to record every packet it sends and receives:
one precompiled :class:`struct.Struct`, a preallocated 16-byte record header
packed in place, a large write buffer, integer nanosecond time (no float
rounding), and a flush on :meth:`PcapWriter.close`.
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterator

__all__ = [
    "LINKTYPE_NULL", "LINKTYPE_ETHERNET", "LINKTYPE_RAW", "LINKTYPE_LOOP", "LINKTYPE_LINUX_SLL",
    "LINKTYPE_IPV4", "LINKTYPE_LINUX_SLL2", "RAW", "ETHERNET", "IPV4",
    "MAGIC_USEC", "MAGIC_NSEC", "PCAPNG_MAGIC", "MAX_SNAPLEN",
    "PcapError", "PcapRecord", "PcapReader", "PcapWriter", "read_pcap", "is_pcap",
]

# Link types (https://www.tcpdump.org/linktypes.html).  These are the LINKTYPE_
# values stored in files, not the platform's DLT_ values.
LINKTYPE_NULL = 0          # BSD loopback: 4-byte address family, host byte order
LINKTYPE_ETHERNET = 1      # IEEE 802.3 Ethernet
LINKTYPE_RAW = 101         # raw IPv4 or IPv6, no link header
LINKTYPE_LOOP = 108        # OpenBSD loopback: 4-byte address family, network order
LINKTYPE_LINUX_SLL = 113   # Linux "cooked" capture (tcpdump -i any), 16-byte header
LINKTYPE_IPV4 = 228        # raw IPv4 only
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked capture v2, 20-byte header
RAW, ETHERNET, IPV4 = LINKTYPE_RAW, LINKTYPE_ETHERNET, LINKTYPE_IPV4
# Some old files carry the platform DLT_RAW value (12 on most BSDs/Linux, 14 on OpenBSD).
_RAW_ALIASES = {12: LINKTYPE_RAW, 14: LINKTYPE_RAW}

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
MAX_SNAPLEN = 262144       # libpcap's MAXIMUM_SNAPLEN; larger record lengths mean a corrupt file

_time_ns = time.time_ns
_FILE_HEADER = struct.Struct("<IHHiIII")   # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_FILE_HEADER_LEN = 24
_RECORD_LEN = 16

_MAGICS = {
    struct.pack("<I", MAGIC_USEC): ("<", 1_000_000),
    struct.pack(">I", MAGIC_USEC): (">", 1_000_000),
    struct.pack("<I", MAGIC_NSEC): ("<", 1_000_000_000),
    struct.pack(">I", MAGIC_NSEC): (">", 1_000_000_000),
}


def is_pcap(head: bytes) -> bool:
    """True when *head* (the first 4+ bytes of a file) is a libpcap magic number."""
    return bytes(head[:4]) in _MAGICS


class PcapError(ValueError):
    """A malformed capture file.  ``str()`` is one line naming the place.

    ``packet`` is the 1-based record number (None for the file header) and
    ``offset`` the byte offset in the file where the problem starts.
    """

    def __init__(self, message: str, *, packet: int | None = None, offset: int | None = None) -> None:
        where = []
        if packet is not None:
            where.append(f"packet {packet}")
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.packet = packet
        self.offset = offset
        self.message = message


@dataclass(slots=True)
class PcapRecord:
    """One captured packet.  ``data`` holds ``caplen`` bytes; ``orig_len`` is the
    length on the wire (larger when the capture was cut at the snaplen)."""

    number: int          # 1-based, like tshark's frame numbers
    ts_sec: int
    ts_nsec: int         # nanoseconds, whatever the file's resolution
    data: bytes
    orig_len: int
    linktype: int
    offset: int          # byte offset of the record header in the file

    @property
    def ts(self) -> float:
        return self.ts_sec + self.ts_nsec / 1e9

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.orig_len


class PcapReader:
    """Iterate the records of a libpcap file.

    ``PcapReader(path_or_binary_file)``; attributes ``linktype``, ``snaplen``,
    ``nanosecond`` (resolution of the file), ``byteorder`` (``"<"``/``">"``).
    Iteration yields :class:`PcapRecord`; a cut-off or impossible record raises
    :class:`PcapError` naming the packet, after all good records before it.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO) -> None:
        if isinstance(source, (str, os.PathLike)):
            self._f: BinaryIO = open(source, "rb")
            self._owns = True
        else:
            self._f = source
            self._owns = False
        head = self._f.read(_FILE_HEADER_LEN)
        magic = head[:4]
        if magic == PCAPNG_MAGIC:
            raise PcapError("a pcapng file: read it with netstack.capture.pcapng.PcapngReader "
                            "(read_frames picks the reader itself)", offset=0)
        if magic not in _MAGICS:
            raise PcapError(f"not a pcap file (magic {magic.hex() or 'missing'})", offset=0)
        if len(head) < _FILE_HEADER_LEN:
            raise PcapError(f"file header cut short ({len(head)} of {_FILE_HEADER_LEN} bytes)", offset=0)
        order, self._units = _MAGICS[magic]
        _magic, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "IHHiIII", head)
        if major != 2:
            raise PcapError(f"unsupported pcap version {major}.{minor}", offset=4)
        self.byteorder = order
        self.nanosecond = self._units == 1_000_000_000
        self.snaplen = snaplen
        # Bits 26-31 may carry the FCS length; bits 16-25 are reserved.
        lt = linktype & 0xFFFF
        self.linktype = _RAW_ALIASES.get(lt, lt)
        self._rec = struct.Struct(order + "IIII")
        self._offset = _FILE_HEADER_LEN
        self._number = 0

    def __iter__(self) -> Iterator[PcapRecord]:
        rec = self._rec
        read = self._f.read
        scale = 1_000_000_000 // self._units
        while True:
            number = self._number + 1
            offset = self._offset
            hdr = read(_RECORD_LEN)
            if not hdr:
                return
            if len(hdr) < _RECORD_LEN:
                raise PcapError(f"record header cut short ({len(hdr)} of {_RECORD_LEN} bytes)",
                                packet=number, offset=offset)
            sec, frac, caplen, orig_len = rec.unpack(hdr)
            if caplen > MAX_SNAPLEN:
                raise PcapError(f"captured length {caplen} is larger than any pcap snaplen ({MAX_SNAPLEN}); "
                                "corrupt record header", packet=number, offset=offset)
            if frac >= self._units:
                raise PcapError(f"timestamp fraction {frac} out of range", packet=number, offset=offset)
            data = read(caplen)
            if len(data) < caplen:
                raise PcapError(f"packet data cut short ({len(data)} of {caplen} bytes)",
                                packet=number, offset=offset)
            self._number = number
            self._offset = offset + _RECORD_LEN + caplen
            yield PcapRecord(number, sec, frac * scale, data, max(orig_len, caplen), self.linktype, offset)

    def close(self) -> None:
        if self._owns:
            self._f.close()

    def __enter__(self) -> "PcapReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_pcap(source) -> list[PcapRecord]:
    """All records of a pcap file (convenience for tests and tools)."""
    with PcapReader(source) as reader:
        return list(reader)


class PcapWriter:
    """Write a libpcap file, one :meth:`write` per packet.

    ``PcapWriter(path_or_binary_file, linktype=RAW, snaplen=MAX_SNAPLEN, nanosecond=False)``.
    ``write(data, ts=None)`` records *data* (bytes, bytearray or memoryview; not
    copied here) stamped *ts* (seconds since the epoch as float, default: now).
    ``write_ns(data, ts_ns)`` takes integer nanoseconds.  Packets longer than
    *snaplen* are cut, keeping their original length in the record.  The file
    is flushed by :meth:`flush` and on :meth:`close` (or leaving ``with``).
    Little-endian on disk, as libpcap writes on x86.
    """

    def __init__(self, dest: str | os.PathLike | BinaryIO, linktype: int = LINKTYPE_RAW, *,
                 snaplen: int = MAX_SNAPLEN, nanosecond: bool = False, buffering: int = 1 << 16) -> None:
        if not 0 < snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be in 1..{MAX_SNAPLEN}")
        if isinstance(dest, (str, os.PathLike)):
            self._f: BinaryIO = open(dest, "wb", buffering=buffering)
            self._owns = True
        else:
            self._f = dest
            self._owns = False
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self.count = 0
        self._div = 1 if nanosecond else 1000
        self._units = 1_000_000_000 if nanosecond else 1_000_000
        self._hdr = bytearray(_RECORD_LEN)
        self._pack_into = struct.Struct("<IIII").pack_into
        self._write = self._f.write
        self._write(_FILE_HEADER.pack(MAGIC_NSEC if nanosecond else MAGIC_USEC, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data, ts: float | None = None) -> None:
        """Record one packet.  *ts*: seconds since the epoch (float), default now."""
        if ts is None:
            sec, frac = divmod(_time_ns(), 1_000_000_000)
            frac //= self._div
        else:
            sec = int(ts // 1)
            frac = round((ts - sec) * self._units)
            if frac >= self._units:        # 0.9999999 rounds up into the next second
                sec += 1
                frac -= self._units
        n = len(data)
        if n > self.snaplen:
            data = memoryview(data)[: self.snaplen]
        self._pack_into(self._hdr, 0, sec, frac, len(data), n)
        self._write(self._hdr)
        self._write(data)
        self.count += 1

    def write_ns(self, data, ts_ns: int) -> None:
        """Record one packet stamped with integer nanoseconds since the epoch."""
        sec, frac = divmod(ts_ns, 1_000_000_000)
        n = len(data)
        if n > self.snaplen:
            data = memoryview(data)[: self.snaplen]
        self._pack_into(self._hdr, 0, sec, frac // self._div, len(data), n)
        self._write(self._hdr)
        self._write(data)
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it.  Idempotent."""
        f = self._f
        if f is None:
            return
        try:
            f.flush()
        finally:
            if self._owns:
                f.close()
            self._f = None
            self._write = _closed_write

    @property
    def closed(self) -> bool:
        return self._f is None

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: do not lose buffered packets
        try:
            self.close()
        except Exception:
            pass


def _closed_write(_data) -> None:
    raise ValueError("write to a closed PcapWriter")
