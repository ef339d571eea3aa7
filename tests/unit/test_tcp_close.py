"""Closing: orderly close from either side, simultaneous close, half-close, TIME-WAIT,
abort, RST in synchronized states (RFC 9293 §3.6, §3.10.4, §3.10.5, §3.10.7.4)."""
import pytest

from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ConnEvent
from tests.support.tcp_script import PEER, Script


def opened(cfg=None, ts=False):
    s = Script(cfg)
    conn, synack = s.passive_open(ts=(100, 0) if ts else None, wscale=None)
    return s, conn, synack.seq + 1, 1001


def test_active_close_through_fin_wait_and_time_wait():
    s, conn, us, them = opened(TCPConfig(msl=5.0))
    conn.close()
    assert conn.state is State.FIN_WAIT_1
    s.poll()
    s.expect("F.", seq=us, ack=them)
    s.peer(".", seq=them, ack=us + 1)
    assert conn.state is State.FIN_WAIT_2
    s.peer("F.", seq=them, ack=us + 1)
    s.expect(".", seq=us + 1, ack=them + 1)
    assert conn.state is State.TIME_WAIT and conn.timers.timewait == 10.0     # 2*MSL
    assert (PEER, 40000, 80) in s.layer.connections
    s.at(9.9)
    assert conn.state is State.TIME_WAIT
    s.peer("F.", seq=them, ack=us + 1, win=100)  # retransmitted FIN: re-ACK, restart 2MSL
    s.expect(".", seq=us + 1, ack=them + 1)
    assert conn.timers.timewait == pytest.approx(19.9)
    s.at(19.9)
    assert conn.state is State.CLOSED and conn.events[-1] == ConnEvent.CLOSED
    assert not s.layer.connections
    s.peer("F.", seq=them, ack=us + 1)
    s.expect("R", seq=us + 1)                    # now a closed port


def test_default_time_wait_is_two_msl_of_30s():
    s, conn, us, them = opened()
    conn.close(); s.poll(); s.sent()
    s.peer("F.", seq=them, ack=us + 1)
    assert conn.state is State.TIME_WAIT
    assert conn.timers.timewait == 60.0


def test_passive_close_close_wait_last_ack():
    s, conn, us, them = opened()
    s.peer("F.", seq=them, ack=us, data=b"bye")   # FIN with data
    s.expect(".", ack=them + 4)
    assert conn.state is State.CLOSE_WAIT
    assert list(conn.events)[-2:] == [ConnEvent.READABLE, ConnEvent.EOF]
    assert conn.recv(10) == b"bye" and conn.recv(10) == b"" and conn.at_eof
    conn.send(b"reply")                           # CLOSE-WAIT may still send
    conn.close()
    assert conn.state is State.LAST_ACK
    s.poll()
    s.expect("FP.", seq=us, ack=them + 4, data=b"reply")
    s.peer(".", seq=them + 4, ack=us + 5)
    assert conn.state is State.LAST_ACK
    s.peer(".", seq=them + 4, ack=us + 6)
    assert conn.state is State.CLOSED and not s.layer.connections


def test_simultaneous_close_goes_through_closing():
    s, conn, us, them = opened()
    conn.close(); s.poll()
    s.expect("F.", seq=us)
    s.peer("F.", seq=them, ack=us)                # crossing FIN, ours not acked
    assert conn.state is State.CLOSING
    s.expect(".", seq=us + 1, ack=them + 1)
    s.peer(".", seq=them + 1, ack=us + 1)
    assert conn.state is State.TIME_WAIT


def test_fin_wait_1_fin_ack_of_our_fin_goes_to_time_wait():
    s, conn, us, them = opened()
    conn.close(); s.poll(); s.sent()
    s.peer("F.", seq=them, ack=us + 1)
    assert conn.state is State.TIME_WAIT


def test_half_close_keeps_receiving():
    s, conn, us, them = opened()
    conn.shutdown_write(); s.poll()
    s.expect("F.", seq=us)
    with pytest.raises(BrokenPipeError):
        conn.send(b"x")
    assert conn.writable == 0
    s.peer(".", seq=them, ack=us + 1)
    assert conn.state is State.FIN_WAIT_2
    s.peer("P.", seq=them, ack=us + 1, data=b"still talking")
    assert conn.recv(100) == b"still talking"
    s.peer("F.", seq=them + 13, ack=us + 1)
    assert conn.state is State.TIME_WAIT and conn.recv(1) == b""


def test_fin_retransmitted_on_rto():
    s, conn, us, them = opened()
    conn.close(); s.poll()
    s.expect("F.", seq=us)
    s.at(1.0)
    s.expect("F.", seq=us)
    s.at(3.0)
    s.expect("F.", seq=us)


def test_abort_sends_rst():
    s, conn, us, them = opened()
    conn.send(b"abc"); s.poll(); s.sent()
    conn.abort()
    s.expect("R", seq=us + 3)
    assert conn.state is State.CLOSED and conn.error is None and conn.events[-1] == ConnEvent.CLOSED
    assert not s.layer.connections


def test_close_with_unread_data_resets():
    s, conn, us, them = opened()
    s.peer("P.", seq=them, ack=us, data=b"unread")
    s.sent()
    conn.close()
    s.expect("R", seq=us)
    assert conn.state is State.CLOSED


def test_data_after_close_resets():
    s, conn, us, them = opened()
    conn.close(); s.poll(); s.sent()
    s.peer(".", seq=them, ack=us + 1)
    s.peer("P.", seq=them, ack=us + 1, data=b"late")
    s.expect("R", seq=us + 1)
    assert conn.state is State.CLOSED


