"""Two TCPLayers back to back through a simulated lossy / reordering / duplicating channel
(fake clock).  Data must arrive intact (sha256) both ways, with a plausible number of
retransmissions, and both ends must close properly."""
import pytest

from netstack.tcp import State, TCPConfig
from tests.support.tcp_netsim import B_ADDR, Sim, Stream


def transfer(size, *, isn_a=None, isn_b=None, config_a=None, config_b=None, close=True,
             read_every=None, **channel):
    sim = Sim(config_a=config_a, config_b=config_b, **channel)
    if isn_a is not None:
        sim.a._isn = lambda conn, now: isn_a
    if isn_b is not None:
        sim.b._isn = lambda conn, now: isn_b
    lst = sim.b.listen(7)
    ca = sim.a.connect(B_ADDR, 7, sim.now)
    box = {}
    ab, ba = Stream(size, 1), Stream(size, 2)
    last_read = [0.0]

    def app():
        if "b" not in box:
            c = lst.accept()
            if c:
                box["b"] = c
        cb = box.get("b")
        if ca.established:
            ab.pump_send(ca)
        if cb:
            ba.pump_send(cb)
        if read_every is None or sim.now - last_read[0] >= read_every:
            last_read[0] = sim.now
            if ca.established:
                ba.pump_recv(ca)
            if cb:
                ab.pump_recv(cb)

    sim.run(lambda: ab.received == size and ba.received == size, app=app, max_time=5000)
    cb = box["b"]
    assert ab.rx_hash.hexdigest() == ab.tx_hash
    assert ba.rx_hash.hexdigest() == ba.tx_hash
    if close:
        ca.close()
        cb.close()
        sim.run(lambda: ca.state in (State.TIME_WAIT, State.CLOSED) and cb.state is State.CLOSED
                or cb.state is State.TIME_WAIT and ca.state is State.CLOSED
                or ca.state is State.TIME_WAIT and cb.state is State.TIME_WAIT, max_time=sim.now + 300)
        assert ca.error is None and cb.error is None
    return sim, ca, cb


def test_clean_channel_2mb_both_ways_no_retransmissions():
    sim, ca, cb = transfer(2_000_000)
    assert ca.recovery.retrans_segs == 0 and cb.recovery.retrans_segs == 0
    assert sim.ca.get("tcp.retrans_segs") == 0


def test_lossy_reordering_duplicating_channel_10mb_both_ways():
    sim, ca, cb = transfer(10_000_000, loss=0.10, reorder=0.10, dup=0.01, seed=7)
    ch = sim.ch
    assert ch.lost > 1000 and ch.reordered > 1000 and ch.duplicated > 100
    retrans = ca.recovery.retrans_segs + cb.recovery.retrans_segs
    lost_data = ch.lost_data
    # every lost data segment needs at least one retransmission; go-back-N after an RTO
    # may resend some that were not lost, but not wildly more
    assert lost_data <= retrans <= 3 * lost_data
    assert sim.ca.get("tcp.in.ooo_segs") > 0 and sim.ca.get("tcp.fast_retransmits") > 0


def test_transfer_across_sequence_wrap_both_directions():
    sim, ca, cb = transfer(3_000_000, isn_a=0xFFFFFFFF - 5000, isn_b=0xFFFF0000,
                           loss=0.02, reorder=0.05, seed=3)
    assert ca.snd.iss == 0xFFFFFFFF - 5000
    assert ca.snd.max < 0x80000000 and cb.snd.max < 0x80000000   # both wrapped past 2**32


def test_small_windows_slow_reader_zero_window_recovery():
    cfg = TCPConfig(rcvbuf=8192, wscale=None)
    sim, ca, cb = transfer(300_000, config_a=cfg, config_b=cfg, read_every=0.5, loss=0.02, seed=5)
    assert sim.ca.get("tcp.window_probes") + sim.cb.get("tcp.window_probes") > 0
    assert ca.snd.wnd <= 8192 and cb.snd.wnd <= 8192


def test_no_timestamps_no_wscale_no_sack_peers():
    cfg = TCPConfig(timestamps=False, wscale=None, sack=False, rcvbuf=64 * 1024)
    sim, ca, cb = transfer(1_000_000, config_a=cfg, config_b=cfg, loss=0.05, reorder=0.05, seed=11)
    assert not ca.neg.ts_enabled and ca.snd.mss == 1460
