"""Two sans-I/O TCPs back to back on a fake clock: the classroom testbed.

``Testbed`` holds two :class:`~netstack.tcp.layer.TCPLayer` hosts, A
(198.18.0.1, the client) and B (198.18.0.2, the server), joined by a wire
with a fixed one-way delay and a fixed rate (1 MB/s: a 1000-byte segment takes 1 ms
to put on the wire, so a burst is spread out in time).  Nothing reads a clock: time jumps to the next
delivery or TCP deadline, so every run is identical (fixed ISN secrets).

What the wire does to a segment is decided by rules (:meth:`Testbed.drop`):
drop the n-th data segment from A, drop every segment matching a predicate,
and so on.  Every segment is recorded as a raw-IPv4 pcap frame *as seen on
A's interface* (like tcpdump on the client): A's segments when they leave A
(a segment lost further down the wire is still in the capture), B's when they
arrive at A.  Segments dropped before they reach A are not in the capture.
A third party can put segments on the wire too (:meth:`Testbed.spoof`: an
attacker's SYNs from forged source addresses, sender ``"X"``).  They are
recorded as they pass A's interface, and so is what B answers to those
addresses: those answers go nowhere (no host holds a forged address) and
are marked ``to_nowhere``.
Each transition of both TCPs goes to the state log (:mod:`netstack.statelog`), and
so does each congestion or recovery event (``recovery_events``).
"""
from __future__ import annotations

import heapq
import io
from dataclasses import dataclass, field
from typing import Callable

from netstack.capture.pcap import PcapWriter
from netstack.counters import Counters
from netstack.statelog import change_record, recovery_record
from netstack.tcp import TCPConfig, TCPLayer
from netstack.wire.ipv4 import ip2int, ipv4_packet
from netstack.wire.tcp import parse_tcp, tcp_segment

__all__ = ["Testbed", "WireSegment", "A_ADDR", "B_ADDR", "EPOCH", "A_SECRET", "B_SECRET"]

A_ADDR = ip2int("198.18.0.1")
B_ADDR = ip2int("198.18.0.2")
#: the ISN (and SYN-cookie) secrets of A and B: fixed, so every run is identical
A_SECRET = b"A" * 16
B_SECRET = b"B" * 16
#: the capture's time zero (2024-01-01 00:00:00 UTC): pcap times are EPOCH + fake time
EPOCH = 1_704_067_200


@dataclass(slots=True)
class WireSegment:
    """One segment put on the wire: who sent it, when, its parsed header, and its fate."""
    number: int            #: 1-based, in sending order over both directions
    sender: str            #: "A" or "B" (or "X": a forged source, Testbed.spoof)
    time: float
    flags: int
    seq: int
    ack: int
    window: int
    length: int
    dropped: bool = False
    data: bytes = b""          #: the TCP segment as sent (header and payload)
    departure: float = 0.0     #: when its last bit left the sender (after the queue and serialisation)
    arrival: float | None = None   #: when it reached the other side (None: dropped, or to nowhere)
    to_nowhere: bool = False   #: B's answer to a forged address (Testbed.spoof): nobody receives it


