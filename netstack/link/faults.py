"""A fault-injecting link wrapper: loss, duplication, reordering, bit corruption, delay.

This machine's kernel has no netem qdisc, so impairment is done here, between
the TUN (or any link) and the stack, in both directions by default::

    link = FaultyLink(TunLink(...), loss=0.05, reorder=0.25, delay=0.005, seed=1)

Each packet meets four independent seeded draws, in this fixed order so a
seed replays exactly: loss, duplicate, corrupt (one random bit flipped per
copy), reorder.  A reordered packet is held back and released just after the
next packet that passes in the same direction (or after ``reorder_timeout``
if no packet follows).  ``delay`` holds every packet for that many seconds
(order kept).  ``stats`` counts what happened, per direction
(``tx.lost``, ``rx.reordered``, ...).

Timed release uses the asyncio loop the link is attached to; without a loop,
call :meth:`FaultyLink.flush` (tests drive time with a fake ``clock``).
"""
from __future__ import annotations

import heapq
import random
import re
import time
from collections import defaultdict, deque

from netstack.link.base import Link, PacketMeta

__all__ = ["FaultyLink", "parse_fault_spec", "FaultSpecError"]

_RATE_KEYS = ("loss", "duplicate", "reorder", "corrupt")
_ALIASES = {"drop": "loss", "dup": "duplicate", "duplication": "duplicate", "corruption": "corrupt",
            "reordering": "reorder", "dir": "directions", "direction": "directions"}


class FaultSpecError(ValueError):
    """A malformed ``--faults`` specification (one line naming the bad item)."""


def _parse_rate(key: str, text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise FaultSpecError(f"{key}={text}: not a rate (use e.g. 5% or 0.05)") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"{key}={text}: rate must be between 0% and 100%")
    return value


