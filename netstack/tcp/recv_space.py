"""The receive sequence space, the receive buffer and the out-of-order queue (RFC 9293 §3.3.1, Figure 4).

::

             1          2          3
         ----------|----------|----------
                RCV.NXT    RCV.NXT
                          +RCV.WND
    1 - old sequence numbers that have been acknowledged
    2 - sequence numbers allowed for new reception
    3 - future sequence numbers that are not yet allowed

``ReceiveSpace`` keeps RCV.NXT, the right edge we last advertised (RCV.NXT
+ RCV.WND, which never moves left), Last.ACK.sent (RFC 7323 §4.3), our
window shift and receive MSS, the :class:`~netstack.tcp.buffers.ReceiveBuffer`
of in-order bytes the user has not read, and the
:class:`~netstack.tcp.buffers.OutOfOrderQueue` of bytes beyond a hole.

  RFC 9293 §3.10.7.4 first     acceptable(): the segment acceptability test
  RFC 9293 §3.8.6.2.2          advertise(): receiver-side SWS avoidance
  RFC 9293 §3.8.6, RFC 7323    advertise(): the right edge never moves left
  RFC 1122 §4.2.3.3            window_update_due(): after the user reads
  RFC 2883 §4                  note_duplicate(): the D-SACK block the next ACK reports first
"""
from __future__ import annotations

from .buffers import OutOfOrderQueue, ReceiveBuffer
from .seq import MASK, seq_diff


class ReceiveSpace:
    __slots__ = ("irs", "nxt", "adv", "last_ack_sent", "wscale", "mss", "buf", "ooo", "fin_received", "dsack")

    def __init__(self, capacity: int, ooo_limit: int, mss: int) -> None:
        self.irs = 0                #: IRS: the peer's initial sequence number
        self.nxt = 0                #: RCV.NXT: next sequence number expected
        self.adv = 0                #: RCV.NXT + RCV.WND as last advertised (never moves left)
        self.last_ack_sent = 0      #: Last.ACK.sent (RFC 7323 §4.3)
        self.wscale = 0             #: shift applied to the window field we send
        self.mss = mss              #: what we expect per full-sized segment
        self.buf = ReceiveBuffer(capacity)
        self.ooo = OutOfOrderQueue(ooo_limit)
        self.fin_received = False   #: the peer's FIN arrived in order
        self.dsack: tuple[int, int] | None = None   #: D-SACK block not yet reported (RFC 2883)

    def start(self, irs: int) -> None:
        """The peer's SYN arrived: RCV.NXT = IRS + 1."""
        self.irs = irs
        self.nxt = (irs + 1) & MASK

    @property
    def wnd(self) -> int:
        """RCV.WND: what is left of the window we advertised (never negative)."""
        w = seq_diff(self.adv, self.nxt)
        return w if w > 0 else 0

    @property
    def free(self) -> int:
        """Buffer space not holding unread data."""
        f = self.buf.capacity - len(self.buf.data)
        return f if f > 0 else 0

    def syn_window(self) -> int:
        """The window of our SYN or SYN-ACK (never scaled, RFC 7323 §2.2); it sets the right edge."""
        wnd = min(self.free, 65535)
        self.adv = (self.nxt + wnd) & MASK
        return wnd

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
        moves left (RFC 9293 §3.8.6: shrinking the window is discouraged).
        Returns the unscaled field value.
        """
        rcv_nxt = self.nxt
        capacity = self.buf.capacity
        free = capacity - len(self.buf.data)
        if free < 0:
            free = 0
        cur = seq_diff(self.adv, rcv_nxt)
        if cur < 0:
            cur = 0
        mss = self.mss
        if free - cur >= ((capacity >> 1) if (capacity >> 1) < mss else mss):
            max_wnd = 65535 << self.wscale
            if free > max_wnd:
                free = max_wnd
            self.adv = (rcv_nxt + free) & MASK
            cur = free
        field = cur >> self.wscale
        return field if field <= 65535 else 65535

    def window_update_due(self) -> bool:
        """The user consumed data: does the window open enough to tell the peer (RFC 1122 §4.2.3.3)?"""
        free = self.free
        cur = self.wnd
        return free - cur >= min(self.buf.capacity >> 1, 2 * self.mss) or cur < self.mss <= free

    # -- D-SACK (RFC 2883) --------------------------------------------------------------------
    def note_duplicate(self, seq: int, n: int) -> None:
        """Bytes [seq, seq+n) arrived that we already hold: the next ACK's first SACK block
        reports them (RFC 2883 §4, one block per duplicate segment: the latest wins)."""
        if n > 0:
            self.dsack = (seq, (seq + n) & MASK)

    def take_in_order(self, payload, n: int) -> bool:
        """Append ``n`` in-order bytes at RCV.NXT, then whatever the out-of-order queue
        now continues.  True if that filled a hole (RFC 5681 §4.2: ACK at once)."""
        self.buf.data += payload
        rcv_nxt = (self.nxt + n) & MASK
        filled = False
        ooo = self.ooo
        if ooo.ranges:
            for chunk in ooo.pop_ready(rcv_nxt):
                self.buf.data += chunk
                rcv_nxt = (rcv_nxt + len(chunk)) & MASK
            filled = True
        self.nxt = rcv_nxt
        return filled
