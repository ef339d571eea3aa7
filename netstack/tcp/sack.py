"""The sender's SACK scoreboard (RFC 2018 §3, RFC 6675 §3/§4).

It remembers which byte ranges above SND.UNA the peer reported holding
(SACK blocks on its ACKs).  Loss recovery then retransmits only the holes
below the highest SACKed byte (RFC 6675 NextSeg rule 1) and estimates the
bytes still in the network ("pipe", RFC 6675 §4) as

    pipe = (SND.MAX - SND.UNA) - SACKed - (holes below HighSACK not yet retransmitted)

i.e. SACKed bytes have left the network and holes below the highest SACKed
byte are deemed lost (a simplification of IsLost() that treats every hole
below HighSACK as lost).  Sequence numbers are 32-bit and wrap.
"""
from __future__ import annotations

from .seq import MASK, seq_diff as _d


class SackScoreboard:
    __slots__ = ("blocks", "sacked_bytes")

    def __init__(self):
        self.blocks: list[list[int]] = []   # disjoint [left, right) in ascending order
        self.sacked_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def clear(self) -> None:
        self.blocks.clear()
        self.sacked_bytes = 0

    @property
    def high_sacked(self) -> int | None:
        """Right edge of the highest SACKed range (RFC 6675 HighSACK + 1)."""
        return self.blocks[-1][1] if self.blocks else None

    def update(self, sack_blocks, snd_una: int, snd_max: int) -> bool:
        """Merge the peer's SACK blocks; drop everything at or below SND.UNA.  True if new bytes were SACKed."""
        before = self.sacked_bytes
        self.trim(snd_una)
        blocks = self.blocks
        for left, right in sack_blocks:
            # RFC 2018 §3/§8 sanity: inside (SND.UNA, SND.MAX], non-empty
            if _d(right, left) <= 0 or _d(left, snd_una) < 0 or _d(right, snd_max) > 0:
                continue
            lo = _d(left, snd_una)
            hi = _d(right, snd_una)
            merged = []
            out = []
            for b in blocks:
                bl, br = _d(b[0], snd_una), _d(b[1], snd_una)
                if br < lo or bl > hi:
                    out.append((bl, b))
                else:
                    merged.append(b)
                    lo, hi = min(lo, bl), max(hi, br)
            out.append((lo, [(snd_una + lo) & MASK, (snd_una + hi) & MASK]))
            out.sort(key=lambda x: x[0])
            blocks[:] = [b for _, b in out]
        self.sacked_bytes = sum(_d(r, l) for l, r in blocks)
        return self.sacked_bytes > before

    def trim(self, snd_una: int) -> None:
        """The cumulative ACK moved: forget ranges it covers."""
        blocks = self.blocks
        while blocks and _d(blocks[0][1], snd_una) <= 0:
            self.sacked_bytes -= _d(blocks[0][1], blocks[0][0])
            blocks.pop(0)
        if blocks and _d(blocks[0][0], snd_una) < 0:
            self.sacked_bytes -= _d(snd_una, blocks[0][0])
            blocks[0][0] = snd_una

    def sacked_end(self, seq: int) -> int | None:
        """If ``seq`` lies inside a SACKed range, that range's right edge, else None."""
        for l, r in self.blocks:
            if _d(seq, l) >= 0 and _d(seq, r) < 0:
                return r
        return None

    def next_hole(self, start: int) -> tuple[int, int] | None:
        """The first un-SACKed range [a, b) at or after ``start`` and below HighSACK."""
        for l, r in self.blocks:
            if _d(r, start) <= 0:
                continue
            if _d(start, l) < 0:
                return start, l
            start = r
        return None

    def lost_bytes(self, start: int) -> int:
        """Bytes in holes between ``start`` and HighSACK (deemed lost, not yet retransmitted)."""
        total = 0
        pos = start
        while True:
            h = self.next_hole(pos)
            if h is None:
                return total
            total += _d(h[1], h[0])
            pos = h[1]
