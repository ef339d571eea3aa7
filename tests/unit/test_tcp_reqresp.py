"""End to end over the simulated channel: request/response protocols with Nagle on.

Each side writes its message and waits for the other's whole message before
answering.  With classic Nagle, a message a little over one MSS stalls: the
full segment goes out, the tail waits for its ACK, and the receiver delays
that ACK (only one full-sized segment arrived) -- one delayed-ACK timeout
per message (measured before the change: ~430 ms per 2 KB exchange at a
10 ms RTT).  Minshall's Nagle (sender.py) sends the tail at once; quick-ACK
(connection.py) answers the first segments, and those after an idle period,
at once, so a request written in two small pieces is not held for a timer
either.
"""
import pytest

from netstack.tcp import TCPConfig
from tests.support.tcp_netsim import B_ADDR, Sim

MSG = 2048
DELAY = 0.005          # one way: RTT = 10 ms
RTT = 2 * DELAY


def request_response(rounds: int, config: TCPConfig | None = None, *, req_size: int = MSG,
                     resp_size: int = MSG, pieces: int = 1, think: float = 0.0):
    """Run ``rounds`` exchanges; returns (latencies, sim): the simulated seconds from the first
    byte of each request written to the last byte of its response read.  The request is
    written in ``pieces`` writes, each in a later pass of the application than the one
    before; the client waits ``think`` seconds after a response before the next request."""
    cfg_a = config or TCPConfig()
    cfg_b = config or TCPConfig()
    sim = Sim(config_a=cfg_a, config_b=cfg_b, delay=DELAY)
    lst = sim.b.listen(7)
    ca = sim.a.connect(B_ADDR, 7, sim.now)
    req, resp = b"q" * req_size, b"r" * resp_size
    step = -(-req_size // pieces)
    st = {"b": None, "a_got": 0, "b_got": 0, "written": None, "start": 0.0, "next_at": 0.0}
    lat = []

    def app():
        if st["b"] is None:
            st["b"] = lst.accept()
        cb = st["b"]
        if cb is None or not ca.established:
            return
        w = st["written"]
        if w is None and len(lat) < rounds and sim.now >= st["next_at"]:
            st["start"], w = sim.now, 0
        if w is not None and w < req_size:          # one piece per application pass
            n = ca.send(req[w:w + step])
            assert n == min(step, req_size - w)
            w += n
        st["written"] = w
        while cb.readable:
            st["b_got"] += len(cb.recv(65536))
            if st["b_got"] == req_size:             # whole request: answer
                st["b_got"] = 0
                assert cb.send(resp) == resp_size
        while ca.readable:
            st["a_got"] += len(ca.recv(65536))
            if st["a_got"] == resp_size:            # whole response: next request
                st["a_got"] = 0
                lat.append(sim.now - st["start"])
                st["written"] = None
                st["next_at"] = sim.now + think

    sim.run(lambda: len(lat) >= rounds, app=app,
            max_time=rounds * (1.0 + think) + 10, idle_tick=0.001)
    return lat, sim


@pytest.mark.parametrize("req_size,resp_size", [(MSG, MSG), (MSG, 60), (5000, 60)])
def test_request_response_runs_at_round_trip_time_with_nagle_on(req_size, resp_size):
    rounds = 50
    assert not TCPConfig().nodelay             # Nagle on (the default)
    lat, sim = request_response(rounds, req_size=req_size, resp_size=resp_size)
    elapsed = sum(lat)
    # The channel has no serialization delay: one exchange is one RTT.  Allow 1.2 RTT each;
    # with classic Nagle and a 200 ms delayed ACK a 2 KB exchange took ~430 ms.
    assert elapsed <= rounds * RTT * 1.2, f"{rounds} round trips took {elapsed:.3f} s of simulated time"
    assert sim.ca.get("tcp.retrans_segs") == 0 and sim.cb.get("tcp.retrans_segs") == 0


def test_request_in_two_writes_after_idle_is_not_held_for_a_delayed_ack():
    # Write-write-read: the second small write waits (Nagle, also Minshall's) for the ACK of
    # the first; the server cannot answer an incomplete request, so that ACK is a pure ACK.
    # Quick-ACK sends it at once -- for the first segments, and again after each idle period
    # longer than the RTO (think time 2 s > RTO 1 s), long after the initial credit is spent.
    # (With interactive mode off: in it, as in Linux, the ACK waits for a reply instead.)
    rounds = 20                                # 2 quick-ACKed segments per round: > 16
    lat, sim = request_response(rounds, TCPConfig(pingpong=False), req_size=200, resp_size=60, pieces=2,
                                think=2.0)
    assert max(lat) <= 2 * RTT * 1.2, [round(x, 3) for x in lat]
    assert sim.cb.get("tcp.quickacks") >= 2 * rounds


def test_request_in_two_writes_in_interactive_mode_waits_at_most_the_minimum_delayed_ack():
    # Linux's trade-off: in interactive mode the first piece's ACK waits for a reply that
    # cannot come; the timer fires after ato (at its minimum, 40 ms, not 200 ms), which
    # also ends the mode for that exchange.
    rounds = 10
    cfg = TCPConfig()
    lat, sim = request_response(rounds, req_size=200, resp_size=60, pieces=2, think=2.0)
    assert max(lat) <= 2 * RTT + cfg.delack_min + 0.005, [round(x, 3) for x in lat]
    assert sim.cb.get("tcp.pingpong") >= 1
