"""Send buffer / retransmission queue, receive buffer, out-of-order queue.

RFC 9293 §3.8 (data communication) and §3.10.7.4 step 7 (segment text).

SendBuffer holds every byte the user handed us that is not yet acknowledged:
the bytes from ``seq`` (= SND.UNA for data) up to SND.NXT are the
retransmission queue (sent, unacknowledged); the rest are queued, unsent.
It is indexed by sequence number: ``view(seq, n)`` is what a (re)transmission
of ``n`` bytes starting at ``seq`` carries.

ReceiveBuffer holds in-order bytes the user has not read yet.  A large payload
that comes as a read-only view (a GSO super-segment from the TUN's read buffer,
which the link does not write again while the view lives) is kept as it is, not
copied; other payloads are copied exactly once, from the packet into this
buffer.  A reader may take a kept payload, or everything copied, with no
further copy (``take``).

OutOfOrderQueue holds segments that arrived beyond RCV.NXT, merged into
disjoint ranges, bounded in bytes (RFC 9293 §3.10.7.4: "segments with higher
beginning sequence numbers SHOULD be held for later processing").
"""
from __future__ import annotations

from collections import deque

from .seq import MASK, seq_diff as _diff


class SendBuffer:
    __slots__ = ("data", "seq", "capacity")

    def __init__(self, capacity: int, seq: int = 0):
        self.data = bytearray()
        self.seq = seq            # sequence number of data[0]
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.data)

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self.data))

    @property
    def end_seq(self) -> int:
        """Sequence number just past the last queued byte."""
        return (self.seq + len(self.data)) & MASK

    def write(self, data) -> int:
        """Queue as much of ``data`` as fits; return the byte count accepted."""
        n = min(len(data), self.capacity - len(self.data))
        if n <= 0:
            return 0
        if n == len(data):
            self.data += data
        else:
            self.data += memoryview(data)[:n]
        return n

    def ack(self, ack_seq: int) -> int:
        """Drop bytes before ``ack_seq`` (cumulative ACK); return bytes freed."""
        n = _diff(ack_seq, self.seq)
        if n <= 0:
            return 0
        if n > len(self.data):
            n = len(self.data)
        del self.data[:n]
        self.seq = (self.seq + n) & MASK
        return n

    def offset(self, seq: int) -> int:
        return _diff(seq, self.seq)

    def view(self, seq: int, n: int) -> memoryview:
        """Bytes [seq, seq+n) as a memoryview (do not keep it: the buffer moves)."""
        off = _diff(seq, self.seq)
        return memoryview(self.data)[off:off + n]


#: in-order payloads at least this long that come as read-only views are kept, not copied
#: (ReceiveBuffer.append): a GSO super-segment straight from the link's read buffer.  The bound
#: keeps the memory pinned per byte held low: a view keeps its whole read buffer (64 KB) alive.
KEEP_MIN = 16 * 1024


