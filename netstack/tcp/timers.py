"""Per-connection timers (RFC 9293 §3.8, RFC 6298, RFC 1122 §4.2.2.17).

Nothing here sleeps: every timer is just a deadline (a float in the caller's
clock, or None when stopped).  The connection asks ``next_deadline()`` and
the stack calls ``poll(now)`` when it arrives.

  retransmit  RFC 6298 retransmission timer (data, SYN, FIN)
  tlp         tail loss probe, RFC 8985 §7 (fires before the RTO at ~2*SRTT)
  delack      delayed ACK (<= 200 ms, RFC 9293 §3.8.6.3)
  persist     zero-window probes (RFC 9293 §3.8.6.1)
  keepalive   RFC 9293 §3.8.4 (off by default: never armed yet)
  timewait    2*MSL in TIME-WAIT (§3.4.2); also the orphan FIN-WAIT-2 limit
"""
from __future__ import annotations

NAMES = ("retransmit", "tlp", "delack", "persist", "keepalive", "timewait")


class TimerSet:
    __slots__ = NAMES

    def __init__(self):
        self.retransmit: float | None = None
        self.tlp: float | None = None
        self.delack: float | None = None
        self.persist: float | None = None
        self.keepalive: float | None = None
        self.timewait: float | None = None

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None."""
        best = None
        for d in (self.retransmit, self.tlp, self.delack, self.persist, self.keepalive, self.timewait):
            if d is not None and (best is None or d < best):
                best = d
        return best

    def due(self, now: float) -> list[str]:
        """Names of the timers whose deadline is <= now (they stay armed)."""
        return [n for n in NAMES if (d := getattr(self, n)) is not None and d <= now]

    def stop_all(self) -> None:
        self.retransmit = self.tlp = self.delack = self.persist = self.keepalive = self.timewait = None

    def as_dict(self) -> dict:
        return {n: getattr(self, n) for n in NAMES}
