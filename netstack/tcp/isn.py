"""Initial sequence numbers, RFC 6528 §3.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey)

M is a 4-microsecond timer derived from the ``now`` the caller passes in (no
clock is read here) and F is a keyed hash (BLAKE2s with a random 128-bit
secret chosen when the generator is created).  Two connections with the same
4-tuple get ISNs that advance with time; different 4-tuples get unrelated
offsets, so an off-path attacker cannot predict them.
"""
from __future__ import annotations

import hashlib
import os
import struct

from .seq import seq_add

_PACK = struct.Struct("!IHIH").pack


class ISNGenerator:
    """RFC 6528 ISN generator.  ``secret`` may be fixed for reproducible tests."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes | None = None):
        if secret is None:
            secret = os.urandom(16)
        self._secret = bytes(secret)[:32]

    def offset(self, local_addr: int, local_port: int, remote_addr: int, remote_port: int) -> int:
        """F(): the keyed hash of the 4-tuple, 32 bits."""
        h = hashlib.blake2s(_PACK(local_addr, local_port, remote_addr, remote_port),
                            key=self._secret, digest_size=4)
        return int.from_bytes(h.digest(), "big")

    def isn(self, local_addr: int, local_port: int, remote_addr: int, remote_port: int,
            now: float) -> int:
        """M + F(): the ISN for this 4-tuple at time ``now`` (seconds)."""
        m = int(now * 250_000)  # one tick every 4 microseconds
        return seq_add(m, self.offset(local_addr, local_port, remote_addr, remote_port))
