"""A Connection needs nothing but its declared host (host.py's ConnectionHost): driven
here by a fake host that records what comes out, with no TCPLayer."""
from netstack.tcp import State, TCPConfig
from netstack.tcp.connection import Connection
from netstack.tcp.events import RecoveryKind, StateChange, UserCall, UserCause
from netstack.tcp.negotiation import SynOptions
from netstack.tcp.timers import Timer
from netstack.wire.tcp import ACK, SYN, parse_tcp, tcp_segment
from netstack.wire.tcp_options import build_options

US, PEER = 0xC0000201, 0xC0000202


class FakeHost:
    """Implements ConnectionHost and records every call."""

    def __init__(self):
        self.now = 0.0
        self.emitted = []
        self.resets = []
        self.counts = {}
        self.flushes = []
        self.established_conns = []
        self.closed_conns = []
        self.changes = []
        self.recovery_events = []

    def emit(self, conn, seq, ack, flags, window, payload, ts, sack_blocks, syn):
        self.emitted.append(dict(seq=seq, ack=ack, flags=flags, window=window, payload=bytes(payload),
                                 ts=ts, sack_blocks=sack_blocks, syn=syn))

    def emit_ack(self, conn, seq, ack, flags, window, tsval, tsecr):
        self.emit(conn, seq, ack, flags, window, b"", (tsval, tsecr), None, None)
        return True

    def send_reset(self, conn, seq, ack, flags):
        self.resets.append((seq, ack, flags))

    def count(self, name, n=1):
        self.counts[name] = self.counts.get(name, 0) + n

    def want_flush(self, conn):
        self.flushes.append(conn)

    def established(self, conn):
        self.established_conns.append(conn)

    def closed(self, conn):
        self.closed_conns.append(conn)

    def transition(self, conn, change):
        self.changes.append(change)

    def recovery_event(self, conn, event):
        self.recovery_events.append(event)


def active(cfg=None):
    host = FakeHost()
    host.now = 1.0
    conn = Connection(host, US, 50000, PEER, 80, cfg or TCPConfig(), ts_offset=0)
    conn.open_active(5000, 1.0)
    return host, conn


def established():
    """An active open completed by the peer's SYN-ACK (no options but MSS 1200) at 1.2."""
    host, conn = active(TCPConfig(timestamps=False, wscale=None, sack=False))
    raw = tcp_segment(src=PEER, dst=US, src_port=80, dst_port=50000, seq=9000, ack=5001,
                      flags=SYN | ACK, window=4000, options=build_options(mss=1200), payload=b"")
    host.now = 1.2
    conn.on_segment(parse_tcp(bytes(raw), src=PEER, dst=US), 1.2)
    return host, conn


def test_open_active_emits_one_syn_with_options_and_arms_the_retransmission_timer():
    host, conn = active(TCPConfig(mss=1400, wscale=7, sack=True, timestamps=True, rto_initial=1.0))
    assert len(host.emitted) == 1
    syn = host.emitted[0]
    assert syn["flags"] == SYN and syn["seq"] == 5000 and syn["payload"] == b""
    assert syn["syn"] == SynOptions(mss=1400, wscale=7, sack_permitted=True, ts=(1000, 0))
    assert conn.timers.holds(Timer.RETRANSMIT) and conn.timers.retransmit == 2.0
    assert conn.state is State.SYN_SENT
    assert host.changes == [StateChange(1.0, State.CLOSED, State.SYN_SENT, UserCause(UserCall.OPEN))]
    assert list(conn.transitions) == host.changes


def test_syn_ack_through_the_fake_host_establishes_and_acks():
    host, conn = established()
    assert conn.state is State.ESTABLISHED
    ack = host.emitted[-1]
    assert (ack["seq"], ack["ack"], ack["flags"], ack["syn"]) == (5001, 9001, ACK, None)
    assert conn.snd.mss == 1200 and not conn.timers.holds(Timer.RETRANSMIT)
    assert host.established_conns == []          # only a passive open is announced to the host


def test_user_calls_ask_the_host_for_a_flush_and_flush_sends():
    host, conn = established()
    n = len(host.emitted)
    assert conn.send(b"hello") == 5
    assert host.flushes == [conn] and len(host.emitted) == n     # nothing sent without a "now"
    conn.flush(1.3)
    assert host.emitted[-1]["payload"] == b"hello" and host.emitted[-1]["seq"] == 5001


def test_abort_resets_through_the_host_and_reports_closed():
    host, conn = established()
    conn.abort()
    assert host.resets and host.resets[0][0] == 5001
    assert host.closed_conns == [conn] and conn.state is State.CLOSED
    assert host.changes[-1].cause == UserCause(UserCall.ABORT)


def test_a_retransmission_timeout_is_reported_through_the_host():
    host, conn = established()
    conn.send(b"x" * 3000)
    conn.flush(1.3)
    first = conn.timers.retransmit
    host.now = first
    conn.on_timer(first)
    assert [e.kind for e in host.recovery_events] == [RecoveryKind.RTO]
    ev = host.recovery_events[0]
    assert ev.time == first and ev.retries == 1 and ev.cwnd == conn.snd.mss and ev.snd_una == 5001
    assert ev.rto == conn.rto.rto and host.counts["tcp.rto_expirations"] == 1


def test_a_syn_retransmission_timeout_is_reported_through_the_host():
    host, conn = active()
    host.now = 2.0
    conn.on_timer(2.0)
    assert [(e.kind, e.retries, e.snd_una) for e in host.recovery_events] == [(RecoveryKind.RTO, 1, 5000)]
