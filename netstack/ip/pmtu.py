"""Path MTU per destination: the floor and the decrease rate limit (RFC 1191, RFC 8201).

A transport that has checked an ICMP "fragmentation needed" (RFC 792 type 3
code 4; RFC 1191 §4: its next-hop MTU) against its own state, TCP quoting a
segment in flight (RFC 5927 §4.1), asks :meth:`PathMtuTable.report` what to
believe:

* **The floor** (``min_pmtu``, 552 by default as Linux's
  ``net.ipv4.route.min_pmtu``): a next-hop MTU below it, 0 included (RFC 1191
  §5, routers that predate it), becomes the floor, never less.  A forged
  "MTU 68" then costs a connection at most the step from 1500 to 552 bytes,
  not a 16-byte MSS.  A destination whose path really is narrower than the
  floor would drop our DF datagrams forever, so for such a destination DF is
  cleared (as Linux does for a locked route MTU) and routers may fragment:
  :meth:`df_allowed`.
* **Decreases are rate-limited per destination** (RFC 8201 §4/§6, RFC 5927 §7:
  reductions from forged or stale messages): a report below the destination's
  current path MTU is believed at most once per ``decrease_interval``
  seconds; the others are ignored and counted.  A report not below it passes
  (another connection to that destination may not have lowered yet).
* Entries age out after ``expiry`` seconds (RFC 1191 §6.3: 10 minutes) and the
  table holds at most ``max_entries`` destinations (oldest dropped first).

Counters: ``ip.pmtu.decreases``, ``ip.pmtu.floored`` (a report below the floor),
``ip.pmtu.ignored.rate_limited``, ``ip.out.df_cleared``.
Sans-I/O: the caller passes ``now``.
"""
from __future__ import annotations

from netstack.counters import Counters

__all__ = ["PathMtuTable", "DEFAULT_MIN_PMTU"]

#: Linux's net.ipv4.route.min_pmtu
DEFAULT_MIN_PMTU = 552


class PathMtuTable:
    """Per-destination path MTU with a floor and a decrease rate limit (see module doc);
    implements :class:`netstack.transport.PathMtu`."""

    def __init__(self, counters: Counters, *, link_mtu: int = 1500, min_pmtu: int = DEFAULT_MIN_PMTU,
                 decrease_interval: float = 1.0, expiry: float = 600.0, max_entries: int = 4096) -> None:
        if not 68 <= min_pmtu <= 65535:
            raise ValueError(f"minimum path MTU {min_pmtu} out of range 68..65535 (RFC 791 §3.2)")
        if decrease_interval < 0 or expiry <= 0 or max_entries < 1:
            raise ValueError("decrease_interval must be >= 0, expiry and max_entries positive")
        self.counters = counters
        self.link_mtu = link_mtu
        self.min_pmtu = min_pmtu
        self.decrease_interval = decrease_interval
        self.expiry = expiry
        self.max_entries = max_entries
        #: destination -> [path MTU, time of the last believed decrease]
        self._paths: dict[int, list] = {}
        #: destinations whose path is narrower than the floor: sent without DF (read-only to others)
        self.no_df: set[int] = set()

    def report(self, dst: int, mtu: int, now: float) -> int | None:
        """A validated "fragmentation needed" for ``dst`` with next-hop MTU ``mtu``: the path MTU
        to use from now on (at least the floor), or None when the decrease is rate-limited."""
        c = self.counters
        if mtu < self.min_pmtu:
            c.inc("ip.pmtu.floored")
            below_floor = True
            mtu = self.min_pmtu
        else:
            below_floor = False
        entry = self.lookup(dst, now)
        current = entry[0] if entry is not None else self.link_mtu
        if mtu < current:
            if entry is not None and now - entry[1] < self.decrease_interval:
                c.inc("ip.pmtu.ignored.rate_limited")
                return None
            c.inc("ip.pmtu.decreases")
            self._paths.pop(dst, None)
            self._paths[dst] = [mtu, now]
            if len(self._paths) > self.max_entries:
                oldest = next(iter(self._paths))
                del self._paths[oldest]
                self.no_df.discard(oldest)
        else:
            mtu = current                # no news: what this destination is already known to take
        if below_floor:
            self.no_df.add(dst)
        return mtu

    def lookup(self, dst: int, now: float) -> list | None:
        """``[path MTU, last decrease]`` for ``dst``, or None (unknown or aged out)."""
        entry = self._paths.get(dst)
        if entry is not None and now - entry[1] >= self.expiry:
            del self._paths[dst]
            self.no_df.discard(dst)
            return None
        return entry

    def path_mtu(self, dst: int, now: float) -> int:
        """What we believe of the path to ``dst``: the link MTU unless told less."""
        entry = self.lookup(dst, now)
        return entry[0] if entry is not None else self.link_mtu

    def df_allowed(self, dst: int) -> bool:
        """False for a destination whose path reported an MTU below the floor (see module doc)."""
        return dst not in self.no_df

    def __len__(self) -> int:
        return len(self._paths)
