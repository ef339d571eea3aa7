"""The scenarios themselves: each sets up the testbed, plays its story, and states its lesson as checks.

A (198.18.0.1) is the client, B (198.18.0.2) the server; the wire has a
10 ms one-way delay.  Sequence numbers in the lessons are relative (0 = ISN).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from netstack.tcp import ConnEvent, State, TCPConfig
from netstack.tcp.seq import seq_diff
from netstack.tcp.syncookies import MSS_TABLE, SynCookieMode, SynCookies, decode_ts
from netstack.wire.ipv4 import ip2int
from netstack.wire.tcp_options import build_options
from netstack.wire.tcp import ACK, FIN, RST, SYN, parse_tcp

from .testbed import A_ADDR, B_ADDR, B_SECRET, Testbed

__all__ = ["SCENARIOS", "Scenario", "Outcome"]

PORT = 8000
MSS = 1000        # small segments keep the pictures readable


@dataclass
class Outcome:
    """What a scenario produced: the testbed, the facts, and the lesson as checks."""
    name: str
    title: str
    lesson: str
    testbed: Testbed
    facts: dict = field(default_factory=dict)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, sentence: str, held: bool) -> None:
        self.checks.append((sentence, bool(held)))

    @property
    def ok(self) -> bool:
        return all(held for _, held in self.checks)

    def states(self, host: str) -> list[str]:
        """The states ``host`` ("A" or "B") went through, in order, starting with the first ``from``."""
        recs = [r for r in self.testbed.transitions if r["host"] == host]
        return ([recs[0]["from"]] if recs else []) + [r["to"] for r in recs]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    lesson: str
    body: Callable[[Outcome], None]
    config_a: TCPConfig = field(default_factory=TCPConfig)
    config_b: TCPConfig = field(default_factory=TCPConfig)

    def play(self) -> Outcome:
        tb = Testbed(config_a=self.config_a, config_b=self.config_b)
        out = Outcome(self.name, self.title, self.lesson, tb)
        self.body(out)
        return out


def _cfg(**kw) -> TCPConfig:
    return replace(TCPConfig(mss=MSS), **kw)


def _connect(tb: Testbed, *, port: int = PORT):
    """B listens on ``port``, A connects; returns (A's connection, B's listener)."""
    lst = tb.b.listen(port)
    conn = tb.a.connect(B_ADDR, port, tb.now, src_port=40000)
    return conn, lst


def _established(tb: Testbed, port: int = PORT):
    conn, lst = _connect(tb, port=port)
    tb.run_until(lambda: conn.established and lst.pending > 0)
    return conn, lst.accept()


def _flags(seg) -> int:
    return seg.flags & (SYN | FIN | RST | ACK)


# ---------------------------------------------------------------------------------------- handshake

def _handshake(o: Outcome) -> None:
    tb = o.testbed
    conn, lst = _connect(tb)
    tb.run_until(lambda: conn.established and lst.pending > 0)
    tb.run_idle()
    segs = tb.segments
    o.facts["flags"] = [_flags(s) for s in segs]
    o.check("three segments open the connection: SYN, SYN-ACK, ACK",
            o.facts["flags"] == [SYN, SYN | ACK, ACK])
    o.check("the SYN-ACK acknowledges the client's ISN + 1", segs[1].ack == (segs[0].seq + 1) & 0xFFFFFFFF)
    o.check("the final ACK acknowledges the server's ISN + 1", segs[2].ack == (segs[1].seq + 1) & 0xFFFFFFFF)
    o.check("the client goes CLOSED -> SYN-SENT -> ESTABLISHED",
            o.states("A") == ["CLOSED", "SYN-SENT", "ESTABLISHED"])
    o.check("the server goes LISTEN -> SYN-RECEIVED -> ESTABLISHED",
            o.states("B") == ["LISTEN", "SYN-RECEIVED", "ESTABLISHED"])


# ---------------------------------------------------------------------------------------- simultaneous open

def _simultaneous_open(o: Outcome) -> None:
    tb = o.testbed
    a = tb.a.connect(B_ADDR, 5000, tb.now, src_port=6000)
    b = tb.b.connect(A_ADDR, 6000, tb.now, src_port=5000)
    tb.run_until(lambda: a.established and b.established)
    tb.run_idle()
    o.facts["syns"] = sum(1 for s in tb.segments if _flags(s) == SYN)
    o.check("both sides send a SYN (no listener anywhere)", o.facts["syns"] == 2)
    for host in ("A", "B"):
        o.check(f"{host} goes SYN-SENT -> SYN-RECEIVED -> ESTABLISHED",
                o.states(host) == ["CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED"])


# ---------------------------------------------------------------------------------------- closes

def _orderly_close(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    a.send(b"hello\n")
    tb.run_until(lambda: b.readable >= 6)
    o.facts["received"] = b.recv()
    a.close()                                     # the client is done: FIN
    tb.run_until(lambda: b.at_eof)
    o.facts["b_state_after_fin"] = b.state.value
    b.close()                                     # the server closes its half
    tb.run_until(lambda: b.state is State.CLOSED)
    o.facts["a_state_when_b_closed"] = a.state.value
    fins = [s for s in tb.segments if s.flags & FIN]
    o.facts["fins"] = [(s.sender) for s in fins]
    o.check("the server read the data before the close", o.facts["received"] == b"hello\n")
    o.check("each side sends one FIN", o.facts["fins"] == ["A", "B"])
    o.check("the closer goes FIN-WAIT-1 -> FIN-WAIT-2 -> TIME-WAIT",
            o.states("A")[-3:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"])
    o.check("the other side goes CLOSE-WAIT -> LAST-ACK -> CLOSED",
            o.states("B")[-3:] == ["CLOSE-WAIT", "LAST-ACK", "CLOSED"])
    o.check("the side that closed first is the one left in TIME-WAIT", o.facts["a_state_when_b_closed"] == "TIME-WAIT")


def _simultaneous_close(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    a.close()
    b.close()                                     # both FINs cross on the wire
    tb.run_until(lambda: a.state is State.TIME_WAIT and b.state is State.TIME_WAIT)
    for host in ("A", "B"):
        o.check(f"{host} goes FIN-WAIT-1 -> CLOSING -> TIME-WAIT",
                o.states(host)[-3:] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"])
    o.check("both sides end in TIME-WAIT", a.state is State.TIME_WAIT and b.state is State.TIME_WAIT)


def _time_wait(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    # A's last ACK (the one answering B's FIN) is lost: B retransmits its FIN, and A,
    # in TIME-WAIT, must still be there to acknowledge it.
    state = {"n": 0}

    def lose_last_ack(seg) -> bool:
        if seg.sender == "A" and seg.flags == ACK and b.state is State.LAST_ACK and state["n"] == 0:
            state["n"] = 1
            return True
        return False
    tb.drop(lose_last_ack)
    a.close()
    tb.run_until(lambda: b.at_eof)
    b.close()
    tb.run_until(lambda: a.state is State.TIME_WAIT)
    entered = tb.now
    tb.run_until(lambda: b.state is State.CLOSED)
    tb.run_until(lambda: a.state is State.CLOSED)
    recs = [r for r in tb.transitions if r["host"] == "A"]
    tw_in = [r for r in recs if r["to"] == "TIME-WAIT"][-1]
    tw_out = [r for r in recs if r["from"] == "TIME-WAIT"][-1]
    b_fins = [s for s in tb.segments if s.sender == "B" and s.flags & FIN]
    msl = o.testbed.config_a.msl
    o.facts.update(b_fins=len(b_fins), time_wait_entered=entered,
                   time_wait_left=round(tw_out["time"] - tw_in["time"], 3), msl=msl)
    o.check("the server's FIN is sent twice (the first ACK for it was lost)", len(b_fins) == 2)
    o.check("the client in TIME-WAIT acknowledges the retransmitted FIN",
            any(s.sender == "A" and s.flags == ACK and s.time > b_fins[1].time for s in tb.segments))
    o.check("the server still reaches CLOSED through the ACK (not a timeout)",
            [r for r in tb.transitions if r["host"] == "B"][-1]["cause"]["kind"] == "segment")
    o.check("TIME-WAIT ends on its timer, at least 2*MSL after it began",
            tw_out["cause"] == {"kind": "timer", "timer": "timewait"}
            and tw_out["time"] - tw_in["time"] >= 2 * msl - 1e-3)


# ---------------------------------------------------------------------------------------- RST

def _rst_closed_port(o: Outcome) -> None:
    tb = o.testbed
    conn = tb.a.connect(B_ADDR, 81, tb.now, src_port=40000)      # nobody listens on 81
    tb.run_until(lambda: conn.closed)
    segs = tb.segments
    o.facts["flags"] = [_flags(s) for s in segs]
    o.facts["events"] = [e.name for e in conn.events]
    o.check("the SYN to a closed port is answered by RST+ACK", o.facts["flags"] == [SYN, RST | ACK])
    o.check("the RST acknowledges the SYN (SEG.ACK = ISN + 1, RFC 9293 §3.10.7.1)",
            segs[1].ack == (segs[0].seq + 1) & 0xFFFFFFFF and segs[1].seq == 0)
    o.check("the client goes SYN-SENT -> CLOSED and the connect is refused",
            o.states("A") == ["CLOSED", "SYN-SENT", "CLOSED"] and ConnEvent.REFUSED in conn.events)


# ---------------------------------------------------------------------------------------- loss

def _deliver(tb: Testbed, a, b, data: bytes, sent: int = 0) -> bytes:
    """A's application writes ``data[sent:]``, B's reads everything; run until all of it arrived."""
    got = bytearray()

    def done() -> bool:
        nonlocal sent
        if sent < len(data):
            sent += a.send(data[sent:])
        while b.readable:
            got.extend(b.recv())
        return len(got) >= len(data)
    tb.run_until(done)
    return bytes(got)


def _transfer(tb: Testbed, a, b, nbytes: int) -> bytes:
    data = bytes(i % 251 for i in range(nbytes))
    got = _deliver(tb, a, b, data)
    assert got == data
    return got


def _fast_retransmit(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    tb.drop_nth_data("A", 3)
    _transfer(tb, a, b, 8 * MSS)
    tb.run_idle()
    data = tb.sent("A", data=True)
    lost = next(s for s in data if s.dropped)
    retx = [s for s in data if s.seq == lost.seq and s is not lost]
    # A duplicate ACK (RFC 5681 §2): no data, same ACK number and same window as the ACK before it.
    dupacks, prev = [], None
    for s in tb.segments:
        if s.sender != "B" or s.arrival is None or s.arrival > retx[0].time:
            continue
        if prev is not None and s.length == 0 and s.ack == prev.ack == lost.seq and s.window == prev.window:
            dupacks.append(s)
        prev = s
    o.facts.update(lost_seq=seq_diff(lost.seq, data[0].seq), retransmissions=len(retx), dupacks=len(dupacks),
                   fast_retransmits=tb.counters_a.get("tcp.fast_retransmits"),
                   rto_expirations=tb.counters_a.get("tcp.rto_expirations"))
    o.check("the lost segment is retransmitted exactly once", len(retx) == 1)
    o.check("the retransmission follows the third duplicate ACK (same ACK number, same window)",
            len(dupacks) == 3 and dupacks[-1].arrival == retx[0].time)
    o.check("it is a fast retransmit, not a timeout",
            o.facts["fast_retransmits"] == 1 and o.facts["rto_expirations"] == 0)
    o.check("it happens well before the 1 s RTO", retx[0].time - lost.time < 0.5)
    events = [r for r in tb.recovery_events if r["host"] == "A"]
    o.facts["recovery_events"] = [r["event"] for r in events]
    o.check("the state log shows fast recovery entered (cwnd cut) and left on the full ACK",
            o.facts["recovery_events"] == ["fast-retransmit", "recovery-exit"]
            and events[0]["cwnd"] < events[0]["prior_cwnd"] and events[1]["cwnd"] <= events[0]["ssthresh"])


def _rto_backoff(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    tb.drop_nth_data("A", 1, times=4)            # the segment and its first three retransmissions
    _transfer(tb, a, b, 500)
    tb.run_idle()
    data = tb.sent("A", data=True)
    times = [s.time for s in data if s.seq == data[0].seq]
    gaps = [round(t2 - t1, 6) for t1, t2 in zip(times, times[1:])]
    o.facts.update(transmissions=len(times), gaps=gaps, rto_expirations=tb.counters_a.get("tcp.rto_expirations"))
    o.check("the segment goes out five times (four are lost)", len(times) == 5)
    o.check("each wait for the retransmission timer is twice the one before (RFC 6298 §5.5)",
            len(gaps) == 4 and all(abs(g2 - 2 * g1) < 1e-3 for g1, g2 in zip(gaps, gaps[1:])))
    o.check("the first wait is the initial RTO of 1 s (RFC 6298 §2.1)", abs(gaps[0] - 1.0) < 1e-3)
    o.check("four retransmission timeouts", o.facts["rto_expirations"] == 4)
    rtos = [r for r in tb.recovery_events if r["host"] == "A" and r["event"] == "rto"]
    o.check("the state log has the four timeouts, each with the RTO doubled and cwnd one segment",
            [r["retries"] for r in rtos] == [1, 2, 3, 4]
            and all(abs(r2["rto"] - 2 * r1["rto"]) < 1e-3 for r1, r2 in zip(rtos, rtos[1:]))
            and all(r["cwnd"] <= MSS for r in rtos))


# ---------------------------------------------------------------------------------------- flow control

def _zero_window(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    total = 12 * MSS
    data = bytes(i % 251 for i in range(total))
    sent = a.send(data)
    tb.run_until(lambda: any(s.sender == "B" and s.window == 0 and s.flags & ACK for s in tb.segments))
    zero_at = tb.now
    tb.run_for(5.0)                               # B's application sleeps 5 s: the window stays shut
    probes = [s for s in tb.segments if s.sender == "A" and s.time > zero_at and s.length <= 1]
    got = _deliver(tb, a, b, data, sent)          # now it reads everything
    tb.run_idle()
    gaps = [round(p2.time - p1.time, 6) for p1, p2 in zip(probes, probes[1:])]
    first_wait = probes[0].time - zero_at if probes else 0.0
    o.facts.update(probes=len(probes), probe_gaps=gaps, first_wait=round(first_wait, 6), window_probes=tb.counters_a.get("tcp.window_probes"),
                   delivered=len(got))
    o.check("the receiver advertises a zero window when its buffer is full", zero_at > 0)
    o.check("the sender probes the closed window (RFC 9293 §3.8.6.1)", len(probes) >= 2)
    o.check("the persist interval backs off: the last wait is at least twice the first",
            len(gaps) >= 1 and gaps[-1] >= 1.9 * first_wait)
    o.check("the transfer completes once the receiver reads", bytes(got) == data)


# ---------------------------------------------------------------------------------------- SMTP

SMTP_DIALOGUE = [
    (None, b"220 mx.example.org ESMTP netstack\r\n"),
    (b"EHLO client.example.org\r\n", b"250-mx.example.org\r\n250-8BITMIME\r\n250 PIPELINING\r\n"),
    (b"MAIL FROM:<alice@example.org>\r\n", b"250 2.1.0 Ok\r\n"),
    (b"RCPT TO:<bob@example.org>\r\n", b"250 2.1.5 Ok\r\n"),
    (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (b"Subject: hello\r\n\r\nHello Bob.\r\n.\r\n", b"250 2.0.0 Ok: queued as 1A2B3C\r\n"),
    (b"QUIT\r\n", b"221 2.0.0 Bye\r\n"),
]


def _dialogue(o: Outcome, dialogue, *, port: int = 25, client_port: int = 40000):
    """A plays the client's lines, B the server's, each waiting for the other; then B closes first."""
    tb = o.testbed
    lst = tb.b.listen(port)
    conn = tb.a.connect(B_ADDR, port, tb.now, src_port=client_port)
    tb.run_until(lambda: lst.pending > 0)
    server = lst.accept()
    heard = {"A": bytearray(), "B": bytearray()}

    def wait_for(end, who: str, n: int) -> None:
        def got() -> bool:
            while end.readable:
                heard[who].extend(end.recv())
            return len(heard[who]) >= n
        tb.run_until(got)
    to_b = to_a = 0
    for command, reply in dialogue:
        if command is not None:
            conn.send(command)
            to_b += len(command)
            wait_for(server, "B", to_b)
        server.send(reply)
        to_a += len(reply)
        wait_for(conn, "A", to_a)
    server.close()                                 # after 221 the server closes; the client follows
    tb.run_until(lambda: conn.at_eof)
    conn.close()
    tb.run_until(lambda: conn.state is State.CLOSED)
    return conn, server, heard


def _smtp_dialogue(o: Outcome) -> None:
    tb = o.testbed
    conn, server, heard = _dialogue(o, SMTP_DIALOGUE)
    data = [s for s in tb.segments if s.length]
    o.facts.update(segments=len(data), client_heard=bytes(heard["A"]), server_heard=bytes(heard["B"]))
    o.check("the server speaks first: its 220 greeting is the first data segment", data[0].sender == "B")
    o.check("every command and every reply is one segment, alternating (no pipelining here)",
            [s.sender for s in data] == ["B"] + ["A", "B"] * (len(SMTP_DIALOGUE) - 1))
    o.check("the server heard exactly the client's commands",
            o.facts["server_heard"] == b"".join(c for c, _ in SMTP_DIALOGUE if c))
    o.check("the server closes first after 221 and is the one left in TIME-WAIT",
            o.states("B")[-3:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"] and server.state is State.TIME_WAIT)


# ---------------------------------------------------------------------------------------- more recovery

def _sack_recovery(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    tb.drop_nth_data("A", 3)
    tb.drop_nth_data("A", 6)
    _transfer(tb, a, b, 10 * MSS)
    tb.run_idle()
    data = tb.sent("A", data=True)
    lost = [s for s in data if s.dropped]
    first = data[0].seq
    seen, retx = set(), []
    for s in data:
        if s.seq in seen:
            retx.append(s)
        seen.add(s.seq)
    sacks = [s for s in tb.segments if s.sender == "B" and len(s.data) > 20 and _has_sack(s)]
    o.facts.update(lost=[seq_diff(s.seq, first) for s in lost], retransmitted=[seq_diff(s.seq, first) for s in retx],
                   sack_acks=len(sacks), rto_expirations=tb.counters_a.get("tcp.rto_expirations"))
    o.check("two segments are lost", len(lost) == 2)
    o.check("the receiver's duplicate ACKs carry SACK blocks (RFC 2018)", len(sacks) >= 3)
    o.check("exactly the two lost segments are retransmitted, nothing else (RFC 6675)",
            sorted(o.facts["retransmitted"]) == sorted(o.facts["lost"]))
    o.check("without waiting for a retransmission timeout", o.facts["rto_expirations"] == 0)


def _has_sack(seg) -> bool:
    return bool(parse_tcp(seg.data, verify=False).options.sack_blocks)


# ---------------------------------------------------------------------------------------- small segments

def _small_writes(tb: Testbed, conn, n: int, size: int, gap: float) -> None:
    for i in range(n):
        conn.send(bytes([65 + i % 26]) * size)
        tb.run_for(gap)


def _nagle(o: Outcome) -> None:
    tb = o.testbed
    lst = tb.b.listen(PORT)
    nagle = tb.a.connect(B_ADDR, PORT, tb.now, src_port=40001)
    nodelay = tb.a.connect(B_ADDR, PORT, tb.now, src_port=40002, nodelay=True)
    tb.run_until(lambda: nagle.established and nodelay.established and lst.pending == 2)
    peers = [lst.accept(), lst.accept()]
    tb.run_for(1.0)                               # let the quick-ACK phase pass
    start = len(tb.segments)
    _small_writes(tb, nagle, 10, 10, 0.002)       # ten 10-byte writes, 2 ms apart
    tb.run_for(0.5)
    mid = len(tb.segments)
    _small_writes(tb, nodelay, 10, 10, 0.002)
    tb.run_for(0.5)
    count = lambda lo, hi, port: sum(1 for s in tb.segments[lo:hi] if s.sender == "A" and s.length
                                     and int.from_bytes(s.data[0:2], "big") == port)
    o.facts.update(nagle_segments=count(start, mid, 40001), nodelay_segments=count(mid, len(tb.segments), 40002),
                   delivered=[p.readable for p in peers])
    o.check("with Nagle, the writes made while data is unacknowledged wait and leave together "
            "(RFC 896, RFC 9293 §3.7.4)", o.facts["nagle_segments"] < 10)
    o.check("with TCP_NODELAY, each of the ten writes is its own segment", o.facts["nodelay_segments"] == 10)
    o.check("both connections deliver all 100 bytes", o.facts["delivered"] == [100, 100])


def _delayed_ack(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    tb.run_for(1.0)
    a.send(bytes(MSS - 12))                       # one full-sized segment (MSS less 12 bytes of timestamps)
    tb.run_for(0.5)
    a.send(bytes(2 * (MSS - 12)))                 # two of them
    tb.run_for(0.5)
    data = tb.sent("A", data=True)
    acks = [s for s in tb.sent("B") if s.length == 0 and not s.flags & (SYN | FIN)]

    def ack_delay(seg) -> float:
        end = (seg.seq + seg.length) & 0xFFFFFFFF
        ack = next(s for s in acks if seq_diff(s.ack, end) >= 0 and s.time >= seg.arrival)
        return round(ack.time - seg.arrival, 6)
    o.facts.update(single=ack_delay(data[0]), pair_second=ack_delay(data[2]),
                   delayed_acks=tb.counters_b.get("tcp.delayed_acks"))
    o.check("a lone segment is acknowledged only when the delayed-ACK timer fires (RFC 9293 §3.8.6.3)",
            0.03 < o.facts["single"] <= 0.2)
    o.check("the second of two full-sized segments is acknowledged at once (RFC 1122 §4.2.3.2)",
            o.facts["pair_second"] == 0)
    o.check("no ACK is sent for the first segment of the pair alone",
            sum(1 for s in acks if s.time >= data[1].arrival and seq_diff(s.ack, data[1].seq) > 0
                and seq_diff(s.ack, data[2].seq) <= 0) == 0)


# ---------------------------------------------------------------------------------------- options

def _window_scaling(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    syn, synack = tb.segments[0], tb.segments[1]
    shift_a = parse_tcp(syn.data, verify=False).options.wscale
    shift_b = parse_tcp(synack.data, verify=False).options.wscale
    _transfer(tb, a, b, 20 * MSS)
    tb.run_idle()
    b_acks = [s for s in tb.sent("B") if not s.flags & SYN]
    field_ = b_acks[-1].window
    o.facts.update(shift_a=shift_a, shift_b=shift_b, synack_window=synack.window, window_field=field_,
                   window_bytes=field_ << shift_b, rcvbuf=o.testbed.config_b.rcvbuf)
    o.check("both SYNs carry the window-scale option (RFC 7323 §2)", shift_a == 7 and shift_b == 5)
    o.check("the SYN-ACK's own window is never scaled: at most 65535", synack.window == 65535)
    o.check("afterwards the 16-bit field times 2^shift says more than 65535 bytes",
            field_ <= 0xFFFF < field_ << shift_b and field_ << shift_b >= o.testbed.config_b.rcvbuf // 2)


FLOOD_BACKLOG = 4
FLOOD_SYNS = 12
FLOOD_NET = ip2int("203.0.113.0")     # TEST-NET-3: forged sources that no host answers for


def _syn_flood(o: Outcome) -> None:
    tb = o.testbed
    lst = tb.b.listen(PORT, backlog=FLOOD_BACKLOG)
    queue = []                                   # the SYN queue's length after every step

    def watch() -> None:
        queue.append(lst.info()["syn_queue"])
    # the flood: SYNs from forged addresses, one every millisecond; nobody will ever ACK
    for i in range(FLOOD_SYNS):
        tb.spoof(FLOOD_NET + 1 + i, 20000 + i, PORT, 0x1000_0000 * (i % 16) + 7919 * i, SYN,
                 options=build_options(mss=1460))
        tb.run_for(0.001)
        watch()
    tb.run_for(0.03)
    watch()
    full = lst.info()["syn_queue"]
    cookies_to_flood = tb.counters_b.get("tcp.syncookies.sent")
    # now a legitimate client
    a = tb.a.connect(B_ADDR, PORT, tb.now, src_port=40000)
    state_kept = []

    def synack_out() -> bool:
        watch()
        ans = [s for s in tb.segments if s.sender == "B" and s.flags & SYN and not s.to_nowhere]
        if ans:
            state_kept.append((A_ADDR, 40000, PORT) in tb.b.connections)
        return bool(ans)
    tb.run_until(synack_out)
    tb.run_until(lambda: (watch(), a.established and lst.pending > 0)[1])
    b = lst.accept()
    a_syn = next(s for s in tb.segments if s.sender == "A" and s.flags & SYN)
    synack = next(s for s in tb.segments if s.sender == "B" and s.flags & SYN and not s.to_nowhere)
    third = next(s for s in tb.segments if s.sender == "A" and s.flags == ACK and seq_diff(s.ack, synack.seq) == 1)
    # decode the cookie as B will: SEG.ACK - 1 of the third segment is the SYN-ACK's ISN
    decoded = SynCookies(B_SECRET).check(A_ADDR, B_ADDR, 40000, PORT, third.seq, third.ack, third.time)
    offered = parse_tcp(a_syn.data, verify=False).options.mss
    synack_opts = parse_tcp(synack.data, verify=False).options
    wscale, sack = decode_ts(synack_opts.ts_val)
    message = b"hello through a cookie"
    a.send(message)
    got = bytearray()

    def arrived() -> bool:
        watch()
        while b.readable:
            got.extend(b.recv())
        return len(got) >= len(message)
    tb.run_until(arrived)
    tb.run_idle()                               # the half-open entries give up; the queue empties
    watch()
    info = b.info()
    b_states = [r for r in tb.transitions if r["host"] == "B" and r["remote"] == "198.18.0.1:40000"]
    o.facts.update(backlog=FLOOD_BACKLOG, flood=FLOOD_SYNS, max_syn_queue=max(queue), syn_queue_full=full,
                   cookies_to_flood=cookies_to_flood, cookies=tb.counters_b.get("tcp.syncookies.sent"),
                   validated=tb.counters_b.get("tcp.syncookies.validated"), offered_mss=offered,
                   decoded_mss=decoded, b_mss=info["peer_mss"], b_wscale=info["snd_wscale"], b_sack=info["sack_ok"],
                   cookie_wscale=wscale, cookie_sack=sack, syn_queue_after=lst.info()["syn_queue"],
                   b_states=[(r["from"], r["to"], r["cause"].get("flags")) for r in b_states])
    o.check(f"the forged SYNs fill the SYN queue to its backlog ({FLOOD_BACKLOG}) and never beyond",
            full == FLOOD_BACKLOG and max(queue) == FLOOD_BACKLOG)
    o.check(f"the other {FLOOD_SYNS - FLOOD_BACKLOG} forged SYNs are answered with cookies, keeping no state",
            cookies_to_flood == FLOOD_SYNS - FLOOD_BACKLOG)
    o.check("A's SYN is answered with a cookie too: no connection exists for it until its ACK returns",
            o.facts["cookies"] == cookies_to_flood + 1 and state_kept == [False])
    o.check(f"the cookie (SYN-ACK seq) decodes to {decoded}: the largest MSS of the table {list(MSS_TABLE)} "
            f"not above A's {offered}",
            decoded == max(m for m in MSS_TABLE if m <= offered))
    o.check("the ACK's cookie checks out and B's connection is ESTABLISHED at once (LISTEN -> SYN-RECEIVED -> "
            "ESTABLISHED on that ACK)",
            o.facts["validated"] == 1 and b.state is State.ESTABLISHED
            and [(f, t) for f, t, _ in o.facts["b_states"]] == [("LISTEN", "SYN-RECEIVED"),
                                                               ("SYN-RECEIVED", "ESTABLISHED")]
            and all(fl == "." for _, _, fl in o.facts["b_states"]))
    o.check("it runs with the options the cookie carried: the decoded MSS, and the window scale and SACK "
            "from the timestamp's low bits",
            info["peer_mss"] == decoded and info["timestamps"] and info["snd_wscale"] == wscale
            == tb.config_a.wscale and info["sack_ok"] == sack is True)
    o.check("data flows over it", bytes(got) == message)
    o.check("the forged half-open entries time out and the queue empties", o.facts["syn_queue_after"] == 0)


def _paws(o: Outcome) -> None:
    tb = o.testbed
    a, b = _established(tb)
    a.send(b"first\n")
    tb.run_until(lambda: b.readable >= 6)
    old = tb.sent("A", data=True)[0]
    tb.run_for(2.0)
    a.send(b"second\n")
    tb.run_until(lambda: b.readable >= 13)
    tb.run_for(0.5)
    before = len(tb.segments)
    tb.replay(old)                                # the network hands B an old copy of "first"
    tb.run_for(0.5)
    answer = [s for s in tb.segments[before:] if s.sender == "B"]
    got = b.recv()
    o.facts.update(paws_drops=tb.counters_b.get("tcp.in.drop.paws"), delivered=got, answers=len(answer))
    o.check("the old duplicate's timestamp is older than the last one seen: PAWS drops it (RFC 7323 §5.3)",
            o.facts["paws_drops"] == 1)
    o.check("the receiver answers it with an ACK of what it really has", len(answer) == 1
            and answer[0].ack == (old.seq + 6 + 7) & 0xFFFFFFFF)
    o.check("the data is delivered once", got == b"first\nsecond\n")


def _wraparound(o: Outcome) -> None:
    from netstack.tcp.isn import ISNGenerator
    tb = o.testbed
    gen = ISNGenerator(b"A" * 16)                 # the testbed's A uses this secret
    port = min(range(40000, 65536), key=lambda p: (-gen.isn(A_ADDR, p, B_ADDR, PORT, 0.0)) & 0xFFFFFFFF)
    isn = gen.isn(A_ADDR, port, B_ADDR, PORT, 0.0)
    lst = tb.b.listen(PORT)
    a = tb.a.connect(B_ADDR, PORT, tb.now, src_port=port)
    tb.run_until(lambda: lst.pending > 0)
    b = lst.accept()
    to_wrap = (-isn) & 0xFFFFFFFF
    nbytes = to_wrap + 20 * MSS
    data = bytes(i % 251 for i in range(nbytes))
    got = _deliver(tb, a, b, data)
    seqs = [s.seq for s in tb.sent("A", data=True)]
    wrapped = any(s2 < s1 for s1, s2 in zip(seqs, seqs[1:]))
    o.facts.update(isn=isn, bytes_to_wrap=to_wrap, transferred=nbytes, wrapped=wrapped)
    o.check("the client's ISN lies just below 2^32", to_wrap < nbytes)
    o.check("the absolute sequence number wraps from 4294967295 to 0 during the transfer", wrapped)
    o.check("nothing notices: every byte arrives, in order (comparisons are modulo 2^32, RFC 9293 §3.4)",
            got == data)


SEED_DIALOGUE = [
    (None, b"220 192.168.1.200 ESMTP\r\n"),
    (b"HELO web34213.mail.mud.yahoo.com\r\n", b"250 192.168.1.200 Hello\r\n"),
    (b"MAIL FROM:<xxxxxxxxxxxxx@yahoo.com>\r\n", b"250 2.1.0 Ok\r\n"),
    (b"QUIT\r\n", b"221 2.0.0 Bye\r\n"),
]


def _seed_article(o: Outcome) -> None:
    tb = o.testbed
    conn, server, heard = _dialogue(o, SEED_DIALOGUE, client_port=40565)
    helo = next(s for s in tb.segments if s.data.endswith(b"HELO web34213.mail.mud.yahoo.com\r\n"))
    mail = next(s for s in tb.segments if s.data.endswith(b"yahoo.com>\r\n"))
    seg = parse_tcp(helo.data, verify=False)
    items = [it[0] for it in seg.options.items]
    o.facts.update(helo_total_length=20 + len(helo.data), helo_header=seg.data_offset * 4, helo_options=items,
                   helo_payload=helo.length, mail_payload=mail.length)
    o.check("the HELO packet has the article's shape: 86 bytes (0x0056), a 32-byte TCP header whose 12 option "
            "bytes are NOP, NOP, Timestamps, and 34 bytes of HELO",
            (20 + len(helo.data), seg.data_offset * 4, items, helo.length) == (86, 32, ["nop", "nop", "ts"], 34))
    o.check("the MAIL FROM packet carries the article's 37 bytes", mail.length == 37)
    o.check("the server heard exactly the client's lines",
            bytes(heard["B"]) == b"".join(c for c, _ in SEED_DIALOGUE if c))


SMALL_RCVBUF = 4 * MSS
SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("handshake", "Three-way handshake",
             "SYN, SYN-ACK, ACK: each side picks an ISN and acknowledges the other's ISN + 1.",
             _handshake, _cfg(), _cfg()),
    Scenario("simultaneous-open", "Simultaneous open",
             "Two SYNs cross: each side goes SYN-SENT -> SYN-RECEIVED -> ESTABLISHED (RFC 9293 Figure 8).",
             _simultaneous_open, _cfg(), _cfg()),
    Scenario("orderly-close", "Orderly close",
             "FIN, ACK, FIN, ACK: each direction is closed on its own; the first to close ends in TIME-WAIT.",
             _orderly_close, _cfg(), _cfg()),
    Scenario("simultaneous-close", "Simultaneous close",
             "Two FINs cross: both sides go through CLOSING and both end in TIME-WAIT (RFC 9293 Figure 13).",
             _simultaneous_close, _cfg(), _cfg()),
    Scenario("time-wait", "TIME-WAIT",
             "The last ACK is lost; the peer retransmits its FIN and the side in TIME-WAIT (2*MSL) answers it.",
             _time_wait, _cfg(msl=2.0), _cfg(msl=2.0)),
    Scenario("rst-closed-port", "RST to a closed port",
             "A SYN to a port nobody listens on is answered by RST+ACK; connect() is refused.",
             _rst_closed_port, _cfg(), _cfg()),
    Scenario("fast-retransmit", "Loss and fast retransmit",
             "One segment is lost; three duplicate ACKs trigger exactly one fast retransmit, long before the RTO.",
             _fast_retransmit, _cfg(sack=False, tlp=False), _cfg(sack=False)),
    Scenario("rto-backoff", "RTO with exponential backoff",
             "A segment is lost again and again; each retransmission timeout is twice the previous one.",
             _rto_backoff, _cfg(tlp=False), _cfg()),
    Scenario("zero-window", "Zero window and persist",
             "The receiver's buffer fills: it advertises window 0, the sender probes with backing-off persist "
             "probes, and the transfer resumes when the application reads.",
             _zero_window, _cfg(), _cfg(rcvbuf=SMALL_RCVBUF, wscale=None)),
    Scenario("smtp-dialogue", "An SMTP dialogue",
             "The server greets first (220); each command (EHLO, MAIL FROM, RCPT TO, DATA, QUIT) and each "
             "reply rides in its own segment; the server closes first after 221.",
             _smtp_dialogue, _cfg(), _cfg()),
    Scenario("sack-recovery", "SACK recovery",
             "Two segments of one window are lost; the receiver's SACK blocks tell the sender exactly which, and "
             "it retransmits those two and nothing else, without a timeout (RFC 2018, RFC 6675).",
             _sack_recovery, _cfg(tlp=False), _cfg()),
    Scenario("nagle", "Nagle versus TCP_NODELAY",
             "Ten 10-byte writes: with Nagle the ones made while data is unacknowledged are coalesced; with "
             "TCP_NODELAY each one is a segment.",
             _nagle, _cfg(), _cfg()),
    Scenario("delayed-ack", "Delayed ACK",
             "A lone segment waits for the delayed-ACK timer; the second of two full-sized segments is "
             "acknowledged at once.",
             _delayed_ack, _cfg(), _cfg(quickack_segments=0)),
    Scenario("window-scaling", "Window scaling",
             "A 1 MB receive buffer does not fit the 16-bit window field: both SYNs carry a shift, and every "
             "later window means field x 2^shift (RFC 7323 §2).",
             _window_scaling, _cfg(), _cfg(rcvbuf=1 << 20, wscale=5)),
    Scenario("paws", "PAWS rejects an old duplicate",
             "An old copy of a segment arrives late, with an older timestamp: PAWS drops it and the receiver "
             "re-ACKs what it has (RFC 7323 §5).",
             _paws, _cfg(), _cfg()),
    Scenario("wraparound", "Sequence-number wraparound",
             "The ISN lies just below 2^32; the sequence numbers wrap to 0 in mid-transfer and nothing notices.",
             _wraparound, _cfg(), _cfg()),
    Scenario("syn-flood", "A SYN flood met by SYN cookies",
             f"Forged SYNs fill a listener's SYN queue (backlog {FLOOD_BACKLOG}); every further SYN is answered "
             "with a SYN cookie and no state (RFC 4987 §3.6); a real client's handshake completes through its "
             "cookie, with the MSS (from a table of four), window scale and SACK the cookie carries.",
             _syn_flood, _cfg(), _cfg(syncookies=SynCookieMode.AUTO)),
    Scenario("seed-article", "The seed article's SMTP session, replayed",
             "HELO web34213.mail.mud.yahoo.com and MAIL FROM go through our TCP in packets shaped exactly like "
             "the article's (86 bytes, NOP, NOP, Timestamps); `netstack trace -V` reads them the same way.",
             _seed_article, _cfg(), _cfg()),
]}
