"""Receive-buffer autotuning ("dynamic right-sizing", Linux tcp_rcv_space_adjust;
ReceiveSpace.space_adjust): a bulk receiver whose application reads promptly grows its window
RTT after RTT up to ``rcvbuf_max``; one that does not read keeps its buffer; the advertised
right edge never moves left (RFC 9293 §3.8.6); autotuning off (or SO_RCVBUF) keeps the fixed
size; without window scaling the window stays within 65535 (RFC 7323 §2.2)."""
from __future__ import annotations

from netstack.tcp import TCPConfig
from netstack.tcp.recv_space import ReceiveSpace

from tests.support.tcp_script import Script

MSS = 1460
RTT = 0.01          # the scripted peer's round trip: one window of data per round


def _cfg(**kw) -> TCPConfig:
    base = dict(rcvbuf=64 * 1024, rcvbuf_max=1024 * 1024, ooo_max=64 * 1024)
    base.update(kw)
    return TCPConfig(**base)


class Bulk:
    """A peer that sends, each round trip, as much as our advertised window allows, in
    full-sized segments; we ACK; the application reads all of it (or nothing)."""

    def __init__(self, config: TCPConfig, *, wscale=7, read=True):
        self.s = Script(config)
        self.conn, synack = self.s.passive_open(wscale=wscale)
        self.shift = 7 if wscale is not None and config.wscale is not None else 0
        self.seq = self.s.peer_isn + 1
        self.edge = self.seq + synack.window        # the SYN-ACK's window is not scaled
        self.edges = [self.edge]
        self.fields = [synack.window]
        self.read = read
        self.tsval = self.s.peer_ts
        self.got = 0

    def round(self) -> None:
        s = self.s
        s.after(RTT)
        self.tsval += 10
        while self.seq + MSS <= self.edge:
            s.peer(".", seq=self.seq, ack=s.our_isn + 1, data=b"d" * MSS, ts=(self.tsval, 0))
            self.seq += MSS
        if self.read:
            self.got += len(self.conn.recv())
        s.poll()
        for seg in s.sent():
            assert seg.ack <= self.seq + 1
            edge = seg.ack + (seg.window << self.shift)
            assert edge >= self.edges[-1], "the advertised right edge moved left"
            self.edges.append(edge)
            self.fields.append(seg.window)
            self.edge = edge

    def run(self, rounds: int) -> "Bulk":
        for _ in range(rounds):
            self.round()
        return self

    @property
    def window(self) -> int:
        """The window the last ACK advertised, counted from what the peer has sent."""
        return self.edge - self.seq

    @property
    def rcvbuf(self) -> int:
        return self.conn.info()["rcvbuf"]


def test_a_prompt_reader_grows_its_window_up_to_the_maximum_and_not_beyond():
    b = Bulk(_cfg())
    b.run(3)
    early = b.window
    b.run(12)
    assert b.got > 0
    assert b.rcvbuf == 1024 * 1024                       # grown up to rcvbuf_max, not beyond
    assert early < b.window
    assert b.window > 900 * 1024                          # the window follows the buffer
    b.run(5)
    assert b.rcvbuf == 1024 * 1024
    assert b.window <= 1024 * 1024


def test_the_window_grows_over_several_rtts_not_at_once():
    b = Bulk(_cfg(rcvbuf_max=4 * 1024 * 1024))
    sizes = []
    for _ in range(14):
        b.round()
        sizes.append(b.rcvbuf)
    grown = sorted(set(sizes))
    assert len(grown) >= 4                                # 64K -> ... -> 4M in steps
    assert all(later <= 2 * earlier + 2 * MSS * 64 for earlier, later in zip(grown, grown[1:]))
    assert sizes[-1] == 4 * 1024 * 1024


