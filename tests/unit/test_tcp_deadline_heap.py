"""TCPLayer's timers live in a deadline heap: poll() and next_deadline() never walk every connection.

Two properties: (1) the heap's answer is exact: next_deadline() equals the
earliest deadline of any connection, through transfers with loss,
reordering and every timer kind (retransmission, TLP, delayed ACK,
persist, keep-alive, TIME-WAIT); (2) idle connections cost nothing: a
round of traffic on one connection does not look at the others.
"""
from __future__ import annotations

import random

from netstack.tcp import TCPConfig
from netstack.tcp.connection import Connection

from tests.support.tcp_netsim import Sim, Stream, B_ADDR
from tests.support.tcp_script import Script


def _earliest(layer):
    ds = [c.next_deadline() for c in layer.connections.values()]
    ds = [d for d in ds if d is not None]
    return min(ds) if ds else None


def test_next_deadline_is_exactly_the_earliest_connection_deadline_through_lossy_transfers():
    cfg = TCPConfig(rto_initial=0.2, rto_min=0.05, msl=0.5, sndbuf=64 * 1024, rcvbuf=64 * 1024)
    sim = Sim(config_a=cfg, config_b=cfg, loss=0.05, reorder=0.1, dup=0.02, seed=4)
    lst = sim.b.listen(80)
    streams, conns, accepted = [], [], []
    for i in range(6):
        conns.append(sim.a.connect(B_ADDR, 80, sim.now))
        streams.append(Stream(60_000 + 7_000 * i, seed=i))
    rng = random.Random(1)
    checks = 0

    def app():
        nonlocal checks
        while (c := lst.accept()) is not None:
            accepted.append(c)
            if len(accepted) % 2:
                c.set_keepalive(True, idle=0.5, interval=0.2)
        for s, c in zip(streams, conns):
            if c.established:
                s.pump_send(c)
                if s.sent == len(s.data) and rng.random() < 0.3:
                    c.close()
        for c in accepted:
            while c.readable:
                c.recv(1 << 16)
            if c.at_eof and rng.random() < 0.5:
                c.close()
        for layer in (sim.a, sim.b):
            if not layer._pending:
                assert layer.next_deadline() == _earliest(layer)
                checks += 1

    sim.run(lambda: all(c.closed for c in conns) and len(accepted) == 6 and all(c.closed for c in accepted),
            app=app, max_time=120)
    assert checks > 500
    assert sim.a.next_deadline() == _earliest(sim.a)


def test_a_busy_connection_does_not_look_at_idle_ones(monkeypatch):
    s = Script(TCPConfig(tlp=False))
    idle = []
    for i in range(300):
        s.peer_port = 20000 + i
        conn, _ = s.passive_open()
        conn.set_keepalive(True, idle=3600)
        idle.append(conn)
    s.poll()
    s.sent()
    s.peer_port = 40000
    busy, _ = s.passive_open()
    # Entries whose timer moved later (the SYN-ACKs' retransmission timers, now keep-alive ones)
    # are re-filed once, when they reach the top: amortised, once per timer change, not per round
    s.layer.next_deadline()
    seen = []
    real = Connection.next_deadline

    def counting(self):
        seen.append(self)
        return real(self)

    monkeypatch.setattr(Connection, "next_deadline", counting)
    seq = s.peer_isn + 1
    for k in range(50):                                # data in, ACKs out, timers polled
        s.peer("P.", seq=seq, ack=s.our_isn + 1, data=b"x" * 1000, ts=(s.peer_ts + k, 1))
        seq += 1000
        s.after(0.001)
        s.layer.next_deadline()
        busy.recv()
        s.sent()
    s.after(0.5)                                       # the delayed ACK fires
    touched = {id(c) for c in seen} & {id(c) for c in idle}
    # at most the one whose keep-alive entry tops the heap (next_deadline checks the top is live)
    assert len(touched) <= 1, f"{len(touched)} idle connections were examined"
    # and their keep-alive timers still fire when due
    s.at(3601.0)
    assert all(c.sender.keepalive_probes == 1 for c in idle)
    assert s.counters.get("tcp.keepalive_probes") == 300
