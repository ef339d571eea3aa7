"""SYN cookies (RFC 4987 §3.6): a listener under a SYN flood answers without keeping state.

When the SYN queue is full (``SynCookieMode.AUTO``, the default) or always
(``ALWAYS``), the SYN-ACK's initial sequence number is a *cookie*: a keyed
hash of the 4-tuple and a coarse clock, plus the peer's ISN, plus an index
into a small MSS table.  No connection is created.  A legitimate peer's ACK
returns the cookie as SEG.ACK - 1; if it checks out, the connection is
created in ESTABLISHED with the options the cookie carries.  As in Linux::

    cookie = H(secret, 4-tuple, 0) + SEG.SEQ(SYN) + (count << 24)
             + ((H(secret, 4-tuple, count) + mss_index) mod 2^24)

``count`` is the clock in 64-second ticks: a cookie is valid for at most
``MAX_AGE`` ticks (two to three minutes), and the keyed hash of each tick
rotates the cookie's value.  The secret is the stack's (the one behind its
ISNs, RFC 6528), under a different personalisation.

With timestamps, the SYN-ACK's TSval carries what else was offered in its
low six bits (Linux's ``cookie_init_timestamp``): the peer's window-scale
shift (0xF: none) and SACK-permitted.  The ACK's TSecr brings them back.
Without timestamps, a cookie connection has neither window scaling nor SACK.

Everything here is arithmetic on values: no state, no clock, no I/O.
"""
from __future__ import annotations

import enum
import hashlib
import struct
from typing import NamedTuple, Protocol

from .seq import MASK

#: Linux's IPv4 MSS table (net/ipv4/syncookies.c msstab): a cookie carries an index into it.
MSS_TABLE = (536, 1300, 1440, 1460)
#: Seconds per tick of the cookie clock.
TICK = 64.0
#: A cookie older than this many ticks is refused.
MAX_AGE = 2
COOKIE_BITS = 24
COOKIE_MASK = (1 << COOKIE_BITS) - 1
#: The low TSval bits that carry the options (Linux TSBITS / TSMASK).
TS_BITS = 6
TS_MASK = (1 << TS_BITS) - 1
_WSCALE_NONE = 0xF
_SACK_BIT = 0x10

_PACK = struct.Struct("!IIHHI").pack


class SynCookieMode(enum.Enum):
    """When a listener answers with SYN cookies."""
    AUTO = "auto"        #: once its SYN queue is full (Linux tcp_syncookies=1)
    ALWAYS = "always"    #: for every SYN (tcp_syncookies=2)
    NEVER = "never"      #: never: a full SYN queue drops SYNs


class CookieClock(Protocol):
    """When a SYN cookie last went out, kept where several TCP layers see it (the
    workers of a multi-queue server): a layer checks a returning ACK only if
    cookies went out lately, from any of them."""

    def mark(self, now: float) -> None:
        """A cookie went out at ``now``."""

    def last(self) -> float | None:
        """The latest instant marked, or None."""


class CookieOptions(NamedTuple):
    """The peer's SYN options as a cookie restores them (the shape of TCPOptions that
    :meth:`netstack.tcp.negotiation.Negotiation.apply_peer_syn` reads)."""
    mss: int
    wscale: int | None
    sack_permitted: bool
    ts_val: int | None


class SynCookies:
    """Make and check cookies with one secret."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.blake2s(bytes(secret), person=b"syncook").digest()

    def _hash(self, saddr: int, daddr: int, sport: int, dport: int, count: int) -> int:
        h = hashlib.blake2s(_PACK(saddr, daddr, sport, dport, count & MASK), key=self._key, digest_size=4)
        return int.from_bytes(h.digest(), "big")

    @staticmethod
    def mss_index(peer_mss: int) -> int:
        """The largest table MSS not above what the peer announced (index 0 always fits)."""
        best = 0
        for i, m in enumerate(MSS_TABLE):
            if m <= peer_mss:
                best = i
        return best

    @staticmethod
    def count(now: float) -> int:
        return int(now // TICK)

    def make(self, saddr: int, daddr: int, sport: int, dport: int, syn_seq: int, peer_mss: int,
             now: float) -> int:
        """The cookie ISN for a SYN from (saddr, sport) to (daddr, dport) with SEG.SEQ ``syn_seq``."""
        count = self.count(now)
        data = self.mss_index(peer_mss)
        return (self._hash(saddr, daddr, sport, dport, 0) + syn_seq + ((count << COOKIE_BITS) & MASK)
                + ((self._hash(saddr, daddr, sport, dport, count) + data) & COOKIE_MASK)) & MASK

    def check(self, saddr: int, daddr: int, sport: int, dport: int, ack_seq: int, ack: int,
              now: float) -> int | None:
        """The MSS a returning ACK's cookie carries (SEG.SEQ ``ack_seq``, SEG.ACK ``ack``), or
        None if it is forged, for another 4-tuple, or expired."""
        cookie = (ack - 1) & MASK
        syn_seq = (ack_seq - 1) & MASK
        count = self.count(now)
        rest = (cookie - self._hash(saddr, daddr, sport, dport, 0) - syn_seq) & MASK
        age = (count - (rest >> COOKIE_BITS)) & (MASK >> COOKIE_BITS)
        if age >= MAX_AGE:
            return None
        data = (rest - self._hash(saddr, daddr, sport, dport, count - age)) & COOKIE_MASK
        if data >= len(MSS_TABLE):
            return None
        return MSS_TABLE[data]


def encode_ts(tsval: int, peer_wscale: int | None, sack_ok: bool) -> int:
    """Our SYN-ACK TSval with the options in its low bits; never ahead of ``tsval``."""
    opts = (_WSCALE_NONE if peer_wscale is None else min(peer_wscale, 14)) | (_SACK_BIT if sack_ok else 0)
    ts = (tsval & ~TS_MASK & MASK) | opts
    if ((ts - tsval) & MASK) != 0 and ((ts - tsval) & MASK) < 0x80000000:
        ts = (ts - (TS_MASK + 1)) & MASK
    return ts


def decode_ts(tsecr: int) -> tuple[int | None, bool]:
    """(the peer's window-scale shift or None, SACK-permitted) from the echoed TSval."""
    w = tsecr & 0xF
    return (None if w == _WSCALE_NONE else w), bool(tsecr & _SACK_BIT)
