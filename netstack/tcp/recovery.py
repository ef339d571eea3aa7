"""Loss recovery: where a lost segment gets sent again.

THE RETRANSMISSION TIMER fires in ``Recovery._on_retransmit_timeout`` (its
value comes from rto.py, its deadline lives in ``Connection.timers.retransmit``).

  RFC 6298 §5 / RFC 9293 §3.8.1  _on_retransmit_timeout: back off, go back N, retry limit
  RFC 5681 / RFC 6582            _retransmit_head (fast retransmit, NewReno partial ACK)
  RFC 6675                       _sack_recovery (with the scoreboard of sack.py)
  RFC 8985 §7                    _arm_tlp, _on_tlp_timeout (tail loss probe)
  RFC 1191 §6.2                  on_path_mtu (ICMP "fragmentation needed")

A mixin of Connection (connection.py): the methods use its state directly.
"""
from __future__ import annotations

import errno

from netstack.wire.tcp import ACK, FIN, PSH

from .state import CLOSE_WAIT, ESTABLISHED, SYN_RECEIVED, SYN_SENT, _SEND_STATES

MASK = 0xFFFFFFFF
HALF = 0x80000000
TS_OPTION_LEN = 12


def _diff(a, b):
    return ((a - b + HALF) & MASK) - HALF