def _parse_duration(key: str, text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*", text)
    if not m:
        raise FaultSpecError(f"{key}={text}: not a duration (use e.g. 5ms, 0.2s, 300us)")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_fault_spec(spec: str) -> dict:
    """Parse ``"loss=5%,reorder=25%,delay=5ms,seed=1"`` into FaultyLink keyword arguments.

    Keys: loss, duplicate, reorder, corrupt (rates: ``5%`` or ``0.05``), delay
    and reorder_timeout (durations: ``us``/``ms``/``s``, bare numbers are
    seconds), seed (integer), directions (``both``, ``tx`` or ``rx``).
    """
    out: dict = {}
    if not spec or not spec.strip():
        return out
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = _ALIASES.get(key.strip().lower(), key.strip().lower())
        if not sep:
            raise FaultSpecError(f"{item!r}: expected key=value")
        if key in _RATE_KEYS:
            out[key] = _parse_rate(key, value)
        elif key in ("delay", "reorder_timeout"):
            out[key] = _parse_duration(key, value)
        elif key == "seed":
            try:
                out["seed"] = int(value)
            except ValueError:
                raise FaultSpecError(f"seed={value}: not an integer") from None
        elif key == "directions":
            v = value.strip().lower()
            if v not in ("both", "tx", "rx"):
                raise FaultSpecError(f"directions={value}: use both, tx or rx")
            out["directions"] = v
        else:
            raise FaultSpecError(f"{key}: unknown fault (known: loss, duplicate, reorder, corrupt, delay, "
                                 f"reorder_timeout, seed, directions)")
    return out


class FaultyLink(Link):
    """Wraps another :class:`Link` and impairs its traffic (see module doc)."""

    def __init__(self, inner: Link, *, loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                 corrupt: float = 0.0, delay: float = 0.0, seed: int | None = None, directions: str = "both",
                 reorder_timeout: float = 0.01, clock=time.monotonic) -> None:
        for key, v in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {v}")
        if delay < 0 or reorder_timeout < 0:
            raise ValueError("delay and reorder_timeout must be >= 0")
        if directions not in ("both", "tx", "rx"):
            raise ValueError("directions must be both, tx or rx")
        self.inner = inner
        self.mtu = inner.mtu
        self.offload = inner.offload
        self.name = f"faulty({inner.name})"
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.delay = delay
        self.reorder_timeout = reorder_timeout
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = clock
        self.impair_tx = directions in ("both", "tx")
        self.impair_rx = directions in ("both", "rx")
        self.stats: defaultdict[str, int] = defaultdict(int)
        self._seq = 0
        self._wait: list = []                       # heap of (due, seq, direction, data, meta)
        self._held = {"tx": [], "rx": []}           # reorder-held: [(deadline, data, meta)]
        self._rx_ready: deque = deque()             # released, waiting for recv_batch
        self._loop = None
        self._on_readable = None
        self._timer = None
        self._timer_at = None

    # -- the fate of one packet ------------------------------------------------------------
    def _impair(self, direction: str, data, meta, now: float) -> None:
        rng = self.rng
        st = self.stats
        st[direction + ".packets"] += 1
        r_loss, r_dup, r_corrupt, r_reorder = rng.random(), rng.random(), rng.random(), rng.random()
        if r_loss < self.loss:
            st[direction + ".lost"] += 1
            return
        copies = 1
        if r_dup < self.duplicate:
            copies = 2
            st[direction + ".duplicated"] += 1
        if r_corrupt < self.corrupt and len(data):
            buf = bytearray(data)
            bit = rng.randrange(len(buf) * 8)
            buf[bit >> 3] ^= 1 << (bit & 7)
            data = bytes(buf)
            # a checksum the link vouched for no longer holds: the receiver must verify it
            # (a partial checksum then fails, as corruption on a wire would)
            meta = None
            st[direction + ".corrupted"] += 1
        else:
            data = bytes(data)
        if r_reorder < self.reorder:
            st[direction + ".reordered"] += 1
            held = self._held[direction]
            for _ in range(copies):
                held.append((now + self.delay + self.reorder_timeout, data, meta))
            return
        due = now + self.delay
        if self.delay:
            st[direction + ".delayed"] += copies
        for _ in range(copies):
            self._push(due, direction, data, meta)
        # held-back packets go right after this one: that is the reordering
        held = self._held[direction]
        if held:
            for _, hdata, hmeta in held:
                self._push(due, direction, hdata, hmeta)
            held.clear()

    def _push(self, due, direction, data, meta) -> None:
        self._seq += 1
        heapq.heappush(self._wait, (due, self._seq, direction, data, meta))

    def flush(self, now: float | None = None) -> None:
        """Release every packet whose time has come (tx to the inner link, rx to the reader)."""
        if now is None:
            now = self.clock()
        for direction, held in self._held.items():
            if held and held[0][0] <= now:
                keep = []
                for item in held:
                    if item[0] <= now:
                        self._push(item[0], direction, item[1], item[2])
                    else:
                        keep.append(item)
                held[:] = keep
        wait = self._wait
        while wait and wait[0][0] <= now:
            _, _, direction, data, meta = heapq.heappop(wait)
            if direction == "tx":
                self.inner.send(data, meta)
            else:
                self._rx_ready.append((data, meta))
        self._schedule()

    def next_deadline(self) -> float | None:
        times = [self._wait[0][0]] if self._wait else []
        for held in self._held.values():
            times.extend(item[0] for item in held[:1])
        return min(times) if times else None

    def pending(self) -> int:
        """Packets held (delayed, reordered, or released but not yet read)."""
        return len(self._wait) + sum(len(h) for h in self._held.values()) + len(self._rx_ready)

    # -- asyncio timers ------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._loop is None:
            return
        deadline = self.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.flush()
        if self._rx_ready and self._on_readable is not None:
            self._on_readable()

    # -- Link interface ------------------------------------------------------------------------
    def send(self, data, meta: PacketMeta | None = None) -> None:
        if not self.impair_tx:
            self.inner.send(data, meta)
            return
        now = self.clock()
        self._impair("tx", data, meta, now)
        self.flush(now)

    def recv_batch(self, max_packets: int = 64):
        if not self.impair_rx:
            return self.inner.recv_batch(max_packets)
        now = self.clock()
        for view, meta in self.inner.recv_batch(max_packets):
            self._impair("rx", view, meta, now)
        self.flush(now)
        ready = self._rx_ready
        out = []
        while ready and len(out) < max_packets:
            data, meta = ready.popleft()
            out.append((memoryview(data), meta))
        if ready and self._loop is not None and self._on_readable is not None:
            self._loop.call_soon(self._rearm)
        return out

    def _rearm(self) -> None:
        if self._rx_ready and self._on_readable is not None:
            self._on_readable()

    def attach(self, loop, on_readable) -> None:
        self._loop = loop
        self._on_readable = on_readable
        self.inner.attach(loop, on_readable)
        self._schedule()

    def detach(self) -> None:
        self.inner.detach()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._loop = None
        self._on_readable = None

    def fileno(self):
        return self.inner.fileno()

    def close(self) -> None:
        self.detach()
        self.inner.close()
        self._wait.clear()
        self._rx_ready.clear()
        for h in self._held.values():
            h.clear()
