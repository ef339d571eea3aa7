"""When to acknowledge: delayed ACK and quick-ACK (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2,
RFC 5681 §4.2), with Linux's quick-ACK mode and adaptive delayed-ACK timeout.

* An ACK is due at once (``due``) for out-of-order or duplicate data, a
  filled hole, a FIN, a window update, and every second full-sized segment
  (counted in bytes, so one large GRO segment counts for several).
* A GSO super-segment (larger than the receive MSS) that the application has
  not read yet is ACKed when it reads, as Linux does (tcp_input.c
  ``__tcp_ack_snd_check``: at once only if "right edge of window advances far
  enough", else ``tcp_cleanup_rbuf`` ACKs after ``recvmsg``): an ACK now would
  shrink the window by what just arrived, and the read that follows within
  the same loop turn re-opens it, so one ACK carries both, and one ACK may
  cover the super-segments of one read.  If the application does not read,
  the delayed-ACK timer sends it (within ``ato``, RFC 9293 §3.8.6.3's
  < 0.5 s).  A super-segment's ACK that may not wait (the window closing
  below one MSS: the sender must learn of it to persist; or a window that
  would not shrink) is due at once, but ``round_end``: it leaves at the end
  of the input round, in the same loop turn, after the application's
  callbacks of that round, so that a read there re-opens the window in the
  same ACK instead of a second one right behind it
  (``ConnectionHost.flush_after_input``).  Segments up to the MSS keep the
  every-second-segment rule, their ACK at once.
* Quick-ACK mode: the first data segments after the handshake, and after
  the receiver was idle longer than the RTO, are ACKed at once
  (:meth:`AckPolicy.enter_quickack`), so that a sender in slow start, or one
  whose Nagle is waiting for this ACK, does not sit out a timer.
* Interactive ("pingpong") mode, as Linux's: once we send data within ``ato``
  of receiving some (:meth:`AckPolicy.on_data_sent`), or data arrives that
  follows data we sent (the peer answers us, as a client answers an SMTP
  greeting), the connection is in request/response mode.  Then quick-ACK is not used, not even after idle:
  the request's ACK waits for the delayed-ACK timer and rides on the reply
  that follows within it.  A timer that fires nonetheless (the reply took
  longer) ends the mode (Linux tcp_delack_timer_handler).  The trade-off is
  Linux's: a peer that writes a request in two small writes with Nagle on
  waits up to ``ato`` for the ACK of the first.  ``TCPConfig.pingpong``
  turns the mode off.
* Otherwise the delayed-ACK timer runs for ``ato``.  ``ato`` adapts to the
  spacing of arriving data (Linux tcp_event_data_recv): closely spaced data
  pulls it towards ``delack_min``; it doubles each time the timer expires
  (:meth:`AckPolicy.on_timeout`); it stays within [``delack_min``,
  ``delack_timeout``] (<= 200 ms, RFC 1122's < 0.5 s).

The policy only decides; the connection's sender sends the ACK and clears ``due``.
"""
from __future__ import annotations

from .config import TCPConfig
from .seq import MASK


class AckPolicy:
    __slots__ = ("config", "_count", "due", "round_end", "ato", "quickack", "last_data", "pingpong", "spoke")

    def __init__(self, config: TCPConfig, count) -> None:
        self.config = config
        self._count = count             #: the host's counter increment (``tcp.quickacks``)
        self.due = False                #: an ACK must go out on the next flush
        #: the ACK ``due`` may leave at the end of the input round rather than inside it (module doc)
        self.round_end = False
        self.ato = min(config.delack_min, config.delack_timeout)   #: current delayed-ACK timeout
        self.quickack = 0               #: data segments still to ACK at once (quick-ACK mode)
        self.last_data = None           #: when in-order data last arrived (idle detection)
        self.pingpong = False           #: interactive (request/response) mode
        self.spoke = False              #: we sent data since data last arrived

    def enter_quickack(self, rcv_wnd: int, rcv_mss: int) -> None:
        """Enter quick-ACK mode (Linux tcp_incr_quickack): the next rcv_wnd / (2 * MSS)
        data segments, at least 2 and at most ``quickack_segments``, are ACKed at once."""
        most = self.config.quickack_segments
        if most <= 0:
            return
        n = rcv_wnd // (2 * rcv_mss)
        if n < 2:
            n = 2
        if n > most:
            n = most
        if n > self.quickack:
            self.quickack = n

    def on_data(self, now: float, rcv, rto: float, seg_len: int = 0) -> float | None:
        """In-order data arrived in the receive space ``rcv`` (its RCV.NXT already moved), the
        last ``seg_len`` bytes of it in one segment.  Returns the delayed-ACK deadline to arm, or
        None (the ACK is ``due`` now, or a delayed-ACK timer already runs).  Reads RCV.NXT,
        Last.ACK.sent, the window and the receive MSS of ``rcv``."""
        cfg = self.config
        last = self.last_data
        self.last_data = now
        if self.spoke:
            self.spoke = False
            if not self.pingpong and cfg.pingpong:
                self.pingpong = True                           # the peer answers what we sent
                self._count("tcp.pingpong")
        # Data in the same instant as the last (a batch of segments read at once) with ``ato``
        # already at delack_min changes nothing below (``ato`` never exceeds delack_timeout): skipped.
        if last is not None and (now != last or self.ato != cfg.delack_min):
            m = now - last
            ato = self.ato
            lo = cfg.delack_min
            if m <= lo * 0.5:
                ato = ato * 0.5 + lo * 0.5
            elif m < ato:
                ato = ato * 0.5 + m
            elif m > rto and not self.pingpong:
                self.enter_quickack(rcv.wnd, rcv.mss)          # idle longer than the RTO
            if ato < lo:
                ato = lo
            hi = cfg.delack_timeout
            self.ato = hi if ato > hi else ato                 # the maximum wins over the minimum
        if self.due:
            return None
        if self.quickack and not self.pingpong:
            self.quickack -= 1
            self._count("tcp.quickacks")
            self.due = True
            return None
        if (rcv.nxt - rcv.last_ack_sent) & MASK >= 2 * rcv.mss:     # (RCV.NXT never lags Last.ACK.sent)
            if seg_len <= rcv.mss:
                self.due = True                                # every second full-sized segment
                return None
            if not rcv.ack_may_wait_for_read():
                self.due = True                                # at once, but after the round's reads
                self.round_end = True
                return None
            # A super-segment the application has not taken yet: its ACK waits for the read
            # (Connection._after_user_read), which re-opens the window it would shrink, or for
            # the timer (module doc).
        return now + self.ato

    def on_data_sent(self, now: float) -> None:
        """We sent data: if it follows received data within ``ato``, it answers it, and the
        connection is in interactive mode (Linux tcp_event_data_sent / pingpong)."""
        self.spoke = True
        last = self.last_data
        if not self.pingpong and last is not None and now - last < self.ato and self.config.pingpong:
            self.pingpong = True
            self._count("tcp.pingpong")

    def on_timeout(self) -> None:
        """The delayed-ACK timer fired: nothing to piggyback on came in time, so the peer's data
        is sparser than ``ato`` assumed; the next timeout doubles (Linux tcp_delack_timer_handler).
        In interactive mode the reply did not come in time: leave it, with the minimum ``ato``."""
        self.due = True
        if self.pingpong:
            self.pingpong = False
            cfg = self.config
            self.ato = min(cfg.delack_min, cfg.delack_timeout)   # (the maximum wins, as in on_data)
            return
        ato = self.ato * 2
        hi = self.config.delack_timeout
        self.ato = hi if ato > hi else ato
