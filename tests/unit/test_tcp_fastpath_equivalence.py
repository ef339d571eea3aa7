"""Header prediction changes nothing but the cost: the receive path's fast path (IPLayer.input_batch ->
TCPLayer.on_datagrams -> Connection.fast_path, AckPolicy.on_data, the ACK from its template) and the
full path (every segment parsed, RFC 9293 §3.10.7.4 step by step, Connection.fast_path never taken)
produce the same segments, the same connection state and the same counters, segment by segment,
for random mixes of in-order data and everything that must leave the fast path: out-of-order and
duplicate data, a TSval older than TS.Recent (PAWS, RFC 7323 §5), a changed window, an ACK of data
never sent (RFC 5961 §5.2), a corrupted checksum, other options (SACK blocks), data beyond the
window, a FIN, URG.

And the second prediction, chained with the first: request/response exchanges where each segment
from the peer (data, or a pure ACK) acknowledges new data of ours, the application writing its
replies from READABLE (or WRITABLE) callbacks: RTT samples, the RTO estimator, cwnd growth, the
retransmission timer and the TLP, RACK, WRITABLE, against everything that must leave that path
(duplicate ACKs, SACK blocks, loss recovery after a timeout, a window change, an ACK beyond SND.MAX).
A mutation test shows the comparison catches a broken fast path."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from netstack.counters import Counters
from netstack.ip.layer import IPLayer
from netstack.tcp import TCPConfig, TCPLayer
from netstack.tcp.connection import Connection
from netstack.tcp.events import ConnEvent
from netstack.tcp.state import State
from netstack.wire.ipv4 import ip2int, ipv4_packet
from netstack.wire.tcp import ACK, FIN, PSH, SYN, URG, parse_tcp, tcp_segment
from netstack.wire.tcp_options import build_options

A = ip2int("198.18.0.2")
B = ip2int("198.18.0.1")
PORT, CPORT = 5001, 40000
M = 0xFFFFFFFF


class _Host:
    """IPv4 + TCP with one ESTABLISHED connection (timestamps, SACK, window scale), driven by a
    scripted Linux-like peer; ``predict``: False makes every segment take the full path."""

    def __init__(self, predict: bool, monkeypatch, isn: int, rcvbuf: int):
        self.counters = Counters()
        self.ip = IPLayer(A, counters=self.counters)
        self.tcp = TCPLayer(A, counters=self.counters, config=TCPConfig(rcvbuf=rcvbuf), isn_secret=b"k" * 16)
        self.ip.register(6, self.tcp)
        self.predict = predict
        self.mp = monkeypatch
        lst = self.tcp.listen(PORT)
        self.now = 10.0
        self.ident = 0
        self.feed([self.packet(SYN, isn, 0, b"", build_options(mss=1460, sack_permitted=True, ts=(1000, 0),
                                                                wscale=7))])
        sa = parse_tcp(self.tcp.outbox.popleft()[1], src=A, dst=B)
        self.seq, self.ack, self.ecr, self.tsval = (isn + 1) & M, (sa.seq + 1) & M, sa.options.ts_val, 1001
        self.feed([self.packet(ACK, self.seq, self.ack, b"", self.ts())])
        self.conn = lst.accept()
        assert self.conn.state is State.ESTABLISHED
        self.tcp.outbox.clear()
        self.sent_max = self.ack                   # the end of what our side sent, as the peer saw it

    def ts(self, tsval=None) -> bytes:
        return struct.pack("!III", 0x0101080A, self.tsval if tsval is None else tsval, self.ecr)

    def packet(self, flags, seq, ack, payload, options, window=512) -> bytes:
        seg = tcp_segment(src=B, dst=A, src_port=CPORT, dst_port=PORT, seq=seq, ack=ack, flags=flags,
                          window=window, options=options, payload=payload)
        self.ident += 1
        return ipv4_packet(src=B, dst=A, protocol=6, payload=seg, df=True, ident=self.ident)

    def feed(self, packets) -> None:
        batch = [(memoryview(p), None) for p in packets]
        if self.predict:
            self.ip.input_batch(batch, self.now)
        else:
            with self.mp.context() as m:
                m.setattr(Connection, "fast_path", lambda self, *a: False)
                for view, _ in batch:                  # one by one, every segment parsed
                    self.ip.input(view, self.now)

    def snapshot(self):
        c = self.conn
        out = [bytes(item[1]) for item in self.tcp.outbox]
        for item in self.tcp.outbox:               # the peer: what we sent, the TSval to echo
            seg = parse_tcp(item[1], src=A, dst=B)
            end = (seg.seq + len(seg.payload) + (1 if seg.flags & FIN else 0)) & M
            if (end - self.sent_max) & M < 1 << 31:
                self.sent_max = end
            if seg.options.ts_val is not None:
                self.ecr = seg.options.ts_val
        self.tcp.outbox.clear()
        events = list(c.events)
        c.events.clear()
        return (out, c.rcv.nxt, c.rcv.adv, c.rcv.committed, c.rcv.last_ack_sent, str(c.state), c.neg.ts_recent,
                c.readable, c.acks.due, c.acks.quickack, c.acks.ato, c.timers.as_dict(), c.segs_in, c.segs_out,
                c.snd.wnd, c.snd.max_wnd, c.snd.una, c.snd.wl1, c.snd.wl2, self.tcp.next_deadline(),
                c.info(), events, c.sender.probes_unanswered, c.recovery.dupacks, c.acks.pingpong, c.snd.nxt)

    def acking(self, quarters: int) -> int:
        """An ACK covering ``quarters``/4 of what is in flight beyond the peer's last ACK."""
        return (self.ack + ((self.sent_max - self.ack) & M) * quarters // 4) & M


_OPS = st.one_of(
    st.tuples(st.just("data"), st.integers(1, 1448), st.booleans()),
    st.tuples(st.just("ooo"), st.integers(1, 1448), st.integers(1, 3000)),
    st.tuples(st.just("dup"), st.integers(1, 1448), st.integers(1, 3000)),
    st.tuples(st.just("old_ts"), st.integers(1, 1448), st.integers(1, 2**31 - 1)),
    st.tuples(st.just("same_ts"), st.integers(1, 1448), st.just(0)),
    st.tuples(st.just("window"), st.integers(1, 1448), st.integers(0, 65535)),
    st.tuples(st.just("ack_unsent"), st.integers(1, 1448), st.integers(1, 1000)),
    st.tuples(st.just("corrupt"), st.integers(1, 1448), st.integers(0, 1447)),
    st.tuples(st.just("sack"), st.integers(1, 1448), st.just(0)),
    st.tuples(st.just("no_ts"), st.integers(1, 1448), st.just(0)),
    st.tuples(st.just("urg"), st.integers(1, 1448), st.just(0)),
    st.tuples(st.just("big"), st.integers(1, 64000), st.just(0)),
    st.tuples(st.just("pure_ack"), st.just(0), st.just(0)),
    st.tuples(st.just("read"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 400), st.just(0)),
)

#: request/response: the peer's segments acknowledge our data (``quarters``/4 of what is in flight);
#: the exchange's own steps weigh more than the ones that must leave the path
_REQ = st.tuples(st.just("req"), st.integers(1, 1448), st.integers(0, 4))
_SHORT_REQ = st.tuples(st.just("req"), st.integers(1, 120), st.just(4))
_ACK_NEW = st.tuples(st.just("ack_new"), st.just(0), st.integers(1, 4))
_WRITE = st.tuples(st.just("write"), st.integers(1, 6000), st.just(0))
_SHORT_TICK = st.tuples(st.just("tick"), st.integers(1, 50), st.just(0))
_RR_OPS = st.one_of(
    _REQ, _SHORT_REQ, _SHORT_REQ, _ACK_NEW, _ACK_NEW, _WRITE, _WRITE, _SHORT_TICK, _SHORT_TICK,
    st.tuples(st.just("dupack"), st.just(0), st.just(0)),
    st.tuples(st.just("sack_ack"), st.integers(0, 1448), st.just(0)),
    st.tuples(st.just("win_ack"), st.integers(0, 1448), st.integers(0, 65535)),
    st.tuples(st.just("win_data"), st.integers(1, 1448), st.sampled_from([0, 1, 512])),
    st.tuples(st.just("ack_beyond"), st.integers(0, 1448), st.integers(1, 1000)),
    st.tuples(st.just("old_ts_ack"), st.integers(0, 1448), st.integers(1, 2**31 - 1)),
    st.tuples(st.just("no_ts_ack"), st.integers(1, 1448), st.integers(1, 4)),
    st.tuples(st.just("data"), st.integers(1, 1448), st.booleans()),
    st.tuples(st.just("read"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 400), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1000, 4000), st.just(0)),     # the RTO fires: recovery
)