class Recovery:
    """Retransmission and loss recovery for Connection."""

    def _retransmit_head(self, now: float) -> int:
        """Retransmit the first unacknowledged segment (fast retransmit / partial ACK / RTO).

        Returns the sequence space it covered (data + FIN)."""
        una = self.snd_una
        buf = self.sndbuf
        avail = len(buf.data) - _diff(una, buf.seq)
        n = min(avail, self.max_segment or self.snd_mss, max(_diff(self.snd_max, una), 0))
        fin = 0
        if self.fin_queued and n == avail and _diff(self.snd_max, self.fin_seq) > 0:
            fin = FIN
        if n <= 0 and not fin:
            return 0
        self._send(now, una, ACK | fin | (PSH if n and n == avail else 0), buf.view(una, n) if n else b"")
        self.retrans_segs += 1
        self.layer._count("tcp.retrans_segs")
        if self.timers.retransmit is None:
            self.timers.retransmit = now + self.rto.rto
        return n + (1 if fin else 0)

    def _sack_recovery(self, now: float) -> None:
        """SACK-based loss recovery (RFC 6675 §5, simplified).

        While pipe < ssthresh: retransmit the next hole below the highest
        SACKed byte (NextSeg rule 1), else send new data (rule 2).
        """
        sb = self.scoreboard
        una = self.snd_una
        buf = self.sndbuf
        maxseg = self.max_segment or self.snd_mss
        if _diff(self.high_rxt, una) < 0:
            self.high_rxt = una
        if (sb.next_hole(self.high_rxt) is None and sb.next_hole(una) is not None
                and _diff(sb.high_sacked, self.rxt_mark) > 0):
            # Lost retransmission: data first sent after our retransmissions was SACKed,
            # yet a retransmitted hole is still open.  Retransmit the holes again
            # (the idea of Linux's tcp_mark_lost_retrans / RACK, RFC 8985 §6.2).
            self.layer._count("tcp.lost_retransmits")
            self.high_rxt = una
            self.rxt_mark = self.snd_max
        pipe = _diff(self.snd_max, una) - sb.sacked_bytes - sb.lost_bytes(self.high_rxt)
        limit = self.cc.ssthresh
        timers = self.timers
        while pipe < limit:
            hole = sb.next_hole(self.high_rxt)
            if hole is not None:
                a, b = hole
                n = min(_diff(b, a), maxseg, len(buf.data) - _diff(a, buf.seq))
                if n <= 0:
                    break
                self._send(now, a, ACK, buf.view(a, n))
                self.retrans_segs += 1
                self.layer._count("tcp.retrans_segs")
                self.high_rxt = (a + n) & MASK
                self.rxt_mark = self.snd_max
                pipe += n
                continue
            snd_nxt = self.snd_nxt
            if snd_nxt != self.snd_max:
                break
            queued = len(buf.data) - _diff(snd_nxt, buf.seq)
            fin_pending = self.fin_queued and queued >= 0 and _diff(snd_nxt, self.fin_seq) <= 0
            usable = _diff(una, snd_nxt) + self.snd_wnd
            n = min(queued, usable, maxseg)
            if n < 0:
                n = 0
            fin = fin_pending and n == queued
            if n == 0 and not fin:
                break
            flags = ACK | (PSH if n and n == queued else 0) | (FIN if fin else 0)
            self._send(now, snd_nxt, flags, buf.view(snd_nxt, n) if n else b"")
            self.snd_nxt = self.snd_max = (snd_nxt + n + (1 if fin else 0)) & MASK
            pipe += n
        if timers.retransmit is None and self.snd_max != self.snd_una:
            timers.retransmit = now + self.rto.rto

    def _arm_tlp(self, now: float) -> None:
        """Schedule a tail loss probe (RFC 8985 §7.2): PTO = 2*SRTT (+ the delayed-ACK
        allowance when one segment is in flight), only if it comes before the RTO."""
        t = self.timers
        srtt = self.rto.srtt
        if (not self.config.tlp or srtt is None or self.tlp_pending or self.cc.in_recovery
                or t.retransmit is None or (self.state is not ESTABLISHED and self.state is not CLOSE_WAIT)):
            t.tlp = None
            return
        pto = max(2 * srtt, 0.01)
        if _diff(self.snd_max, self.snd_una) <= self.snd_mss:
            pto += self.config.delack_timeout
        d = now + pto
        t.tlp = d if d < t.retransmit else None

    def _on_tlp_timeout(self, now: float) -> None:
        """Send the tail loss probe (RFC 8985 §7.3): new data if the window allows,
        else the last segment again, so that the ACK it elicits (with SACK) starts
        fast recovery instead of waiting for the RTO."""
        if (self.cc.in_recovery or self.snd_max == self.snd_una
                or (self.state is not ESTABLISHED and self.state is not CLOSE_WAIT)):
            return
        buf = self.sndbuf
        maxseg = self.max_segment or self.snd_mss
        snd_nxt = self.snd_nxt
        self.tlp_pending = True
        self.layer._count("tcp.tlp_probes")
        unsent = len(buf.data) - _diff(snd_nxt, buf.seq)
        usable = _diff(self.snd_una, snd_nxt) + self.snd_wnd
        if snd_nxt == self.snd_max and unsent > 0 and usable > 0:
            n = min(unsent, maxseg, usable)
            self._send(now, snd_nxt, ACK | (PSH if n == unsent else 0), buf.view(snd_nxt, n))
            self.snd_nxt = self.snd_max = (snd_nxt + n) & MASK
        else:
            end = self.snd_max
            fin = 0
            if self.fin_queued and _diff(end, self.fin_seq) > 0:
                end = self.fin_seq
                fin = FIN
            start = end if _diff(end, self.snd_una) <= maxseg else (end - maxseg) & MASK
            if _diff(end, self.snd_una) <= maxseg:
                start = self.snd_una
            n = _diff(end, start)
            if n <= 0 and not fin:
                return
            self._send(now, start, ACK | PSH | fin, buf.view(start, n) if n > 0 else b"")
            self.retrans_segs += 1
            self.layer._count("tcp.retrans_segs")
        self.timers.retransmit = now + self.rto.rto

    def _on_retransmit_timeout(self, now: float) -> None:
        """THE RETRANSMISSION TIMER FIRED (RFC 6298 §5.4-§5.7, RFC 9293 §3.8.1).

        Retransmit the earliest unacknowledged segment, back off the RTO,
        collapse cwnd (RFC 5681 §3.1), and abort with TimeoutError after the
        configured number of retries (RFC 9293 §3.8.3, R2).
        """
        st = self.state
        self.retries += 1
        self.rto.backoff()
        self.rtt_seq = None                      # Karn: never time a retransmitted segment
        if st is SYN_SENT or st is SYN_RECEIVED:
            if self.retries > self.config.syn_retries:
                self.layer._count("tcp.timeouts")
                if st is SYN_SENT:
                    self.layer._count("tcp.attempt_fails")
                self._fail(TimeoutError(errno.ETIMEDOUT, "connection timed out (no SYN-ACK)" if st is SYN_SENT
                                        else "handshake timed out"), "timeout")
                return
            self.syn_retransmitted = True
            self.retrans_segs += 1
            self.layer._count("tcp.retrans_segs")
            self._send_syn(now, synack=st is SYN_RECEIVED)
            return
        if self.snd_max == self.snd_una:
            return
        if self.retries > self.config.data_retries:
            self.layer._count("tcp.timeouts")
            self.layer._send_rst_for(self, self.snd_nxt)
            self._fail(TimeoutError(errno.ETIMEDOUT, "connection timed out (retransmission limit)"), "timeout")
            return
        self.layer._count("tcp.rto_expirations")
        self.cc.on_timeout(now, flight=_diff(self.snd_max, self.snd_una), snd_max=self.snd_max)
        self.dupacks = 0
        if self.retries >= 2:
            self.scoreboard.clear()              # the peer may have reneged (RFC 2018 §8)
        una = self.snd_nxt = self.snd_una        # go back N (RFC 5681 §3.1 loss window)
        self._output(now)
        if self.snd_nxt == una:
            # Nothing was sendable (e.g. the window shrank): retransmit the head anyway.
            self.snd_nxt = (una + self._retransmit_head(now)) & MASK
        self.timers.retransmit = now + self.rto.rto

    def on_path_mtu(self, mtu: int, now: float) -> None:
        """Path MTU discovery (RFC 1191 §6.2): a router said our segments are too big."""
        if mtu < 68:
            return
        mss = mtu - 40 - (TS_OPTION_LEN if self.ts_enabled else 0)
        if mss >= self.snd_mss:
            return
        self.snd_mss = max(mss, 8)
        if self.max_segment and self.max_segment > self.snd_mss:
            self.max_segment = None
        self.cc.set_mss(self.snd_mss)
        if self.state in _SEND_STATES and self.snd_max != self.snd_una:
            # the too-big segment was dropped: resend from SND.UNA at the new size (not a loss signal)
            self.snd_nxt = self.snd_una
            self.rtt_seq = None
            self._output(now)
