"""Two TCPLayers back to back through a simulated channel, driven by a fake clock.

The channel can lose, duplicate, reorder (extra random delay) and delay
segments, seeded.  No sockets, no sleeps: time jumps to the next event (a
delivery or a TCP deadline).
"""
from __future__ import annotations

import hashlib
import heapq
import random

from netstack.counters import Counters
from netstack.tcp import TCPConfig, TCPLayer
from netstack.wire.ipv4 import ip2int

A_ADDR = ip2int("198.18.0.1")
B_ADDR = ip2int("198.18.0.2")


class Channel:
    def __init__(self, *, loss=0.0, dup=0.0, reorder=0.0, delay=0.005, jitter=0.010, seed=1, swap=False):
        """``swap=True`` reorders like netstack.link.faults.FaultyLink: a held packet is
        released just after the next packet in the same direction."""
        self.swap = swap
        self._held = {}
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay, self.jitter = delay, jitter
        self.rng = random.Random(seed)
        self.heap: list = []
        self._n = 0
        self.sent = self.lost = self.duplicated = self.reordered = 0
        self.lost_data = 0        # lost segments that carried payload

    def put(self, now, dst_layer, src, dst, data):
        self.sent += 1
        rng = self.rng
        if rng.random() < self.loss:
            self.lost += 1
            if len(data) > ((data[12] >> 4) << 2):
                self.lost_data += 1
            return
        copies = 2 if rng.random() < self.dup else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            t = now + self.delay
            if self.swap:
                item = (dst_layer, src, dst, bytes(data))
                held = self._held.pop(dst_layer, None)
                if held is None and rng.random() < self.reorder:
                    self.reordered += 1
                    self._held[dst_layer] = item
                    continue
                self._push(t, *item)
                if held is not None:
                    self._push(t, *held)
                continue
            if rng.random() < self.reorder:
                t += rng.random() * self.jitter
                self.reordered += 1
            self._push(t, dst_layer, src, dst, bytes(data))

    def _push(self, t, dst_layer, src, dst, data):
        self._n += 1
        heapq.heappush(self.heap, (t, self._n, dst_layer, src, dst, data))

    def release_held(self, now):
        """Held packets with no follower go out after a while (FaultyLink's reorder_timeout)."""
        for layer, item in list(self._held.items()):
            del self._held[layer]
            self._push(now + self.delay, *item)

    def next_time(self):
        return self.heap[0][0] if self.heap else None


class Sim:
    def __init__(self, *, config_a=None, config_b=None, **channel):
        self.now = 0.0
        self.ca, self.cb = Counters(), Counters()
        self.a = TCPLayer(A_ADDR, counters=self.ca, config=config_a or TCPConfig(), isn_secret=b"a" * 16)
        self.b = TCPLayer(B_ADDR, counters=self.cb, config=config_b or TCPConfig(), isn_secret=b"b" * 16)
        self.ch = Channel(**channel)

    def pump(self):
        for src_layer, dst_layer in ((self.a, self.b), (self.b, self.a)):
            ob = src_layer.outbox
            while ob:
                dst, data, *_df = ob.popleft()
                self.ch.put(self.now, dst_layer, src_layer.local_addr, dst, data)

    def step(self) -> bool:
        """Advance to the next event; False if nothing at all is pending."""
        self.pump()
        cands = [t for t in (self.ch.next_time(), self.a.next_deadline(), self.b.next_deadline())
                 if t is not None]
        if self.ch._held and (not cands or min(cands) > self.now + 0.05):
            self.ch.release_held(self.now + 0.05)
            cands.append(self.now + 0.05)
        if not cands:
            return False
        t = min(cands)
        if t > self.now:
            self.now = t
        heap = self.ch.heap
        while heap and heap[0][0] <= self.now:
            _, _, layer, src, dst, data = heapq.heappop(heap)
            layer.on_datagram(src, dst, memoryview(data), self.now)
        self.a.poll(self.now)
        self.b.poll(self.now)
        self.pump()
        return True

    def run(self, until, max_time=600.0, app=None, idle_tick=0.05):
        """Step until ``until()``; ``app()`` runs between steps.  When nothing is pending in
        the network, time still moves by ``idle_tick`` (the application may act later)."""
        while not until():
            if app is not None:
                app()
            if not self.step() and not until():
                if app is None:
                    raise AssertionError("simulation went idle before the condition held")
                self.now += idle_tick
            if self.now > max_time:
                raise AssertionError(f"simulation exceeded {max_time} s of fake time")


class Stream:
    """Deterministic pseudo-random payload and an incremental sha256 on each end."""

    def __init__(self, size: int, seed: int):
        self.data = random.Random(seed).randbytes(size)
        self.sent = 0
        self.received = 0
        self.rx_hash = hashlib.sha256()
        self.tx_hash = hashlib.sha256(self.data).hexdigest()

    def pump_send(self, conn) -> None:
        while self.sent < len(self.data):
            n = conn.send(memoryview(self.data)[self.sent:self.sent + 65536])
            if n == 0:
                break
            self.sent += n

    def pump_recv(self, conn) -> None:
        while conn.readable:
            chunk = conn.recv(1 << 20)
            self.rx_hash.update(chunk)
            self.received += len(chunk)
