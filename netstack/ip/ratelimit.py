"""A token bucket for ICMP error messages (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f) style).

RFC 1122 §3.2.2 lets a host limit the rate of ICMP error messages; a token
bucket allows short bursts (``burst`` tokens) and a sustained ``rate`` per
second.  Sans-I/O: the caller passes ``now``.
"""
from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = None if now is None else now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if available at ``now``; False means "rate limited"."""
        if self.stamp is None:
            self.stamp = now
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False