class ReceiveBuffer:
    """In-order bytes the user has not read yet, in two parts: ``chunks``, payloads kept as
    they came (read-only views of a link's read buffer, which the link never writes again while
    a view of it lives: a super-segment is not copied at all), and after them ``data``, a
    bytearray the other payloads are copied into.  ``len()`` counts both."""

    __slots__ = ("data", "chunks", "held", "capacity")

    def __init__(self, capacity: int):
        self.data = bytearray()
        self.chunks: deque = deque()   # kept payloads, in order, all before ``data``
        self.held = 0                  # bytes in ``chunks``
        self.capacity = capacity

    def __len__(self) -> int:
        return self.held + len(self.data)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.held - len(self.data))

    def append(self, payload) -> None:
        """Add in-order bytes: kept as they are when ``payload`` is a read-only memoryview of at
        least KEEP_MIN bytes (its owner does not write it again while it is referenced, the
        Link contract for read-only views), otherwise copied (the one copy)."""
        if type(payload) is memoryview and payload.readonly and len(payload) >= KEEP_MIN:
            d = self.data
            if d:                                  # the copied bytes before it become a chunk
                self.chunks.append(d)
                self.held += len(d)
                self.data = bytearray()
            self.chunks.append(payload)
            self.held += len(payload)
        else:
            self.data += payload

    def clear(self) -> None:
        self.chunks.clear()
        self.held = 0
        self.data.clear()

    def _cut_head(self, k: int) -> None:
        """Drop the first ``k`` bytes of the first chunk, which is longer than ``k``."""
        c = self.chunks[0]
        if type(c) is bytearray:           # copied bytes: del is amortised, a slice would
            del c[:k]                      # copy the whole rest on every partial read
        else:
            self.chunks[0] = c[k:]         # a view: slicing copies nothing
        self.held -= k

    def _gather(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes (``n`` <= len), from the chunks on, as bytes."""
        parts = []
        chunks = self.chunks
        while n and chunks:
            c = chunks[0]
            if len(c) <= n:
                chunks.popleft()
                parts.append(c)
                self.held -= len(c)
                n -= len(c)
            else:
                parts.append(c[:n])
                self._cut_head(n)
                n = 0
        if n:
            d = self.data
            parts.append(memoryview(d)[:n].tobytes())
            del d[:n]
        return b"".join(parts)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all with ``n`` < 0), copied once (through a memoryview: a
        bytearray slice would be a second copy)."""
        d = self.data
        total = self.held + len(d)
        if n < 0 or n > total:
            n = total
        if not self.chunks:
            if n == len(d):
                out = bytes(d)
                d.clear()
                return out
            out = memoryview(d)[:n].tobytes()       # the view is gone before the del below
            del d[:n]
            return out
        return self._gather(n)

    def take(self, n: int = -1):
        """Like :meth:`read`, but without a copy where it can: the first kept chunk, when it
        fits in ``n`` (a read-only view the caller now holds), or, when everything buffered is
        taken, the bytearray itself (the caller now owns it; a fresh one starts)."""
        chunks = self.chunks
        if chunks:
            c = chunks[0]
            if n < 0 or len(c) <= n:
                chunks.popleft()
                self.held -= len(c)
                return c
            return self.read(n)
        d = self.data
        if n < 0 or n >= len(d):
            self.data = bytearray()
            return d
        return self.read(n)

    def read_into(self, buf) -> int:
        """Fill ``buf`` from the front of the buffer: one copy, buffer to ``buf``."""
        out = memoryview(buf)
        total = 0
        chunks = self.chunks
        while chunks and total < len(out):
            c = chunks[0]
            k = min(len(c), len(out) - total)
            out[total:total + k] = c[:k]
            total += k
            if k == len(c):
                chunks.popleft()
                self.held -= k
            else:
                self._cut_head(k)
        d = self.data
        k = min(len(out) - total, len(d))
        if k:
            out[total:total + k] = memoryview(d)[:k]
            del d[:k]
            total += k
        return total


class ByteBudget:
    """Bytes several buffers share a bound on (all connections' out-of-order queues)."""

    __slots__ = ("used", "limit")

    def __init__(self, limit: int) -> None:
        self.used = 0
        self.limit = limit

    def fits(self, n: int) -> bool:
        return self.used + n <= self.limit


class OutOfOrderQueue:
    """Disjoint, merged byte ranges beyond RCV.NXT, bounded by ``limit`` bytes (and by a
    shared :class:`ByteBudget`, when given)."""

    __slots__ = ("ranges", "nbytes", "limit", "max_ranges", "fin_seq", "last_seq", "budget")

    def __init__(self, limit: int, max_ranges: int = 64, budget: ByteBudget | None = None):
        self.ranges: list[list] = []   # [start_seq, bytearray], sorted by offset from RCV.NXT
        self.nbytes = 0
        self.limit = limit
        # Bound on separate holes too: many tiny segments must not make insertion quadratic.
        self.max_ranges = max_ranges
        self.fin_seq: int | None = None   # a FIN seen beyond RCV.NXT (its sequence number)
        self.last_seq: int | None = None  # start of the most recently received segment (SACK order)
        self.budget = budget

    def __len__(self) -> int:
        return len(self.ranges)

    def insert(self, seq: int, payload, rcv_nxt: int) -> bool:
        """Hold ``payload`` (starting at ``seq`` > rcv_nxt).  False if over the bound."""
        n = len(payload)
        if n == 0:
            return True
        start = _diff(seq, rcv_nxt)
        end = start + n
        keep = []
        lo, hi = start, end
        merged = []
        for r in self.ranges:
            rs = _diff(r[0], rcv_nxt)
            re = rs + len(r[1])
            if re < start or rs > end:
                keep.append(r)
            else:
                merged.append((rs, r[1]))
                if rs < lo:
                    lo = rs
                if re > hi:
                    hi = re
        existing = sum(len(d) for _, d in merged)
        added = (hi - lo) - existing
        if added <= 0:
            return True            # entirely duplicate
        if self.nbytes + added > self.limit:
            return False
        budget = self.budget
        if budget is not None:
            if not budget.fits(added):
                return False
            budget.used += added
        if not merged and len(self.ranges) >= self.max_ranges:
            return False
        buf = bytearray(hi - lo)
        buf[start - lo:end - lo] = payload
        for rs, d in merged:
            buf[rs - lo:rs - lo + len(d)] = d
        keep.append([(rcv_nxt + lo) & MASK, buf])
        self.last_seq = seq
        keep.sort(key=lambda r: _diff(r[0], rcv_nxt))
        self.ranges = keep
        self.nbytes += added
        return True

    def pop_ready(self, rcv_nxt: int) -> list:
        """Remove ranges now reachable from ``rcv_nxt``; return their new bytes, in order."""
        out = []
        rs = self.ranges
        while rs:
            off = _diff(rs[0][0], rcv_nxt)
            if off > 0:
                break
            seq, d = rs.pop(0)
            self.nbytes -= len(d)
            if self.budget is not None:
                self.budget.used -= len(d)
            skip = -off
            if skip < len(d):
                chunk = memoryview(d)[skip:]
                out.append(chunk)
                rcv_nxt = (rcv_nxt + len(chunk)) & MASK
        return out

    def blocks(self, rcv_nxt: int, limit: int = 4) -> list[tuple[int, int]]:
        """(left, right) edges of held ranges for SACK options (RFC 2018 §3/§4).

        The block holding the most recently received segment comes first
        (RFC 2018 §4), then the others in sequence order."""
        out = [(r[0], (r[0] + len(r[1])) & MASK) for r in self.ranges]
        last = self.last_seq
        if last is not None:
            for i, (l, r) in enumerate(out):
                if ((last - l) & MASK) < ((r - l) & MASK):
                    if i:
                        out.insert(0, out.pop(i))
                    break
        return out[:limit]

    def clear(self) -> None:
        if self.budget is not None:
            self.budget.used -= self.nbytes
        self.ranges.clear()
        self.nbytes = 0
        self.last_seq = None
