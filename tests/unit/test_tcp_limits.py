"""Resource limits (connections, buffer memory, out-of-order bytes, orphans) and TIME-WAIT
reuse (RFC 6191)."""
from __future__ import annotations

import errno

import pytest

from netstack.tcp import State, TCPConfig
from tests.support.tcp_script import PEER, Script


def test_beyond_max_connections_a_syn_gets_an_rst_and_existing_ones_carry_on():
    s = Script(TCPConfig(max_connections=2))
    s.layer.listen(80)
    conns = []
    for port in (5000, 5001):
        s.peer_port = port
        conns.append(s.passive_open()[0])
    s.peer("S", seq=77, sport=5002)
    s.expect("R.", ack=78)
    assert s.counters.get("tcp.limits.refused.connections") == 1
    with pytest.raises(OSError) as ei:
        s.layer.connect(PEER, 9, s.now)
    assert ei.value.errno == errno.ENOBUFS
    s.peer_port = 5000
    s.peer("P.", seq=1001, ack=conns[0].snd.una, data=b"still here")
    assert conns[0].recv(100) == b"still here"


def test_beyond_max_buffer_memory_new_syns_are_refused():
    s = Script(TCPConfig(max_buffer_memory=1000, rcvbuf=4000, wscale=None))
    s.layer.listen(80)
    conn, _ = s.passive_open(ts=None, wscale=None)
    s.peer("P.", seq=1001, ack=conn.snd.una, data=b"x" * 1500)  # unread: 1500 bytes held
    s.sent()
    s.at(2.0)
    s.peer("S", seq=7, sport=5009)
    s.expect("R.", ack=8)
    assert s.counters.get("tcp.limits.refused.memory") == 1
    conn.recv(5000)
    s.at(4.0)                                                    # the sum is refreshed each second
    s.peer("S", seq=7, sport=5010)
    s.expect("S.")


def test_out_of_order_bytes_share_one_bound_across_connections():
    s = Script(TCPConfig(max_ooo_total=3000, ooo_max=100000, wscale=None))
    s.layer.listen(80)
    a, _ = s.passive_open(ts=None, wscale=None)
    s.peer("P.", seq=1001 + 100, ack=a.snd.una, data=b"a" * 2000)      # held beyond a hole
    s.sent()
    s.peer_port = 40001
    b, _ = s.passive_open(ts=None, wscale=None)
    s.peer("P.", seq=1001 + 100, ack=b.snd.una, data=b"b" * 2000)      # over the shared bound
    assert a.rcv.ooo.nbytes == 2000 and b.rcv.ooo.nbytes == 0
    assert s.counters.get("tcp.in.drop.ooo_full") == 1
    s.peer_port = 40000
    s.peer("P.", seq=1001, ack=a.snd.una, data=b"a" * 100)             # fills a's hole
    assert s.layer.ooo_budget.used == 0
    s.peer_port = 40001
    s.peer("P.", seq=1001 + 100, ack=b.snd.una, data=b"b" * 2000)
    assert b.rcv.ooo.nbytes == 2000


def test_orphans_beyond_the_limit_are_reset_on_close():
    s = Script(TCPConfig(max_orphans=1))
    s.layer.listen(80)
    a, _ = s.passive_open()
    s.peer_port = 40001
    b, _ = s.passive_open()
    a.close(); s.poll()
    assert a.state is State.FIN_WAIT_1
    s.sent()
    b.close(); s.poll()
    assert b.state is State.CLOSED
    s.expect("R")
    assert s.counters.get("tcp.limits.orphans_reset") == 1


def _in_time_wait(ts):
    s = Script(TCPConfig(wscale=None))
    s.layer.listen(80)
    conn, synack = s.passive_open(ts=(100, 0) if ts else None, wscale=None)
    us = synack.seq + 1
    conn.close(); s.poll(); s.sent()
    s.peer("F.", seq=1001, ack=us + 1, ts=(150, 0) if ts else None)
    s.sent()
    assert conn.state is State.TIME_WAIT
    return s, conn


def test_a_syn_with_a_newer_timestamp_reuses_time_wait():
    s, old = _in_time_wait(ts=True)
    s.peer("S", seq=500, ts=(200, 0))                            # older seq, newer TSval
    synack = s.expect("S.", ack=501)
    assert old.state is State.CLOSED and s.counters.get("tcp.time_wait_reused") == 1
    assert s.layer.connections[(PEER, 40000, 80)] is not old


def test_a_syn_with_an_old_timestamp_does_not_reuse_time_wait():
    s, old = _in_time_wait(ts=True)
    s.peer("S", seq=5000, ts=(120, 0))                           # TSval older than TS.Recent
    assert old.state is State.TIME_WAIT
    assert s.counters.get("tcp.time_wait_reused") == 0


def test_without_timestamps_a_higher_sequence_number_reuses_time_wait():
    s, old = _in_time_wait(ts=False)
    s.peer("S", seq=1001)                                        # not beyond RCV.NXT (1002)
    assert old.state is State.TIME_WAIT
    s.sent()
    s.peer("S", seq=90000)
    s.expect("S.", ack=90001)
    assert old.state is State.CLOSED
