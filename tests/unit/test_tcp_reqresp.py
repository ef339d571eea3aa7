"""End to end over the simulated channel: a request/response protocol with Nagle on.

Each side writes a 2 KB message (more than one MSS: a full segment and a
~600-byte tail) and waits for the other's whole message before answering.
Classic Nagle holds the tail until the full segment is ACKed, and a
delaying receiver holds that ACK (only one full-sized segment arrived): one
delayed-ACK timeout per message.  Minshall's Nagle (sender.py) and quick-ACK
(connection.py) let the loop run at one round trip per exchange.
"""
from netstack.tcp import TCPConfig
from tcp_netsim import B_ADDR, Sim

MSG = 2048
DELAY = 0.005          # one way: RTT = 10 ms


def request_response(rounds: int, config: TCPConfig | None = None):
    """Run ``rounds`` request/response exchanges; returns the simulated seconds they took
    (from the first request to the last response, handshake excluded)."""
    cfg_a = config or TCPConfig()
    cfg_b = config or TCPConfig()
    sim = Sim(config_a=cfg_a, config_b=cfg_b, delay=DELAY)
    lst = sim.b.listen(7)
    ca = sim.a.connect(B_ADDR, 7, sim.now)
    box = {"b": None, "done": 0, "a_got": 0, "b_got": 0, "start": None, "end": None}
    req, resp = b"q" * MSG, b"r" * MSG

    def app():
        if box["b"] is None:
            box["b"] = lst.accept()
        cb = box["b"]
        if box["start"] is None and ca.established and cb is not None:
            box["start"] = sim.now
            assert ca.send(req) == MSG
        if cb is not None:
            while cb.readable:
                box["b_got"] += len(cb.recv(65536))
                if box["b_got"] == MSG:            # whole request: answer
                    box["b_got"] = 0
                    assert cb.send(resp) == MSG
        while ca.readable:
            box["a_got"] += len(ca.recv(65536))
            if box["a_got"] == MSG:                # whole response: next request
                box["a_got"] = 0
                box["done"] += 1
                box["end"] = sim.now
                if box["done"] < rounds:
                    assert ca.send(req) == MSG

    sim.run(lambda: box["done"] >= rounds, app=app, max_time=rounds * 1.0 + 10, idle_tick=0.001)
    return box["end"] - box["start"], sim


def test_request_response_runs_at_round_trip_time_with_nagle_on():
    rounds = 50
    assert not TCPConfig().nodelay             # Nagle on (the default)
    elapsed, sim = request_response(rounds)
    rtt = 2 * DELAY
    # The channel has no serialization delay: one exchange is one RTT.  Allow 1.2 RTT each;
    # with classic Nagle and a 200 ms delayed ACK it was ~430 ms per exchange (2 x 200 ms + RTT).
    assert elapsed <= rounds * rtt * 1.2, f"{rounds} round trips took {elapsed:.3f} s of simulated time"
    assert sim.ca.get("tcp.retrans_segs") == 0 and sim.cb.get("tcp.retrans_segs") == 0