def test_an_application_that_does_not_read_keeps_its_buffer():
    idle = Bulk(_cfg(), read=False).run(10)
    assert idle.rcvbuf == 64 * 1024
    assert idle.window < MSS                              # it filled the buffer, nothing more
    assert idle.conn.readable <= 64 * 1024 + (64 * 1024 >> 3)
    reader = Bulk(_cfg()).run(10)
    assert reader.rcvbuf > 64 * 1024                      # the same traffic, read: it grows


def test_autotune_off_keeps_the_fixed_size():
    fixed = Bulk(_cfg(rcvbuf_autotune=False)).run(10)
    tuned = Bulk(_cfg()).run(10)
    assert fixed.rcvbuf == 64 * 1024 and fixed.conn.info()["rcvbuf_autotune"] is False
    assert fixed.got > 10 * 60 * 1024                      # it did read, round after round
    assert fixed.window <= 64 * 1024
    assert tuned.rcvbuf > fixed.rcvbuf


def test_set_rcvbuf_stops_the_autotuning_of_that_connection():
    b = Bulk(_cfg())
    b.run(2)
    b.conn.set_rcvbuf(512 * 1024)
    b.run(10)
    assert b.rcvbuf == 512 * 1024
    assert b.conn.info()["rcvbuf_autotune"] is False
    other = Bulk(_cfg()).run(12)
    assert other.rcvbuf == 1024 * 1024


def test_set_rcvbuf_does_not_take_back_what_the_window_promised():
    b = Bulk(_cfg())
    b.run(4)
    promised = b.conn.readable + b.conn.info()["rcv_wnd"]
    assert promised > 64 * 1024                           # the window grew
    b.conn.set_rcvbuf(16 * 1024)
    assert b.rcvbuf >= promised                           # no shrinking window (RFC 9293 §3.8.6)
    b.run(3)                                              # (the edges are checked to never move left)


def test_without_window_scaling_the_buffer_grows_to_64k_at_most():
    b = Bulk(_cfg(rcvbuf=16 * 1024), wscale=None).run(12)
    assert b.conn.info()["wscale_ok"] is False
    assert b.rcvbuf == 65535                              # grown, but only to what the field can say
    assert max(b.fields) <= 65535
    assert b.window <= 65535


def test_the_growth_is_capped_by_what_the_window_scale_can_say():
    r = ReceiveSpace(64 * 1024, 64 * 1024, MSS)
    r.wscale = 2
    r.start(999)
    r.syn_window()
    r.enable_autotune(8 * 1024 * 1024)
    now = 0.0
    r.space_adjust(now, RTT)                              # the first measurement starts
    for _ in range(10):
        now += RTT
        n = r.free
        r.take_in_order(b"x" * n, n)
        r.buf.read()
        r.space_adjust(now, RTT)
        r.advertise()
    assert r.buf.capacity == 65535 << 2
    assert r.ooo.limit == 65535 << 2                      # data beyond a hole may fill the window too


def test_no_measurement_before_an_rtt_has_passed():
    r = ReceiveSpace(64 * 1024, 64 * 1024, MSS)
    r.wscale = 7
    r.start(999)
    r.enable_autotune(1 << 20)
    r.space_adjust(0.0, RTT)
    r.take_in_order(b"x" * 60000, 60000)
    r.buf.read()
    r.space_adjust(RTT / 2, RTT)                          # too early: nothing measured
    assert r.buf.capacity == 64 * 1024
    r.space_adjust(RTT, RTT)
    assert r.buf.capacity == 120000                       # twice what was consumed in the RTT


def test_ss_shows_the_receive_buffer_size_as_it_grows():
    from netstack.sockets.table import format_info

    b = Bulk(_cfg())
    assert "rcvbuf:65536" in format_info(b.conn.info()).split()
    b.run(12)
    assert "rcvbuf:1048576" in format_info(b.conn.info()).split()
    b.conn.set_rcvbuf(2 << 20)
    assert "rcvbuf_fixed:2097152" in format_info(b.conn.info()).split()