@dataclass
class Testbed:
    __test__ = False     # not a pytest test class
    """A and B over a wire with one-way ``delay`` seconds and ``rate`` bytes per second in each
    direction (segments queue behind each other); see the module docstring."""
    config_a: TCPConfig = field(default_factory=TCPConfig)
    config_b: TCPConfig = field(default_factory=TCPConfig)
    delay: float = 0.010
    rate: float = 1_000_000.0

    def __post_init__(self) -> None:
        self.now = 0.0
        self.counters_a, self.counters_b = Counters(), Counters()
        self.a = TCPLayer(A_ADDR, counters=self.counters_a, config=self.config_a, isn_secret=A_SECRET)
        self.b = TCPLayer(B_ADDR, counters=self.counters_b, config=self.config_b, isn_secret=B_SECRET)
        self.a.on_transition = lambda conn, ch: self._transition("A", conn, ch)
        self.b.on_transition = lambda conn, ch: self._transition("B", conn, ch)
        self.a.on_recovery = lambda conn, ev: self._recovery("A", conn, ev)
        self.b.on_recovery = lambda conn, ev: self._recovery("B", conn, ev)
        self.segments: list[WireSegment] = []
        self.transitions: list[dict] = []     #: state-log records, each with "host": "A" or "B"
        self.recovery_events: list[dict] = []  #: state-log recovery records, each with "host"
        self._rules: list[Callable[[WireSegment], bool]] = []
        self._heap: list = []
        self._n = 0
        self._frames: list[tuple[float, int, bytes]] = []
        self._ip_id = {"A": 0, "B": 0, "X": 0}
        self._busy = {"A": 0.0, "B": 0.0}

    # ------------------------------------------------------------------ the wire

    def drop(self, rule: Callable[[WireSegment], bool]) -> None:
        """Drop every segment for which ``rule(segment)`` is true (a rule may count and stop)."""
        self._rules.append(rule)

    def drop_nth_data(self, sender: str, n: int, *, times: int = 1) -> None:
        """Drop the ``n``-th data-carrying segment ``sender`` sends (1-based); with ``times`` > 1
        also drop that many of its retransmissions (the same sequence number)."""
        state = {"count": 0, "seq": None, "left": times}

        def rule(seg: WireSegment) -> bool:
            if seg.sender != sender or seg.length == 0:
                return False
            if state["seq"] is None:
                state["count"] += 1
                if state["count"] == n:
                    state["seq"] = seg.seq
                    state["left"] -= 1
                    return True
                return False
            if seg.seq == state["seq"] and state["left"] > 0:
                state["left"] -= 1
                return True
            return False
        self.drop(rule)

    def _transition(self, host: str, conn, change) -> None:
        rec = change_record((conn.local_addr, conn.local_port), (conn.remote_addr, conn.remote_port), change)
        rec["time"] = round(EPOCH + change.time, 6)
        rec["host"] = host
        self.transitions.append(rec)

    def _recovery(self, host: str, conn, event) -> None:
        rec = recovery_record((conn.local_addr, conn.local_port), (conn.remote_addr, conn.remote_port), event)
        rec["time"] = round(EPOCH + event.time, 6)
        rec["host"] = host
        self.recovery_events.append(rec)

    def _record(self, sender: str, src: int, dst: int, data: bytes, t: float) -> None:
        self._ip_id[sender] = (self._ip_id[sender] + 1) & 0xFFFF
        pkt = ipv4_packet(src=src, dst=dst, protocol=6, payload=data, ident=self._ip_id[sender], df=True)
        self._frames.append((t, len(self._frames), pkt))

    def _pump(self) -> None:
        for name, layer, peer in (("A", self.a, self.b), ("B", self.b, self.a)):
            ob = layer.outbox
            while ob:
                dst, data, *_ = ob.popleft()
                data = bytes(data)
                seg = parse_tcp(data, verify=False)
                hlen = seg.data_offset << 2
                ws = WireSegment(len(self.segments) + 1, name, self.now, seg.flags, seg.seq, seg.ack,
                                 seg.window, len(data) - hlen, data=data)
                self.segments.append(ws)
                ws.dropped = any(rule(ws) for rule in self._rules)
                ws.departure = max(self.now, self._busy[name]) + (len(data) + 20) / self.rate
                self._busy[name] = ws.departure
                if name == "A":
                    self._record("A", layer.local_addr, dst, data, ws.departure)
                elif dst != peer.local_addr:
                    # to a forged address: it passes A's interface and reaches no one
                    ws.to_nowhere = True
                    if not ws.dropped:
                        self._record("B", layer.local_addr, dst, data, ws.departure + self.delay)
                    continue
                if not ws.dropped:
                    ws.arrival = ws.departure + self.delay
                    self._n += 1
                    heapq.heappush(self._heap, (ws.arrival, self._n, name, peer, layer.local_addr, dst, data))

    def spoof(self, src: int, src_port: int, dst_port: int, seq: int, flags: int, *, options: bytes = b"",
              window: int = 64240) -> WireSegment:
        """Put a segment from a forged source address ``src`` on the wire to B, now (sender "X").
        It is recorded as it passes A's interface and reaches B after the wire's delay."""
        data = bytes(tcp_segment(src=src, dst=self.b.local_addr, src_port=src_port, dst_port=dst_port, seq=seq,
                                 ack=0, flags=flags, window=window, options=options, payload=b""))
        ws = WireSegment(len(self.segments) + 1, "X", self.now, flags, seq, 0, window, 0, data=data,
                         departure=self.now, arrival=self.now + self.delay)
        self.segments.append(ws)
        self._record("X", src, self.b.local_addr, data, self.now)
        self._n += 1
        heapq.heappush(self._heap, (ws.arrival, self._n, "X", self.b, src, self.b.local_addr, data))
        return ws

    def replay(self, seg: WireSegment) -> None:
        """Put a copy of an earlier segment on the wire again, now: an old duplicate that the
        network delayed (RFC 7323 §5).  It is recorded like any other segment."""
        layer = self.a if seg.sender == "A" else self.b
        dst = self.b.local_addr if seg.sender == "A" else self.a.local_addr
        layer.outbox.append((dst, seg.data, True))
        self._pump()

    # ------------------------------------------------------------------ the clock

    def next_time(self) -> float | None:
        cands = [t for t in (self._heap[0][0] if self._heap else None, self.a.next_deadline(),
                             self.b.next_deadline()) if t is not None]
        return min(cands) if cands else None

    def step(self) -> bool:
        """Advance to the next event (delivery or deadline); False when nothing is pending."""
        self._pump()
        t = self.next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        heap = self._heap
        while heap and heap[0][0] <= self.now:
            _, _, sender, layer, src, dst, data = heapq.heappop(heap)
            if sender == "B":
                self._record("B", src, dst, data, self.now)
            layer.on_datagram(src, dst, memoryview(data), self.now)
        self.a.poll(self.now)
        self.b.poll(self.now)
        self._pump()
        return True

    def run_until(self, cond: Callable[[], bool], *, max_time: float = 600.0) -> None:
        """Step until ``cond()`` holds; AssertionError if the wire goes idle or time runs out first."""
        while not cond():
            if not self.step():
                raise AssertionError("the testbed went idle before the condition held")
            if self.now > max_time:
                raise AssertionError(f"the testbed ran past {max_time} s of fake time")

    def run_for(self, seconds: float) -> None:
        """Let ``seconds`` of fake time pass, processing every event in between."""
        end = self.now + seconds
        while True:
            self._pump()
            t = self.next_time()
            if t is None or t > end:
                break
            self.step()
        self.now = max(self.now, end)
        self.a.poll(self.now)
        self.b.poll(self.now)
        self._pump()

    def run_idle(self, *, max_time: float = 600.0) -> None:
        """Run until nothing is pending at all (every timer stopped, the wire empty)."""
        while self.step():
            if self.now > max_time:
                raise AssertionError(f"the testbed ran past {max_time} s of fake time")

    # ------------------------------------------------------------------ results

    def pcap_bytes(self) -> bytes:
        """The capture so far, as a pcap file (raw IPv4), in time order."""
        buf = io.BytesIO()
        w = PcapWriter(buf)
        for t, _, pkt in sorted(self._frames):
            w.write(pkt, EPOCH + t)
        w.flush()
        return buf.getvalue()

    def sent(self, sender: str, *, data: bool | None = None) -> list[WireSegment]:
        """Segments ``sender`` put on the wire (``data=True``: only those with payload)."""
        return [s for s in self.segments if s.sender == sender
                and (data is None or (s.length > 0) == data)]
