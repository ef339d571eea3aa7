"""FaultyLink: rates honoured within statistical tolerance on seeded runs; spec parsing."""
import math

import pytest

from netstack.link import FaultyLink, MemoryLink, parse_fault_spec
from netstack.link.faults import FaultSpecError

N = 20000


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def within(observed, n, p, sigmas=5):
    """|observed - n p| within `sigmas` binomial standard deviations."""
    sd = math.sqrt(n * p * (1 - p))
    return abs(observed - n * p) <= sigmas * sd + 1


def make(**kw):
    a, b = MemoryLink.pair(queue_limit=10 * N)
    return FaultyLink(a, clock=kw.pop("clock", FakeClock()), **kw), b


def packets(n):
    return [i.to_bytes(4, "big") + bytes(60) for i in range(n)]


def test_loss_rate_tx():
    f, peer = make(loss=0.05, seed=1)
    for p in packets(N):
        f.send(p)
    got = len(peer.recv_batch(10 * N))
    assert f.stats["tx.lost"] == N - got
    assert within(N - got, N, 0.05)


def test_duplicate_rate_tx():
    f, peer = make(duplicate=0.01, seed=2)
    for p in packets(N):
        f.send(p)
    got = peer.recv_batch(10 * N)
    assert within(len(got) - N, N, 0.01)
    assert f.stats["tx.duplicated"] == len(got) - N


def test_corrupt_rate_flips_exactly_one_bit():
    f, peer = make(corrupt=0.1, seed=3)
    sent = packets(N)
    for p in sent:
        f.send(p)
    got = [bytes(v) for v, _ in peer.recv_batch(10 * N)]
    assert len(got) == N
    bad = 0
    for s, g in zip(sent, got):
        if s != g:
            bad += 1
            assert sum(bin(x ^ y).count("1") for x, y in zip(s, g)) == 1
    assert bad == f.stats["tx.corrupted"]
    assert within(bad, N, 0.1)


def test_reorder_rate_and_nothing_lost():
    clock = FakeClock()
    f, peer = make(reorder=0.25, seed=4, clock=clock)
    sent = packets(N)
    for p in sent:
        f.send(p)
    clock.t += 1.0
    f.flush()
    got = [bytes(v) for v, _ in peer.recv_batch(10 * N)]
    assert sorted(got) == sorted(sent)                  # all delivered
    late = sum(1 for i in range(1, len(got)) if got[i] < got[i - 1])
    assert late > 0
    assert within(f.stats["tx.reordered"], N, 0.25)


def test_delay_holds_until_time_passes():
    clock = FakeClock()
    f, peer = make(delay=0.005, seed=5, clock=clock)
    f.send(b"a")
    f.send(b"b")
    assert peer.recv_batch() == []
    assert f.next_deadline() == pytest.approx(0.005)
    clock.t = 0.004
    f.flush()
    assert peer.recv_batch() == []
    clock.t = 0.005
    f.flush()
    assert [bytes(v) for v, _ in peer.recv_batch()] == [b"a", b"b"]


def test_rx_direction_impaired_too():
    a, b = MemoryLink.pair(queue_limit=10 * N)
    f = FaultyLink(b, loss=0.1, seed=6, clock=FakeClock())
    for p in packets(N):
        a.send(p)
    got = 0
    while True:
        batch = f.recv_batch(64)
        if not batch and not b.pending():
            break
        got += len(batch)
    assert f.stats["rx.lost"] == N - got
    assert within(N - got, N, 0.1)


def test_directions_tx_only_leaves_rx_alone():
    a, b = MemoryLink.pair()
    f = FaultyLink(b, loss=1.0, directions="tx", seed=0)
    a.send(b"in")
    assert [bytes(v) for v, _ in f.recv_batch()] == [b"in"]
    f.send(b"out")
    assert a.recv_batch() == []


def test_same_seed_same_fate():
    def run(seed):
        f, peer = make(loss=0.1, duplicate=0.05, corrupt=0.05, seed=seed)
        for p in packets(2000):
            f.send(p)
        return [bytes(v) for v, _ in peer.recv_batch(10 * N)]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_parse_fault_spec():
    assert parse_fault_spec("loss=5%,reorder=25%,delay=5ms,seed=1") == {
        "loss": 0.05, "reorder": 0.25, "delay": 0.005, "seed": 1}
    assert parse_fault_spec("dup=0.01, corrupt=1%, delay=300us, dir=rx") == {
        "duplicate": 0.01, "corrupt": 0.01, "delay": pytest.approx(0.0003), "directions": "rx"}
    assert parse_fault_spec("") == {}


@pytest.mark.parametrize("spec", ["loss=5", "loss=abc", "loss=101%", "delay=fast", "bogus=1", "loss", "seed=x",
                                  "dir=up"])
def test_parse_fault_spec_errors(spec):
    with pytest.raises(FaultSpecError):
        parse_fault_spec(spec)


def test_bad_rates_refused():
    a, _ = MemoryLink.pair()
    with pytest.raises(ValueError):
        FaultyLink(a, loss=1.5)
