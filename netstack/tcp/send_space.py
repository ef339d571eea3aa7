"""The send sequence space and the send buffer (RFC 9293 §3.3.1, Figure 3).

::

         1         2          3          4
    ----------|----------|----------|----------
           SND.UNA    SND.NXT    SND.UNA
                                +SND.WND
    1 - old sequence numbers that have been acknowledged
    2 - sequence numbers of unacknowledged data
    3 - sequence numbers allowed for new data transmission
    4 - future sequence numbers that are not yet allowed

``SendSpace`` keeps those variables, plus SND.MAX (the highest sequence
number ever sent: after a go-back-N retransmission SND.NXT lags it), the
largest window the peer ever offered (for sender SWS avoidance), SND.SML
(Minshall's Nagle), the FIN we queued, the send MSS, and the
:class:`~netstack.tcp.buffers.SendBuffer` that holds every unacknowledged
and unsent byte, indexed by sequence number.  It does no I/O and knows
nothing of timers or congestion: it answers questions about sequence space.
"""
from __future__ import annotations

from .buffers import SendBuffer
from .seq import MASK, seq_diff

#: RFC 9293 §3.7.1: the send MSS when the peer announced none (IPv4).
DEFAULT_PEER_MSS = 536


class SendSpace:
    __slots__ = ("iss", "una", "nxt", "max", "wnd", "wl1", "wl2", "max_wnd", "sml", "wscale",
                 "mss", "max_segment", "buf", "fin_queued", "fin_seq")

    def __init__(self, capacity: int, max_segment: int | None = None) -> None:
        self.iss = 0
        self.una = 0              #: SND.UNA: oldest unacknowledged sequence number
        self.nxt = 0              #: SND.NXT: next sequence number to send
        self.max = 0              #: SND.MAX: highest sequence number sent (go-back-N after an RTO)
        self.wnd = 0              #: SND.WND: the peer's window, already scaled, bytes
        self.wl1 = 0              #: SND.WL1: SEG.SEQ of the last window update
        self.wl2 = 0              #: SND.WL2: SEG.ACK of the last window update
        self.max_wnd = 0          #: largest window the peer ever offered (RFC 1122 §4.2.3.4)
        self.sml = 0              #: SND.SML: end of the last small segment sent (Minshall's Nagle)
        self.wscale = 0           #: shift applied to the peer's window field (RFC 7323 §2.3)
        self.mss = DEFAULT_PEER_MSS   #: effective send MSS: payload bytes per segment
        self.max_segment = max_segment  #: largest payload per segment (TSO); None = ``mss``
        self.buf = SendBuffer(capacity)
        self.fin_queued = False   #: the user closed the sending side
        self.fin_seq = 0          #: sequence number of our FIN (valid if fin_queued)

    def start(self, iss: int) -> None:
        """Choose the ISS (RFC 9293 §3.4.1): the SYN occupies ISS, data starts at ISS+1."""
        self.iss = self.una = self.sml = iss
        self.nxt = self.max = (iss + 1) & MASK
        self.buf.seq = self.nxt

    @property
    def segment_size(self) -> int:
        """Largest payload one outgoing segment may carry."""
        return self.max_segment or self.mss

    @property
    def in_flight(self) -> int:
        """Sequence space sent and not yet acknowledged (SND.MAX - SND.UNA)."""
        return seq_diff(self.max, self.una)

    def unsent(self, seq: int) -> int:
        """Bytes queued at or after ``seq`` (negative if ``seq`` is past the buffered data)."""
        buf = self.buf
        return len(buf.data) - seq_diff(seq, buf.seq)

    def fin_pending(self, seq: int) -> bool:
        """Our FIN is queued and not yet sent from ``seq``'s point of view."""
        return self.fin_queued and self.unsent(seq) >= 0 and seq_diff(seq, self.fin_seq) <= 0

    def fin_acked(self, ack: int) -> bool:
        """``ack`` covers our FIN."""
        return self.fin_queued and seq_diff(ack, self.fin_seq) > 0

    def queue_fin(self) -> None:
        """CLOSE: the FIN takes the sequence number after the last queued byte."""
        self.fin_queued = True
        self.fin_seq = self.buf.end_seq

    def advance(self, seq: int, length: int) -> None:
        """A segment covering ``length`` from ``seq`` went out: move SND.NXT (and SND.MAX)."""
        nxt = self.nxt = (seq + length) & MASK
        if seq_diff(nxt, self.max) > 0:
            self.max = nxt

    def acknowledge(self, ack: int) -> int:
        """A new cumulative ACK (SND.UNA < ack <= SND.MAX): returns the data bytes freed."""
        self.una = ack
        if seq_diff(self.nxt, ack) < 0:
            self.nxt = ack
        return self.buf.ack(ack)

    def update_window(self, seq: int, ack: int, wnd: int) -> bool:
        """RFC 9293 §3.10.7.4 fifth: take the window if SND.WL1 < SEG.SEQ, or WL1 = SEQ and
        WL2 =< ACK.  ``wnd`` is already scaled.  True if the window changed."""
        if seq_diff(self.wl1, seq) < 0 or (self.wl1 == seq and seq_diff(self.wl2, ack) <= 0):
            changed = wnd != self.wnd
            self.set_window(wnd, seq, ack)
            return changed
        return False

    def set_window(self, wnd: int, wl1: int, wl2: int) -> None:
        self.wnd = wnd
        if wnd > self.max_wnd:
            self.max_wnd = wnd
        self.wl1 = wl1
        self.wl2 = wl2

    def nagle_holds(self, nxt: int) -> bool:
        """Nagle's algorithm, Minshall's variant (RFC 896; RFC 1122 §4.2.3.4; Minshall et al.,
        draft-minshall-nagle; Linux tcp_minshall_check).

        Classic Nagle (RFC 896) holds a sub-MSS segment while *any* data is
        unacknowledged.  That stalls request/response protocols whose
        messages are a little over one MSS: the full segment goes out, the
        tail waits for its ACK, and the receiver delays that ACK because only
        one full-sized segment arrived (RFC 1122 §4.2.3.2): one delayed-ACK
        timeout per message.  Minshall's variant holds a small segment only
        while a previously sent *small* segment is still unacknowledged:
        SND.SML (the end of the last small segment sent) is beyond SND.UNA.
        There is still at most one small segment in flight per RTT, which is
        the property Nagle exists for.

        Holds iff SND.UNA < SND.SML <= SND.NXT (modulo 2^32; the upper bound
        makes a stale SND.SML from more than 2^31 bytes ago harmless).
        """
        sml = self.sml
        return seq_diff(sml, self.una) > 0 and seq_diff(sml, nxt) <= 0
