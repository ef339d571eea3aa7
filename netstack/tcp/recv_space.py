"""The receive sequence space, the receive buffer and the out-of-order queue (RFC 9293 §3.3.1, Figure 4).

::

             1          2          3
         ----------|----------|----------
                RCV.NXT    RCV.NXT
                          +RCV.WND
    1 - old sequence numbers that have been acknowledged
    2 - sequence numbers allowed for new reception
    3 - future sequence numbers that are not yet allowed

``ReceiveSpace`` keeps RCV.NXT and two right edges: ``adv``, the edge the
peer was told (RCV.NXT + RCV.WND as it computes it from our window field:
it never moves left, rounding included), and ``committed``, the edge backed
by free buffer space (window scaling rounds the field up, so ``adv`` may lie
beyond it).  Promised data is stored even a little past the buffer (``room``);
data beyond that is trimmed, not acknowledged, and the peer sends it again.  It
also keeps Last.ACK.sent (RFC 7323 §4.3), our window shift and receive MSS, the :class:`~netstack.tcp.buffers.ReceiveBuffer`
of in-order bytes the user has not read, and the
:class:`~netstack.tcp.buffers.OutOfOrderQueue` of bytes beyond a hole.

  RFC 9293 §3.10.7.4 first     acceptable(): the segment acceptability test
  RFC 9293 §3.8.6.2.2          advertise(): receiver-side SWS avoidance
  RFC 9293 §3.8.6, RFC 7323    advertise(): the right edge never moves left, rounding included
  RFC 1122 §4.2.3.3            window_update_due(): after the user reads
  Linux __tcp_ack_snd_check     ack_may_wait_for_read(): the ACK of a super-segment, until the read
  RFC 2883 §4                  note_duplicate(): the D-SACK block the next ACK reports first
  Linux tcp_rcv_space_adjust    space_adjust(): receive-buffer autotuning (dynamic right-sizing)

Receive-buffer autotuning ("dynamic right-sizing", Linux tcp_rcv_space_adjust): once per
round-trip time, ``space_adjust`` measures the bytes the application consumed in it; when
that is more than any round before, the buffer grows to twice it, up to a maximum (and to
65535 << RCV.WIND.SHIFT: a window field cannot say more, RFC 7323 §2.2, so a connection
without window scaling stays at most 64 KB).  The buffer's ``capacity`` is the one size
every rule here reads, so the window opens through ``advertise``'s usual SWS rule
(RFC 9293 §3.8.6.2.2) and never shrinks: the buffer only grows.
"""
from __future__ import annotations

from .buffers import OutOfOrderQueue, ReceiveBuffer
from .seq import HALF, MASK, seq_diff


#: The shortest measuring interval of the autotuning, seconds: an RTT estimate below it
#: (a handshake on a fast link) would measure single read rounds, and run per segment.
_SPACE_RTT_MIN = 1e-4

#: Window-scale granules of the buffer kept out of the window (see ReceiveSpace.advertise).
_GRANULES_RESERVED = 16


