"""IPv4 fragment reassembly (RFC 791 §3.2 "Fragmentation and reassembly", RFC 815, RFC 1122 §3.3.2).

Fragments are grouped by (source, destination, protocol, identification).
Because overlapping fragments are refused (below), the pieces of a datagram
never overlap, so the datagram is complete exactly when the last fragment
(MF clear) has fixed the total data length and the bytes held add up to it:
RFC 815's hole list reduces to one running sum.

Limits, all counted under ``ip.in.drop.<reason>`` (one count per fragment
thrown away, except where noted):

* ``reasm_timeout``: a datagram not complete ``timeout`` seconds (default 30)
  after its first fragment arrived is dropped (RFC 1122 §3.3.2 recommends 60-120 s;
  Linux uses 30 s).  If fragment zero had arrived, the caller sends ICMP Time
  Exceeded code 1 (RFC 792).  Counted once per datagram.
* ``reasm_overlap``: a fragment overlapping data already held (other than an
  exact duplicate, which is ignored and counted as ``ip.reasm.duplicates``)
  drops the whole datagram, as RFC 5722 asks of IPv6 (a defence against
  overlap-based evasion attacks).  Counted once per datagram.
* ``reasm_inconsistent``: data beyond the end fixed by the last fragment, or two
  different ends.  Drops the whole datagram.
* ``reasm_too_big``: data reaching past 65535 bytes of datagram ("ping of
  death").  Drops the whole datagram.
* ``reasm_overflow``: the table is full (``max_datagrams``) or holding this
  fragment would exceed ``max_bytes``: the oldest datagrams are evicted to
  make room (counted once per evicted datagram).
* ``bad_fragment_length``: a fragment with MF set whose data length is zero or
  not a multiple of 8 (RFC 791 §3.2: fragments break on 8-octet boundaries).
"""
from __future__ import annotations

import struct

from netstack import checksum as _cs

__all__ = ["Reassembler"]

_u16 = struct.Struct("!H")
MAX_DATAGRAM = 65535


class _Datagram:
    __slots__ = ("frags", "held", "total", "header", "deadline")

    def __init__(self, deadline: float) -> None:
        self.frags: list[tuple[int, int, bytes]] = []
        self.held = 0
        self.total: int | None = None     # data length, known once the MF=0 fragment arrived
        self.header: bytes | None = None  # header of fragment zero
        self.deadline = deadline


class Reassembler:
    """Holds fragments until their datagram is complete (sans-I/O; ``now`` passed in)."""

    def __init__(self, counters, *, timeout: float = 30.0, max_datagrams: int = 64,
                 max_bytes: int = 4 * 1024 * 1024) -> None:
        if timeout <= 0 or max_datagrams < 1 or max_bytes < 1:
            raise ValueError("reassembly timeout, max_datagrams and max_bytes must be positive")
        self.counters = counters
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.bytes_held = 0
        self.peak_bytes_held = 0
        self._table: dict[tuple, _Datagram] = {}   # insertion order == age order

    def __len__(self) -> int:
        return len(self._table)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _drop(self, key, reason: str) -> None:
        d = self._table.pop(key, None)
        if d is not None:
            self.bytes_held -= d.held
        self.counters.inc("ip.in.drop." + reason)
        self.counters.inc("ip.reasm.fails")

    def _evict_oldest(self, keep=None) -> bool:
        for key in self._table:
            if key != keep:
                self._drop(key, "reasm_overflow")
                return True
        return False

    def next_deadline(self) -> float | None:
        for d in self._table.values():
            return d.deadline
        return None

    def expire(self, now: float) -> list[bytes]:
        """Drop datagrams whose time is up; return the fragment-zero datagrams
        (header + first data bytes) the caller should answer with ICMP Time
        Exceeded code 1 (RFC 792)."""
        out = []
        table = self._table
        while table:
            key, d = next(iter(table.items()))
            if d.deadline > now:
                break
            if d.header is not None:
                first = next((b for s, _, b in d.frags if s == 0), b"")
                out.append(d.header + first[:8])
            self._drop(key, "reasm_timeout")
        return out

    # -- the work --------------------------------------------------------------------------------
    def add(self, p, now: float) -> bytearray | None:
        """Take one fragment (an ``IPv4Packet``); return the whole datagram when complete.

        The returned datagram has its header rewritten as unfragmented (MF and
        offset cleared, total length and checksum fixed).
        """
        c = self.counters
        c.inc("ip.reasm.fragments")
        data = p.payload
        start = p.frag_offset
        n = len(data)
        end = start + n
        mf = p.mf
        key = (p.src, p.dst, p.protocol, p.ident)
        if mf and (n == 0 or n & 7):
            c.inc("ip.in.drop.bad_fragment_length")
            return None
        table = self._table
        d = table.get(key)
        if end + (p.ihl << 2) > MAX_DATAGRAM:
            if d is not None:
                self._drop(key, "reasm_too_big")
            else:
                c.inc("ip.in.drop.reasm_too_big")
            return None
        if d is None:
            while len(table) >= self.max_datagrams:
                self._evict_oldest()
            d = _Datagram(now + self.timeout)
            table[key] = d
            c.inc("ip.reasm.datagrams")
        if not mf:
            if (d.total is not None and d.total != end) or any(e > end for _, e, _ in d.frags):
                self._drop(key, "reasm_inconsistent")
                return None
            d.total = end
        elif d.total is not None and end > d.total:
            self._drop(key, "reasm_inconsistent")
            return None
        for s, e, b in d.frags:
            if s < end and start < e:
                if s == start and e == end and b == data:
                    c.inc("ip.reasm.duplicates")
                    return None
                self._drop(key, "reasm_overlap")
                return None
        if n > self.max_bytes:
            self._drop(key, "reasm_overflow")
            return None
        while self.bytes_held + n > self.max_bytes:
            if not self._evict_oldest(keep=key):
                self._drop(key, "reasm_overflow")
                return None
        d.frags.append((start, end, bytes(data)))
        d.held += n
        self.bytes_held += n
        if self.bytes_held > self.peak_bytes_held:
            self.peak_bytes_held = self.bytes_held
        if start == 0:
            d.header = bytes(p.header)
        if d.total is None or d.header is None or d.held != d.total:
            return None
        # complete: no overlaps and held == total means [0, total) is covered exactly
        del table[key]
        self.bytes_held -= d.held
        hdr = d.header
        hlen = len(hdr)
        out = bytearray(hlen + d.total)
        out[:hlen] = hdr
        for s, e, b in d.frags:
            out[hlen + s:hlen + e] = b
        _u16.pack_into(out, 2, hlen + d.total)
        _u16.pack_into(out, 6, _u16.unpack_from(out, 6)[0] & 0x4000)   # keep DF, clear MF and offset
        _u16.pack_into(out, 10, 0)
        _u16.pack_into(out, 10, _cs.checksum(memoryview(out)[:hlen]))
        c.inc("ip.reasm.oks")
        return out
