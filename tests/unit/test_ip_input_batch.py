"""IPLayer.input_batch: a batch is taken exactly as its datagrams one by one would be, whatever the
mix (RFC 1122 §3.2.1): transports that take runs (on_datagrams) get each maximal run of consecutive
datagrams for them with the same checksum trust in one call, the others one call per datagram, and
drops are counted by reason, in order.  The fast path's shortcut for a run that goes on (the
transport not looked up again) must not merge what one by one would keep apart."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from netstack.counters import Counters
from netstack.ip.layer import IPLayer
from netstack.link.base import PacketMeta
from netstack.wire.ipv4 import ip2int, ipv4_packet

US = ip2int("198.18.0.2")
PEER = ip2int("198.18.0.1")
OTHER = ip2int("198.18.0.9")


class RunTransport:
    """Takes runs; records (name, src, payload, trusted) per datagram and the length of each run."""

    def __init__(self, name: str, log: list, runs: list) -> None:
        self.name, self.log, self.runs = name, log, runs

    def on_datagrams(self, items, now, trusted=False):
        self.runs.append((self.name, len(items), trusted))
        for src, _dst, payload in items:
            self.log.append((self.name, src, bytes(payload), trusted))

    def on_datagram(self, src, dst, payload, now, trusted=False):
        self.log.append((self.name, src, bytes(payload), trusted))

    def on_datagram_trusted(self, src, dst, payload, now):
        self.on_datagram(src, dst, payload, now, True)

    def on_icmp_error(self, *a):
        pass


class OneTransport(RunTransport):
    """Takes one datagram per call (no on_datagrams, no trusted entry)."""

    on_datagrams = None
    on_datagram_trusted = None


def _layer():
    log: list = []
    runs: list = []
    ip = IPLayer(US, counters=Counters())
    ip.register(6, RunTransport("tcp", log, runs))
    ip.register(253, RunTransport("exp", log, runs))
    ip.register(254, OneTransport("one", log, runs))
    return ip, log, runs


KINDS = ["tcp", "tcp", "tcp", "exp", "one", "bad_checksum", "not_for_us", "fragment", "unknown", "short"]


def _datagram(kind: str, i: int) -> bytes:
    proto = {"exp": 253, "one": 254, "unknown": 200}.get(kind, 6)
    payload = bytes([i & 0xFF]) * (i % 7 + 1)
    pkt = bytearray(ipv4_packet(src=PEER, dst=OTHER if kind == "not_for_us" else US, protocol=proto,
                                payload=payload, ident=i, mf=kind == "fragment"))
    if kind == "bad_checksum":
        pkt[10] ^= 0x55
    if kind == "short":
        del pkt[12:]
    return bytes(pkt)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from([None, "valid"])), min_size=1, max_size=40))
def test_a_batch_is_taken_as_its_datagrams_one_by_one(script):
    packets = [(_datagram(kind, i), PacketMeta(data_valid=True) if trust else None)
               for i, (kind, trust) in enumerate(script)]
    batched, blog, bruns = _layer()
    batched.input_batch([(memoryview(p), m) for p, m in packets], 1.0)
    single, slog, _ = _layer()
    for p, m in packets:
        single.input_batch([(memoryview(p), m)], 1.0)
    assert blog == slog
    assert batched.counters.snapshot() == single.counters.snapshot()
    # the runs are the maximal ones: consecutive datagrams for one run-taking transport with the same
    # trust (a datagram dropped in between, or one for the per-datagram transport, ends a run)
    assert [tuple(r) for r in bruns] == _runs_split_by_drops(packets, script, blog)


def _runs_split_by_drops(packets, script, log):
    """The runs input_batch must make: any datagram that is not delivered to a run ends the run."""
    runs = []
    current = None
    delivered = iter(log)
    for kind, trust in script:
        if kind in ("tcp", "exp"):
            name, _src, _payload, trusted = next(delivered)
            if current is not None and current[0] == name and current[2] == trusted:
                current[1] += 1
            else:
                if current is not None:
                    runs.append(tuple(current))
                current = [name, 1, trusted]
            continue
        if kind == "one":
            next(delivered)
        if current is not None:
            runs.append(tuple(current))
            current = None
    if current is not None:
        runs.append(tuple(current))
    return runs


def test_a_transport_registered_again_between_runs_gets_the_datagrams_after_it():
    ip, log, runs = _layer()
    pkts = [(memoryview(_datagram("tcp", i)), None) for i in range(3)]
    ip.input_batch(pkts, 1.0)
    other: list = []
    ip.register(6, RunTransport("tcp2", other, []))
    ip.input_batch(pkts, 2.0)
    assert len(log) == 3 and len(other) == 3 and runs == [("tcp", 3, False)]
    assert ip.counters.get("ip.in.delivered") == 6 == ip.counters.get("ip.in.packets")


def test_a_transport_registered_again_within_a_batch_gets_the_datagrams_after_it():
    """A per-datagram transport's handler replaces TCP's transport in the middle of a batch: the TCP
    datagrams after it go to the new one (the run shortcut does not keep the old one)."""
    ip, log, runs = _layer()
    newer: list = []

    class Swapper(OneTransport):
        def on_datagram(self, src, dst, payload, now, trusted=False):
            super().on_datagram(src, dst, payload, now, trusted)
            ip.register(6, RunTransport("tcp2", newer, runs))

    ip.register(254, Swapper("one", log, runs))
    kinds = ["tcp", "tcp", "one", "tcp", "tcp"]
    ip.input_batch([(memoryview(_datagram(k, i)), None) for i, k in enumerate(kinds)], 1.0)
    assert [e[0] for e in log] == ["tcp", "tcp", "one"] and len(newer) == 2
    assert runs == [("tcp", 2, False), ("tcp2", 2, False)]


class _CountingEntries(dict):
    """The layer's transport table, counting the look-ups input_batch makes."""

    gets = 0

    def get(self, key, default=None):
        self.gets += 1
        return dict.get(self, key, default)


def test_the_run_shortcut_resumes_after_a_datagram_that_went_elsewhere():
    """64 TCP datagrams, one for another transport, 64 TCP again: the TCP transport is looked up
    once before and once after the other datagram, not once per later TCP datagram."""
    ip, log, runs = _layer()
    ip._entries = entries = _CountingEntries(ip._entries)
    batch = [(memoryview(_datagram(kind, i)), None)
             for i, kind in enumerate(["tcp"] * 64 + ["one"] + ["tcp"] * 64)]
    ip.input_batch(batch, 0.0)
    assert entries.gets == 3                        # tcp, one, tcp
    assert ip.counters.get("ip.in.delivered") == 129