def _run(h: _Host, script, batches) -> list:
    data = bytes(range(256)) * 256
    trace = []
    pending = []
    cuts = iter(batches)
    cut = next(cuts, 4)

    def flush():
        nonlocal pending
        if pending:
            h.feed(pending)
            pending = []
        trace.append(h.snapshot())

    for i, (op, n, arg) in enumerate(script):
        payload = data[i % 256:i % 256 + n] if n <= len(data) - 256 else bytes(n)
        if op == "read":
            flush()
            if h.conn.readable:
                h.conn.recv(n or 1)
            trace.append(h.snapshot())
            continue
        if op == "tick":
            flush()
            h.now += arg / 1000 if arg else n / 1000
            h.tcp.poll(h.now)
            trace.append(h.snapshot())
            continue
        if op in ("data", "big"):
            pending.append(h.packet(ACK | (PSH if arg else 0), h.seq, h.ack, payload, h.ts()))
            h.seq = (h.seq + n) & M
        elif op == "ooo":
            pending.append(h.packet(ACK, (h.seq + arg) & M, h.ack, payload, h.ts()))
        elif op == "dup":
            pending.append(h.packet(ACK, (h.seq - arg) & M, h.ack, payload, h.ts()))
        elif op == "old_ts":
            pending.append(h.packet(ACK, h.seq, h.ack, payload, h.ts((h.tsval - arg) & M)))
        elif op == "same_ts":
            pending.append(h.packet(ACK, h.seq, h.ack, payload, h.ts()))
            h.seq = (h.seq + n) & M
        elif op == "window":
            pending.append(h.packet(ACK, h.seq, h.ack, payload, h.ts(), window=arg))
            h.seq = (h.seq + n) & M
        elif op == "ack_unsent":
            pending.append(h.packet(ACK, h.seq, (h.ack + arg) & M, payload, h.ts()))
        elif op == "corrupt":
            p = bytearray(h.packet(ACK, h.seq, h.ack, payload, h.ts()))
            p[52 + arg % n] ^= 0x5A
            pending.append(bytes(p))
        elif op == "sack":
            opts = build_options(ts=(h.tsval, h.ecr), sack_blocks=[(h.ack, (h.ack + 1) & M)])
            pending.append(h.packet(ACK, h.seq, h.ack, payload, opts))
            h.seq = (h.seq + n) & M
        elif op == "no_ts":
            pending.append(h.packet(ACK, h.seq, h.ack, payload, b""))
        elif op == "urg":
            pending.append(h.packet(ACK | URG, h.seq, h.ack, payload, h.ts()))
            h.seq = (h.seq + n) & M
        elif op == "pure_ack":
            pending.append(h.packet(ACK, h.seq, h.ack, b"", h.ts()))
        elif op == "write":
            flush()
            if h.conn.writable:
                h.conn.send(payload[:n])
                h.tcp.poll(h.now)
            trace.append(h.snapshot())
            continue
        elif op in ("req", "ack_new"):
            h.ack = h.acking(arg)
            pending.append(h.packet(ACK | (PSH if n else 0), h.seq, h.ack, payload[:n], h.ts()))
            h.seq = (h.seq + n) & M
        elif op == "dupack":
            pending.append(h.packet(ACK, h.seq, h.ack, b"", h.ts()))
        elif op == "sack_ack":
            flight = (h.sent_max - h.ack) & M
            blocks = [((h.ack + flight // 2) & M, h.sent_max)] if flight > 1 else []
            opts = build_options(ts=(h.tsval, h.ecr), sack_blocks=blocks) if blocks else h.ts()
            pending.append(h.packet(ACK | (PSH if n else 0), h.seq, h.ack, payload[:n], opts))
            h.seq = (h.seq + n) & M
        elif op == "win_ack":
            h.ack = h.acking(4)
            pending.append(h.packet(ACK, h.seq, h.ack, payload[:n], h.ts(), window=arg))
            h.seq = (h.seq + n) & M
        elif op == "win_data":
            pending.append(h.packet(ACK, h.seq, h.ack, payload[:n], h.ts(), window=arg))
            h.seq = (h.seq + n) & M
        elif op == "ack_beyond":
            pending.append(h.packet(ACK, h.seq, (h.sent_max + arg) & M, payload[:n], h.ts()))
        elif op == "old_ts_ack":
            h.ack = h.acking(4)
            pending.append(h.packet(ACK, h.seq, h.ack, payload[:n], h.ts((h.tsval - arg) & M)))
        elif op == "no_ts_ack":
            h.ack = h.acking(arg)
            pending.append(h.packet(ACK, h.seq, h.ack, payload[:n], b""))
            h.seq = (h.seq + n) & M
        h.tsval = (h.tsval + 1) & M
        if len(pending) >= cut:
            flush()
            cut = next(cuts, 4)
    flush()
    pending.append(h.packet(ACK | FIN, h.seq, h.ack, b"", h.ts()))
    flush()
    trace.append(h.conn.recv(1 << 22) if h.conn.readable else b"")
    trace.append({k: v for k, v in h.counters.snapshot().items()})
    return trace


@settings(max_examples=150, deadline=None)
@given(script=st.lists(_OPS, min_size=1, max_size=60), batches=st.lists(st.integers(1, 12), max_size=20),
       isn=st.sampled_from([0, 0xFFFFF000, 0x7FFFFF00, 12345]), rcvbuf=st.sampled_from([65536, 262144]))
def test_fast_and_full_paths_agree(script, batches, isn, rcvbuf):
    mp = pytest.MonkeyPatch()
    try:
        fast = _run(_Host(True, mp, isn, rcvbuf), script, batches)
        full = _run(_Host(False, mp, isn, rcvbuf), script, batches)
    finally:
        mp.undo()
    assert fast == full


def test_in_order_segments_take_the_fast_path_and_the_others_leave_it(monkeypatch):
    taken = []
    real = Connection.fast_path

    def spy(self, *a):
        r = real(self, *a)
        taken.append(r)
        return r

    monkeypatch.setattr(Connection, "fast_path", spy)
    h = _Host(True, monkeypatch, 1000, 262144)
    n0 = h.counters.get("tcp.in_segs")
    seg = bytes(1000)
    packets = [h.packet(ACK, (h.seq + k * 1000) & M, h.ack, seg, h.ts()) for k in range(4)]
    h.feed(packets)                                            # four in order: all predicted
    assert taken == [True] * 4 and h.conn.readable == 4000
    h.seq = (h.seq + 4000) & M
    taken.clear()
    cases = [
        h.packet(ACK, (h.seq + 1000) & M, h.ack, seg, h.ts()),                 # out of order
        h.packet(ACK, h.seq, h.ack, seg, h.ts((h.tsval - 5) & M)),             # PAWS: older TSval
        h.packet(ACK, h.seq, (h.ack + 10) & M, seg, h.ts()),                   # ACKs data never sent
        h.packet(ACK, h.seq, h.ack, seg, h.ts(), window=600),                  # window changes
    ]
    for p in cases:
        h.feed([p])
    assert taken and not any(taken)                            # offered (again by on_segment), refused
    # the window change's data is in order: taken by the full path, with the held segment behind it
    assert h.conn.readable == 6000 and h.conn.rcv.nxt == (h.seq + 2000) & M
    assert h.counters.get("tcp.in_segs") == n0 + 4 + 4
    assert h.counters.get("tcp.in.drop.paws") == 1 and h.counters.get("tcp.in.drop.ack_unsent") == 1


def _callbacks(h: _Host, kind: str) -> None:
    """A synchronous on_event that acts on the connection from inside the receive path."""
    c = h.conn
    seen = [0]
    written = [0]

    def cb(ev):
        if kind.startswith("writable_"):
            if ev is not ConnEvent.WRITABLE:
                return
            written[0] += 1
            if kind == "writable_writer" and written[0] % 2 and c.writable:
                c.send(b"more" * 50)
            elif kind == "writable_closer" and written[0] == 3:
                c.close()
            elif kind == "writable_aborter" and written[0] == 3:
                c.abort()
            return
        if ev is not ConnEvent.READABLE:
            return
        seen[0] += 1
        if kind == "replier":                  # an SMTP server: read the command, answer it
            c.recv(1 << 20)
            if seen[0] % 5 == 0:
                c.send(b"354 go ahead\r\n" * 200)
            else:
                c.send(b"250 2.1.0 Ok\r\n")
            return
        if kind == "reader" and seen[0] % 3 == 0:
            c.recv(1000)
        elif kind == "echo" and seen[0] % 4 == 0:
            c.send(b"pong" * 100)
        elif kind == "closer" and seen[0] == 7:
            c.recv(1 << 20)
            c.close()

    c.on_event = cb


@pytest.mark.parametrize("kind", ["reader", "echo", "closer"])
def test_fast_and_full_paths_agree_with_a_callback_acting_on_the_connection(kind, monkeypatch):
    script = [("data", 1448, 0)] * 20 + [("data", 700, 1)] * 5
    hosts = [_Host(True, monkeypatch, 5, 262144), _Host(False, monkeypatch, 5, 262144)]
    for h in hosts:
        _callbacks(h, kind)
    fast, full = (_run(h, script, [8, 12, 5]) for h in hosts)
    assert fast == full


@pytest.mark.parametrize("script", [
    [("big", 16000, 0)] * 6,                                     # in order, beyond the window: trimmed
    [("data", 1448, 0)] * 50 + [("read", 30000, 0)] + [("data", 1448, 1)] * 30,
    [("data", 1448, 0), ("tick", 300, 0), ("data", 1448, 0), ("data", 1448, 0)],   # delayed ACK fires
    [("data", 1448, 0), ("dup", 1000, 1448), ("data", 1448, 0)],                   # D-SACK on the next ACK
])
def test_fast_and_full_paths_agree_on_these(script, monkeypatch):
    fast = _run(_Host(True, monkeypatch, 5, 65536), script, [3])
    full = _run(_Host(False, monkeypatch, 5, 65536), script, [3])
    assert fast == full


@settings(max_examples=150, deadline=None)
@given(script=st.lists(_RR_OPS, min_size=8, max_size=60), batches=st.lists(st.integers(1, 12), max_size=20),
       isn=st.sampled_from([0, 0xFFFFF000, 0x7FFFFF00, 12345]),
       kind=st.sampled_from([None, "replier", "replier", "writable_writer", "writable_closer", "writable_aborter"]))
def test_fast_and_full_paths_agree_on_requests_that_acknowledge_replies(script, batches, isn, kind):
    mp = pytest.MonkeyPatch()
    try:
        hosts = [_Host(True, mp, isn, 262144), _Host(False, mp, isn, 262144)]
        if kind is not None:
            for h in hosts:
                _callbacks(h, kind)
        fast, full = (_run(h, script, batches) for h in hosts)
    finally:
        mp.undo()
    assert fast == full


#: An SMTP-like exchange: each request acknowledges the last reply (the server answers from its
#: READABLE callback), with pure ACKs, bulk replies, timers and a retransmission timeout in between.
_EXCHANGE = ([("req", 40, 4), ("write", 300, 0), ("tick", 3, 0), ("ack_beyond", 10, 5)]
             + [("req", 40, 4), ("tick", 3, 0), ("req", 60, 4), ("ack_new", 0, 4), ("req", 200, 2), ("req", 30, 4),
                ("write", 5000, 0), ("tick", 20, 0), ("ack_new", 0, 2), ("tick", 150, 0), ("req", 100, 4),
                ("tick", 40, 0)] * 4
             + [("write", 3000, 0), ("tick", 3000, 0), ("req", 50, 4), ("req", 50, 4), ("ack_new", 0, 4)] * 2
             + [("write", 6000, 0), ("tick", 5, 0), ("dupack", 0, 0), ("dupack", 0, 0), ("dupack", 0, 0),
                ("tick", 5, 0), ("ack_new", 0, 1), ("req", 20, 2), ("ack_new", 0, 4), ("req", 30, 4)])


def test_requests_acknowledging_replies_take_the_fast_path(monkeypatch):
    taken = []
    real = Connection.fast_path

    def spy(self, seq, ack, *a):
        acked_new = ack != self.snd.una
        r = real(self, seq, ack, *a)
        taken.append((acked_new, r))
        return r

    monkeypatch.setattr(Connection, "fast_path", spy)
    h = _Host(True, monkeypatch, 77, 262144)
    _callbacks(h, "replier")
    _run(h, _EXCHANGE, [1])
    # data and pure ACKs of new data (not those of a tail loss probe's episode: the full path's)
    assert sum(1 for new, r in taken if new and r) >= 10
    assert h.conn.rto.samples >= 12                                # RTT samples
    assert h.counters.get("tcp.rto_expirations") >= 1              # the exchange did leave the path


def test_fast_and_full_paths_agree_on_an_smtp_like_exchange(monkeypatch):
    hosts = [_Host(True, monkeypatch, 77, 262144), _Host(False, monkeypatch, 77, 262144)]
    for h in hosts:
        _callbacks(h, "replier")
    fast, full = (_run(h, _EXCHANGE, [1, 3, 2]) for h in hosts)
    assert fast == full


#: Deliberate faults in the fast path's ACK processing, each of which the comparison must catch:
#: (text in Connection.fast_path, its broken replacement).
_MUTANTS = [
    ("self.rto.sample(rtt)", "pass"),                                          # no RTT sample
    ("self.cc.on_ack(acked, rtt, now, ack=ack, flight=flight, snd_max=snd.max)", "pass"),  # no cwnd growth
    ("timers.arm(_RETRANSMIT, now + self.rto.rto)", "pass"),                  # the RTO not restarted
    ("timers.stop(_RETRANSMIT)", "pass"),                                      # the RTO not stopped
    ("recovery.arm_tlp(now)", "pass"),                                         # no TLP
    ("recovery.after_ack(now, acked, False)", "pass"),                         # RACK not told
    ("self._event(_EV_WRITABLE)", "pass"),                                     # no WRITABLE
    ("self.bytes_acked += acked", "pass"),
    ("recovery.new_ack()", "pass"),
    ("if acked >= HALF or ((snd.max - ack) & MASK) >= HALF:", "if acked >= HALF:"),   # beyond SND.MAX
    ("self.cc.in_recovery or recovery.recovering or recovery.frto", "recovery.frto"),   # in recovery
    ("or recovery.tlp_end is not None)", ")"),                                 # in a TLP episode
    ("rtt = neg.rtt_from_ecr(ecr, now)", "rtt = neg.rtt_from_ecr(ecr, now) + 0.001"),
    ("freed = snd.acknowledge(ack)", "freed = snd.acknowledge(ack); snd.una = (ack - 1) & MASK"),
]


def _mutant(old: str, new: str):
    import inspect
    import textwrap

    from netstack.tcp import connection

    src = textwrap.dedent(inspect.getsource(Connection.fast_path))
    assert src.count(old) == 1, old
    code = compile(src.replace(old, new), connection.__file__, "exec")
    ns = dict(vars(connection))
    exec(code, ns)
    return ns["fast_path"]


@pytest.mark.parametrize("old,new", _MUTANTS, ids=[m[0][:40] for m in _MUTANTS])
def test_a_broken_fast_path_is_caught(old, new, monkeypatch):
    broken = _mutant(old, new)
    fast_h = _Host(True, monkeypatch, 77, 262144)
    full_h = _Host(False, monkeypatch, 77, 262144)
    for h in (fast_h, full_h):
        _callbacks(h, "replier")
    full = _run(full_h, _EXCHANGE, [1, 3, 2])
    fast_h.mp.setattr(Connection, "fast_path", broken)
    try:
        fast = _run(fast_h, _EXCHANGE, [1, 3, 2])
    except Exception:
        return                                   # the broken path fell over: caught as well
    assert fast != full


@pytest.mark.parametrize("script", [
    # data that acknowledges nothing new while SACK recovery runs: RACK and PRR still see the ACK
    [("req", 1, 4)] * 4 + [("sack_ack", 1, 0), ("req", 1, 0), ("req", 1, 4), ("req", 1, 4)],
    # a zero window, a probe, then data while our reply waits (the persist timer)
    [("req", 1, 4), ("win_ack", 1, 0), ("tick", 300, 0), ("win_data", 5, 0), ("tick", 600, 0), ("win_data", 5, 0),
     ("win_ack", 1, 512), ("req", 30, 4)],
], ids=["sack-recovery", "zero-window"])
def test_fast_and_full_paths_agree_on_data_acknowledging_nothing_new_while_ours_is_out(script, monkeypatch):
    hosts = [_Host(True, monkeypatch, 0, 262144), _Host(False, monkeypatch, 0, 262144)]
    for h in hosts:
        _callbacks(h, "replier")
    fast, full = (_run(h, script, []) for h in hosts)
    assert fast == full
