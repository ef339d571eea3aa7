"""The sending side of a connection: what goes out, and when.

  RFC 9293 §3.8.6.2.1, RFC 1122 §4.2.3.4, RFC 896   _output: segmentation at MSS (or
                                                    max_segment for TSO), sender SWS
                                                    avoidance, Nagle (Minshall's variant,
                                                    _nagle_holds), FIN with data
  RFC 3042                                          limited transmit (in _output)
  RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17             _on_persist_timeout: zero-window probes
  RFC 1122 §4.2.3.6                                 keep-alive probes
  RFC 7323 / RFC 2018                               _send: timestamps and SACK options

A mixin of Connection (connection.py): the methods use its state directly.
"""
from __future__ import annotations

import errno
import struct

from netstack.wire.tcp import ACK, FIN, PSH
from netstack.wire.tcp_options import build_options

from .state import CLOSE_WAIT, ESTABLISHED, _SEND_STATES

MASK = 0xFFFFFFFF
HALF = 0x80000000

_NNTS = struct.Struct("!III")
_NNTS_WORD = 0x0101080A


def _diff(a, b):
    return ((a - b + HALF) & MASK) - HALF


class Sender:
    """Output, persist and keep-alive for Connection."""

    def _send_ack(self, now: float) -> None:
        # A pure ACK carries SND.MAX, not SND.NXT: after a go-back-N retransmission
        # SND.NXT lags what the peer already has, and an ACK numbered below the
        # peer's RCV.NXT would fail its acceptability test (BSD tcp_output does the same).
        self._send(now, self.snd_max, ACK, b"")

    def _send(self, now: float, seq: int, flags: int, payload) -> None:
        """Emit one segment carrying ACK of RCV.NXT (all segments after the SYN do)."""
        wnd = self._advertised_window()
        if self.sack_ok and self.ooo.ranges and (k := self._sack_blocks_that_fit(len(payload))):
            # RFC 2018 §4: report the out-of-order blocks we hold (3 fit beside timestamps)
            ts = self.ts_enabled
            opts = build_options(ts=((int(now * 1000) + self.ts_offset) & MASK, self.ts_recent) if ts else None,
                                 sack_blocks=self.ooo.blocks(self.rcv_nxt, k))
        elif self.ts_enabled:
            opts = _NNTS.pack(_NNTS_WORD, (int(now * 1000) + self.ts_offset) & MASK, self.ts_recent)
        else:
            opts = b""
        rcv_nxt = self.rcv_nxt
        self.layer._emit(self, seq, rcv_nxt, flags, wnd, opts, payload)
        self.last_ack_sent = rcv_nxt
        self._ack_now = False
        self.unacked_segs = 0
        self.timers.delack = None

    def _sack_blocks_that_fit(self, payload_len: int) -> int:
        """How many SACK blocks this segment may carry without growing past the path MTU.

        SND.MSS already leaves room for the timestamps option only (RFC 6691: the
        MSS counts no options, so options come out of the payload's budget).  A
        pure ACK has room for all (3 beside timestamps, else 4: RFC 2018 §3); a
        full-sized data segment has none, and carries just the timestamps (the
        next pure ACK reports the blocks).  A segment larger than the MSS is a
        TSO super-segment, cut to size by the offload.
        """
        most = 3 if self.ts_enabled else 4
        if payload_len == 0 or payload_len > self.snd_mss:
            return most
        room = self.snd_mss - payload_len          # option bytes beyond the timestamps
        return min(most, (room - 4) // 8) if room >= 12 else 0

    def _output(self, now: float) -> None:
        """Send new data and FIN as the windows allow (RFC 9293 §3.8.6.2.1, RFC 1122 §4.2.3.4, RFC 896).

        Sender SWS avoidance: a segment goes out if it is full-sized, or it
        carries all queued data and Nagle (``_nagle_holds``, Minshall's
        variant) lets it go or TCP_NODELAY is set, or it is at least half the
        largest window the peer ever offered.  The FIN goes with the last data.
        """
        buf = self.sndbuf
        maxseg = self.max_segment or self.snd_mss
        mss = self.snd_mss
        timers = self.timers
        sb = self.scoreboard
        if sb.blocks and self.cc.in_recovery:
            self._sack_recovery(now)
            return
        while True:
            snd_nxt = self.snd_nxt
            if sb.blocks and _diff(snd_nxt, self.snd_max) < 0:
                # go-back-N after an RTO: skip what the peer SACKed (RFC 6675 §5.1)
                end = sb.sacked_end(snd_nxt)
                if end is not None:
                    self.snd_nxt = end
                    continue
            off = _diff(snd_nxt, buf.seq)
            queued = len(buf.data) - off
            fin_pending = self.fin_queued and queued >= 0 and _diff(snd_nxt, self.fin_seq) <= 0
            if queued <= 0 and not fin_pending:
                break
            wnd = self.snd_wnd
            cwnd = self.cc.cwnd
            if self.dupacks and not self.cc.in_recovery:
                # Limited transmit (RFC 3042): one new segment per each of the first two
                # duplicate ACKs, so a small window still produces three of them.
                cwnd += min(self.dupacks, 2) * mss
            if cwnd < wnd:
                wnd = cwnd
            usable = _diff(self.snd_una, snd_nxt) + wnd
            n = queued
            if n > usable:
                n = usable if usable > 0 else 0
            if n > maxseg:
                n = maxseg
            if sb.blocks and _diff(snd_nxt, self.snd_max) < 0:
                hole = sb.next_hole(snd_nxt)
                if hole is not None and _diff(hole[1], snd_nxt) < n:
                    n = _diff(hole[1], snd_nxt)
            fin = fin_pending and n == queued
            if n == 0 and not fin:
                break
            if fin and n == 0 and usable <= 0 and self.snd_wnd == 0:
                break        # the FIN needs a window too; the persist timer will probe
            retrans = _diff(snd_nxt, self.snd_max) < 0
            if n < mss and not fin and not retrans:
                if n < queued:
                    # Window-limited: SWS avoidance (RFC 1122 §4.2.3.4)
                    if n < (self.max_sndwnd >> 1) or n <= 0:
                        break
                elif not self.nodelay and self._nagle_holds(snd_nxt):
                    break    # Nagle: a small segment is already outstanding
            flags = ACK
            if n and n == queued:
                flags |= PSH
            if fin:
                flags |= FIN
            if n:
                self._send(now, snd_nxt, flags, buf.view(snd_nxt, n))
            else:
                self._send(now, snd_nxt, flags, b"")
            if retrans:
                self.retrans_segs += 1
                self.layer._count("tcp.retrans_segs")
            elif self.rtt_seq is None and not self.ts_enabled:
                self.rtt_seq = snd_nxt
                self.rtt_time = now
            if 0 < n < mss and not retrans:
                self.snd_sml = (snd_nxt + n) & MASK    # Minshall: end of the last small segment
            snd_nxt = self.snd_nxt = (snd_nxt + n + (1 if fin else 0)) & MASK
            if _diff(snd_nxt, self.snd_max) > 0:
                self.snd_max = snd_nxt
            if timers.retransmit is None:
                timers.retransmit = now + self.rto.rto
            if timers.persist is not None:
                timers.persist = None
            if not retrans and timers.tlp is None:
                self._arm_tlp(now)
        if self.snd_max == self.snd_una and timers.persist is None and (
                len(buf.data) or (self.fin_queued and _diff(self.snd_nxt, self.fin_seq) <= 0)):
            # Unsent data, nothing in flight, and the window (zero, or too small to pass
            # the SWS test) stopped us: the persist timer probes a zero window
            # (RFC 9293 §3.8.6.1) and is the SWS override timeout (RFC 1122 §4.2.3.4).
            timers.retransmit = None
            timers.persist = now + self._persist_interval()

    def _nagle_holds(self, snd_nxt: int) -> bool:
        """Nagle's algorithm, Minshall's variant (RFC 896; RFC 1122 §4.2.3.4; Minshall et al.,
        draft-minshall-nagle; Linux tcp_minshall_check).

        Classic Nagle (RFC 896) holds a sub-MSS segment while *any* data is
        unacknowledged.  That stalls request/response protocols whose
        messages are a little over one MSS: the full segment goes out, the
        tail waits for its ACK, and the receiver delays that ACK because only
        one full-sized segment arrived (RFC 1122 §4.2.3.2) -- one
        delayed-ACK timeout per message.  Minshall's variant holds a small
        segment only while a previously sent *small* segment is still
        unacknowledged: SND.SML (the end of the last small segment sent) is
        beyond SND.UNA.  Full-sized segments in flight no longer hold the
        tail, and there is still at most one small segment in flight per
        RTT, which is the property Nagle exists for (RFC 1122 §4.2.3.4
        allows this: "a TCP SHOULD implement the Nagle Algorithm" and the
        variant keeps its limit on tinygrams).

        Holds iff SND.UNA < SND.SML <= SND.NXT (modulo 2^32; the upper bound
        makes a stale SND.SML from more than 2^31 bytes ago harmless).
        """
        sml = self.snd_sml
        return _diff(sml, self.snd_una) > 0 and _diff(sml, snd_nxt) <= 0

    def _persist_interval(self) -> float:
        cfg = self.config
        base = max(self.rto.rto, cfg.persist_min)
        return min(base * (1 << min(self.persist_backoff, 16)), cfg.persist_max)

    def _on_persist_timeout(self, now: float) -> None:
        """Zero-window probe (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17): one byte beyond the window."""
        if self.state not in _SEND_STATES:
            return
        buf = self.sndbuf
        una = self.snd_una
        if self.snd_wnd != 0:
            # SWS override: send what the (small) window allows, even if under the SWS bound.
            usable = _diff(una, self.snd_nxt) + self.snd_wnd
            avail = len(buf.data) - _diff(self.snd_nxt, buf.seq)
            n = min(usable, avail, self.max_segment or self.snd_mss)
            if n > 0 and self.snd_nxt == una:
                self._send(now, una, ACK | PSH, buf.view(una, n))
                self.snd_nxt = self.snd_max = (una + n) & MASK
                if self.timers.retransmit is None:
                    self.timers.retransmit = now + self.rto.rto
            return
        self.layer._count("tcp.window_probes")
        avail = len(buf.data) - _diff(una, buf.seq)
        if avail > 0:
            self._send(now, una, ACK, buf.view(una, 1))
            if self.snd_nxt == una:
                self.snd_nxt = (una + 1) & MASK
                if _diff(self.snd_nxt, self.snd_max) > 0:
                    self.snd_max = self.snd_nxt
        elif self.fin_queued:
            self._send(now, una, ACK | FIN, b"")
            if self.snd_nxt == una:
                self.snd_nxt = self.snd_max = (una + 1) & MASK
        else:
            return
        self.persist_backoff += 1
        self.probes_unanswered += 1
        if self.probes_unanswered > self.config.data_retries:
            # RFC 1122 §4.2.2.17: probing may go on indefinitely while the peer
            # answers; a peer that answers nothing at all is dead.
            self.layer._count("tcp.timeouts")
            self.layer._send_rst_for(self, self.snd_nxt)
            self._fail(TimeoutError(errno.ETIMEDOUT, "connection timed out (zero-window probes unanswered)"), "timeout")
            return
        self.timers.persist = now + self._persist_interval()

    def _arm_keepalive(self, now: float) -> None:
        """Something arrived: the peer is alive; the next probe is an idle period away."""
        self.keepalive_probes = 0
        if self.state is ESTABLISHED or self.state is CLOSE_WAIT:
            self.timers.keepalive = now + self.config.keepalive_idle
        else:
            self.timers.keepalive = None

    def _on_keepalive_timeout(self, now: float) -> None:
        """Send a keep-alive probe: <SEQ=SND.UNA-1> with no data, which any live peer
        must ACK as unacceptable (RFC 1122 §4.2.3.6); abort after too many."""
        cfg = self.config
        if not self.keepalive or (self.state is not ESTABLISHED and self.state is not CLOSE_WAIT):
            return
        if self.snd_max != self.snd_una or self.timers.persist is not None:
            # data in flight: the retransmission/persist machinery watches the peer
            self.timers.keepalive = now + cfg.keepalive_interval
            return
        if self.keepalive_probes >= cfg.keepalive_probes:
            self.layer._count("tcp.keepalive_timeouts")
            self.layer._send_rst_for(self, self.snd_nxt)
            self._fail(TimeoutError(errno.ETIMEDOUT, "connection timed out (keep-alive)"), "timeout")
            return
        probes = self.keepalive_probes + 1
        self.layer._count("tcp.keepalive_probes")
        self._send(now, (self.snd_una - 1) & MASK, ACK, b"")
        self.keepalive_probes = probes
        self.timers.keepalive = now + cfg.keepalive_interval