def test_orphaned_fin_wait_2_times_out():
    s, conn, us, them = opened(TCPConfig(fin_timeout=5.0))
    conn.close(); s.poll(); s.sent()
    s.peer(".", seq=them, ack=us + 1)
    assert conn.state is State.FIN_WAIT_2
    s.at(5.0)
    assert conn.state is State.CLOSED


def test_shutdown_keeps_fin_wait_2_forever():
    s, conn, us, them = opened(TCPConfig(fin_timeout=5.0))
    conn.shutdown_write(); s.poll(); s.sent()
    s.peer(".", seq=them, ack=us + 1)
    s.at(100.0)
    assert conn.state is State.FIN_WAIT_2


@pytest.mark.parametrize("prep,final", [
    ("established", ConnEvent.RESET), ("fin_wait_1", ConnEvent.RESET), ("fin_wait_2", ConnEvent.RESET),
    ("close_wait", ConnEvent.RESET), ("last_ack", ConnEvent.CLOSED), ("closing", ConnEvent.CLOSED),
])
def test_rst_in_each_synchronized_state(prep, final):
    s, conn, us, them = opened()
    fin_off = 0
    if prep in ("fin_wait_1", "fin_wait_2", "closing", "time_wait"):
        conn.shutdown_write(); s.poll()
        if prep == "fin_wait_2":
            s.peer(".", seq=them, ack=us + 1)
        if prep == "closing":
            s.peer("F.", seq=them, ack=us); fin_off = 1
        if prep == "time_wait":
            s.peer("F.", seq=them, ack=us + 1); fin_off = 1
    if prep in ("close_wait", "last_ack"):
        s.peer("F.", seq=them, ack=us); fin_off = 1
        if prep == "last_ack":
            conn.close(); s.poll()
    s.sent()
    assert conn.state.name == prep.upper()
    s.peer("R", seq=them + fin_off)
    assert conn.state is State.CLOSED
    if final is ConnEvent.RESET:
        assert isinstance(conn.error, ConnectionResetError) and ConnEvent.RESET in conn.events
        assert s.counters.get("tcp.estab_resets") == 1
    else:
        assert conn.error is None
    s.expect_nothing()


def test_recv_after_reset_raises():
    s, conn, us, them = opened()
    s.peer("R", seq=them)
    with pytest.raises(ConnectionResetError):
        conn.recv(10)
    with pytest.raises(ConnectionResetError):
        conn.send(b"x")


def test_recv_blocking_io_when_empty():
    s, conn, us, them = opened()
    with pytest.raises(BlockingIOError):
        conn.recv(10)
    buf = bytearray(4)
    s.peer("P.", seq=them, ack=us, data=b"abcdef")
    assert conn.recv_into(buf) == 4 and buf == b"abcd"
    assert conn.readable == 2


def _blocks(conn) -> bool:
    try:
        conn.recv(1 << 20)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.parametrize("then", ["nothing", "data", "fin", "reset", "close"])
def test_would_block_says_what_recv_would_do(then):
    """Connection.would_block (what the socket transport asks before each recv) is True exactly
    when recv() would raise BlockingIOError."""
    s, conn, us, them = opened()
    if then == "data":
        s.peer("P.", seq=them, ack=us, data=b"abc")
    elif then == "fin":
        s.peer("F.", seq=them, ack=us)
    elif then == "reset":
        s.peer("R", seq=them)
    elif then == "close":
        conn.close()
    expected = then == "nothing"
    assert conn.would_block is expected
    assert _blocks(conn) is expected


def test_errors_carry_errno():
    import errno
    s, conn, us, them = opened()
    s.peer("R", seq=them)
    assert conn.error.errno == errno.ECONNRESET
    with pytest.raises(ConnectionResetError) as ei:
        conn.recv(1)
    assert ei.value.errno == errno.ECONNRESET


def test_keepalive_off_by_default():
    s, conn, us, them = opened()
    assert conn.timers.keepalive is None
    s.at(10000.0)
    s.expect_nothing()


def test_keepalive_probes_and_timeout():
    cfg = TCPConfig(keepalive=True, keepalive_idle=100.0, keepalive_interval=10.0, keepalive_probes=3)
    s, conn, us, them = opened(cfg)
    assert conn.timers.keepalive == pytest.approx(100.0)
    s.at(100.0)
    s.expect(".", seq=us - 1, ack=them)                 # probe: SND.UNA - 1, no data
    s.peer(".", seq=them, ack=us)                       # the peer answers: idle again
    assert conn.timers.keepalive == pytest.approx(200.0)
    for t in (200.0, 210.0, 220.0):
        s.at(t)
        s.expect(".", seq=us - 1)
    s.at(230.0)
    s.expect("R", seq=us)
    assert isinstance(conn.error, TimeoutError) and conn.state is State.CLOSED


def test_keepalive_option_changes_do_not_restart_probing():
    cfg = TCPConfig(keepalive=True, keepalive_idle=100.0, keepalive_interval=10.0, keepalive_probes=3)
    s, conn, us, them = opened(cfg)
    s.at(100.0)
    s.expect(".", seq=us - 1)                            # first probe
    conn.set_keepalive(True, count=5)                    # TCP_KEEPCNT while probing
    s.poll()
    assert conn.timers.keepalive == pytest.approx(110.0) and conn.sender.keepalive_probes == 1
    conn.set_keepalive(True, idle=50.0)                  # TCP_KEEPIDLE while probing: also left alone
    s.poll()
    assert conn.timers.keepalive == pytest.approx(110.0)