class ReceiveSpace:
    __slots__ = ("irs", "nxt", "adv", "committed", "last_ack_sent", "wscale", "mss", "buf", "ooo", "fin_received",
                 "dsack", "space_max", "space", "space_seq", "space_due")

    def __init__(self, capacity: int, ooo_limit: int, mss: int, ooo_budget=None) -> None:
        self.irs = 0                #: IRS: the peer's initial sequence number
        self.nxt = 0                #: RCV.NXT: next sequence number expected
        self.adv = 0                #: RCV.NXT + RCV.WND as the peer knows it (never moves left)
        self.committed = 0          #: the right edge backed by buffer space (<= adv, >= RCV.NXT)
        self.last_ack_sent = 0      #: Last.ACK.sent (RFC 7323 §4.3)
        self.wscale = 0             #: shift applied to the window field we send
        self.mss = mss              #: what we expect per full-sized segment
        self.buf = ReceiveBuffer(capacity)
        self.ooo = OutOfOrderQueue(ooo_limit, budget=ooo_budget)
        self.fin_received = False   #: the peer's FIN arrived in order
        self.dsack: tuple[int, int] | None = None   #: D-SACK block not yet reported (RFC 2883)
        # Autotuning (space_adjust): off until enable_autotune; space_due is when to measure.
        self.space_max = 0          #: the most the buffer may grow to (0: autotuning off)
        self.space = min(capacity, 10 * mss)   #: most bytes consumed in one RTT so far (Linux rcvq_space)
        self.space_seq = 0          #: the first unread byte's sequence number when this RTT began
        self.space_due = float("inf")   #: when the next measurement is due

    def start(self, irs: int) -> None:
        """The peer's SYN arrived: RCV.NXT = IRS + 1."""
        self.irs = irs
        self.nxt = self.space_seq = (irs + 1) & MASK

    def enable_autotune(self, maximum: int) -> None:
        """Let ``space_adjust`` grow the buffer up to ``maximum`` bytes (it never shrinks it);
        the first measurement starts with the first data."""
        if maximum > self.buf.capacity:
            self.space_max = maximum
            self.space_due = 0.0

    def disable_autotune(self) -> None:
        """The size is fixed from now on (an application set it, as SO_RCVBUF on Linux)."""
        self.space_max = 0
        self.space_due = float("inf")

    def space_adjust(self, now: float, rtt: float) -> None:
        """Receive-buffer autotuning, once per RTT (the caller compares ``now`` with
        ``space_due``; Linux tcp_rcv_space_adjust).  The bytes the application consumed since the
        last measurement: when more than in any RTT before, the buffer grows to twice them (the
        sender's window must hold one RTT of data, and may double in the next one in slow
        start), at most ``space_max`` and 65535 << wscale (RFC 7323 §2.2; 64 KB without
        scaling).  The window opens at the next ACK, by ``advertise``'s SWS rule."""
        buf = self.buf
        if now < self.space_due or not self.space_max:
            return
        first_unread = (self.nxt - len(buf)) & MASK
        copied = (first_unread - self.space_seq) & MASK
        if copied > self.space and copied < HALF:
            self.space = copied
            limit = 65535 << self.wscale
            if self.space_max < limit:
                limit = self.space_max
            want = 2 * copied
            if want > limit:
                want = limit
            if want > buf.capacity:
                buf.capacity = want
                if self.ooo.limit < want:
                    self.ooo.limit = want      # the window's data beyond a hole may be held too
                if want >= limit:
                    self.space_due = float("inf")      # at the most: nothing left to measure
                    return
        self.space_seq = first_unread
        self.space_due = now + (rtt if rtt > _SPACE_RTT_MIN else _SPACE_RTT_MIN)

    @property
    def wnd(self) -> int:
        """RCV.WND: what is left of the window we advertised (never negative)."""
        w = seq_diff(self.adv, self.nxt)
        return w if w > 0 else 0

    @property
    def free(self) -> int:
        """Buffer space not holding unread data."""
        return self.buf.free

    @property
    def room(self) -> int:
        """In-order bytes that may still be stored: the buffer, plus an eighth of it for what
        the window's rounding promised beyond it.  The window itself keeps 16 granules back
        (``advertise``), which usually covers the promises; the slack is there so that
        promised data is not dropped, and data beyond even that is (a peer sending tiny
        segments into a large scale could otherwise make the promises grow without end)."""
        buf = self.buf
        r = buf.capacity + (buf.capacity >> 3) - buf.held - len(buf.data)
        return r if r > 0 else 0

    def syn_window(self) -> int:
        """The window of our SYN or SYN-ACK (never scaled, RFC 7323 §2.2); it sets the right edge."""
        wnd = min(self.free, 65535)
        self.adv = self.committed = (self.nxt + wnd) & MASK
        return wnd

    def start_after_syn(self, irs: int) -> None:
        """SYN-SENT: the peer's SYN arrived; our SYN's window now counts from RCV.NXT = IRS + 1."""
        wnd = seq_diff(self.adv, self.nxt)
        self.start(irs)
        self.adv = self.committed = (self.nxt + wnd) & MASK

    def acceptable(self, seq: int, seg_len: int) -> bool:
        """The segment acceptability test, RFC 9293 §3.10.7.4 first (the table of four cases)."""
        rcv_nxt = self.nxt
        rcv_wnd = self.wnd
        if seg_len == 0:
            if rcv_wnd == 0:
                return seq == rcv_nxt
            return ((seq - rcv_nxt) & MASK) < rcv_wnd
        if rcv_wnd == 0:
            return False
        return (((seq - rcv_nxt) & MASK) < rcv_wnd
                or ((seq + seg_len - 1 - rcv_nxt) & MASK) < rcv_wnd)

    def advertise(self) -> int:
        """The window field to send, with receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2).

        The right edge moves only by at least min(rcvbuf/2, MSS), and never
        moves left (RFC 9293 §3.8.6: shrinking the window is discouraged), not
        even by the rounding of window scaling (RFC 7323 §2.4).  Returns the
        unscaled field value.
        """
        # Runs for every ACK, so computed inline (a difference is read as signed by testing it
        # against HALF, as seq.seq_diff does).  The room the window may offer: the free buffer
        # space, with window scaling less 16 granules kept back as headroom for the rounding up
        # below (each advertisement may promise up to 2^wscale - 1 bytes more, and the promises
        # add up while the window closes), at most a sixteenth of the buffer, as Linux keeps part
        # of its buffer out of the window.  Receiver SWS avoidance (RFC 9293 §3.8.6.2.2): the
        # right edge moves only by at least min(rcvbuf/2, MSS).
        rcv_nxt = self.nxt
        buf = self.buf
        capacity = buf.capacity
        shift = self.wscale
        free = capacity - buf.held - len(buf.data)   # may go negative: then the test below fails
        if shift:
            reserve = _GRANULES_RESERVED * ((1 << shift) - 1)
            free -= reserve if reserve < capacity >> 4 else capacity >> 4
        cur = (self.committed - rcv_nxt) & MASK  # the committed window, 0 if the edge lags RCV.NXT
        if cur >= HALF:
            cur = 0
        half = capacity >> 1
        mss = self.mss
        if free - cur >= (half if half < mss else mss):
            max_wnd = 65535 << shift
            cur = free if free < max_wnd else max_wnd
            self.committed = (rcv_nxt + cur) & MASK
        # The field is rounded up, never down: cur >> wscale would put the edge the peer
        # computes (RCV.NXT + field << wscale) up to 2^wscale - 1 bytes left of the edge
        # already advertised, a shrinking window (RFC 7323 §2.4, RFC 9293 §3.8.6; Linux
        # tcp_select_window aligns up the same way).
        wnd = (self.adv - rcv_nxt) & MASK
        if wnd >= HALF:
            wnd = 0
        if cur > wnd:
            wnd = cur
        field = (wnd + (1 << shift) - 1) >> shift
        if field > 65535:
            field = 65535
        self.adv = (rcv_nxt + (field << shift)) & MASK
        return field

    def _window_room(self) -> int:
        """The room the window may offer, as ``advertise`` computes it inline: the free buffer
        space, less the granules kept back with window scaling (may be negative)."""
        capacity = self.buf.capacity
        free = capacity - self.buf.held - len(self.buf.data)
        shift = self.wscale
        if shift:
            reserve = _GRANULES_RESERVED * ((1 << shift) - 1)
            free -= reserve if reserve < capacity >> 4 else capacity >> 4
        return free

    def ack_may_wait_for_read(self) -> bool:
        """Would an ACK now advertise a smaller window than the last ACK did (its size, from
        Last.ACK.sent to the edge advertised), but still one of an MSS or more?  So it is while
        the application has yet to take what arrived since (the right edge would not advance as
        far as RCV.NXT did; Linux tcp_input.c __tcp_ack_snd_check).  A window closing to less
        than an MSS is not left to the read: the sender must learn of it to start persisting
        (its ACK is due, at the end of the input round: AckPolicy.round_end)."""
        free = self._window_room()
        most = 65535 << self.wscale
        if free > most:
            free = most
        wnd = (self.adv - self.nxt) & MASK          # the edge advertised never moves left
        if wnd >= HALF:
            wnd = 0
        if free > wnd:
            wnd = free
        return self.mss <= wnd < ((self.adv - self.last_ack_sent) & MASK)

    def window_update_due(self) -> bool:
        """The user consumed data: does the window open enough to tell the peer (RFC 1122 §4.2.3.3)?
        Only when ``advertise`` will move the edge (an update with an unchanged window would be
        a duplicate ACK to the peer), and by at least min(rcvbuf/2, 2 * MSS), or from below one MSS."""
        # Runs after every application read: the SWS rule computed inline, as in advertise (the
        # room not below 0).
        capacity = self.buf.capacity
        shift = self.wscale
        free = self._window_room()
        if free < 0:
            free = 0
        cur = (self.committed - self.nxt) & MASK
        if cur >= HALF:
            cur = 0
        half = capacity >> 1
        mss = self.mss
        if free - cur < (half if half < mss else mss):
            return False
        grown = min(free, 65535 << shift)
        if (grown + (1 << shift) - 1) >> shift <= seq_diff(self.adv, self.nxt) >> shift:
            return False                        # the rounded field would not change
        return free - cur >= min(self.buf.capacity >> 1, 2 * self.mss) or cur < self.mss

    # -- D-SACK (RFC 2883) --------------------------------------------------------------------
    def note_duplicate(self, seq: int, n: int) -> None:
        """Bytes [seq, seq+n) arrived that we already hold: the next ACK's first SACK block
        reports them (RFC 2883 §4, one block per duplicate segment: the latest wins)."""
        if n > 0:
            self.dsack = (seq, (seq + n) & MASK)

    def take_in_order(self, payload, n: int) -> bool:
        """Append ``n`` in-order bytes at RCV.NXT, then whatever the out-of-order queue
        now continues.  True if that filled a hole (RFC 5681 §4.2: ACK at once)."""
        self.buf.append(payload)
        rcv_nxt = (self.nxt + n) & MASK
        filled = False
        ooo = self.ooo
        if ooo.ranges:
            for chunk in ooo.pop_ready(rcv_nxt):
                self.buf.append(chunk)
                rcv_nxt = (rcv_nxt + len(chunk)) & MASK
            filled = True
        self.nxt = rcv_nxt
        if seq_diff(self.committed, rcv_nxt) < 0:
            self.committed = rcv_nxt                  # data taken from the rounding allowance
        return filled
