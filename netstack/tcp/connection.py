"""One TCP connection: the RFC 9293 state machine, sans-I/O.

A Connection is driven from two sides:

* the network: ``on_segment(seg, now)`` with a parsed TCPSegment (the
  TCPLayer demultiplexes to it), and ``on_timer(now)`` when one of its
  timers (timers.py) is due;
* the user: ``send``, ``recv``, ``recv_into``, ``shutdown_write``,
  ``close``, ``abort``.  User calls never transmit directly (they have no
  ``now``): they mark the connection as needing output and the layer flushes
  it on the next ``TCPLayer.poll(now)``, or right away during
  ``on_datagram``/``poll`` if called from an event callback.

What comes out: segments (through the layer's outbox), events (``on_event``
callback, also recorded in ``events``), and deadlines (``next_deadline()``).

Reading guide (RFC section -> where):
  §3.3.2 the eleven states         state.py
  §3.10.1 OPEN (active)            TCPLayer.connect -> Connection.open_active
  §3.10.7.2 LISTEN, SYN arrives    listener.py -> Connection.open_passive
  §3.10.7.3 SYN-SENT               Connection._on_segment_syn_sent
  §3.10.7.4 other states           Connection._on_segment_sync: PAWS (RFC 7323 §5),
                                   acceptability (_acceptable), RST (_on_rst), SYN,
                                   ACK (_process_ack), text and FIN (_process_text_and_fin,
                                   _process_fin); header prediction: _predicted
                                   (TCPLayer.on_datagram calls it from the raw header)
  §3.8.6.3 delayed ACK, quick-ACK  Connection._data_ack_policy, _incr_quickack,
                                   _on_delack_timeout
  §3.8.6.2.2 receiver SWS          Connection._advertised_window, _after_user_read
  RFC 7323 / 2018 negotiation      Connection._negotiate, _syn_options
  sending, Nagle, sender SWS,      sender.py (Sender._output, _send, _on_persist_timeout,
  persist, keep-alive                         _on_keepalive_timeout)
  retransmission timer (RFC 6298), recovery.py (Recovery._on_retransmit_timeout,
  fast retransmit, SACK recovery,              _retransmit_head, _sack_recovery, _arm_tlp,
  tail loss probe, path MTU                    on_path_mtu); the RTO value: rto.py
  congestion window                congestion/newreno.py (RFC 5681, RFC 6582)
"""
from __future__ import annotations

import errno
import logging
from collections import deque

from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN
from netstack.wire.tcp_options import build_options

from . import congestion
from .buffers import OutOfOrderQueue, ReceiveBuffer, SendBuffer
from .config import TCPConfig
from .recovery import Recovery
from .rto import RTOEstimator
from .sack import SackScoreboard
from .sender import Sender
from .state import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK,  # noqa: F401
                    LISTEN, SYN_RECEIVED, SYN_SENT, TIME_WAIT, State, _RECV_TEXT_STATES, _SEND_STATES,
                    _USER_SEND_STATES)
from .timers import TimerSet

log = logging.getLogger("netstack.tcp")

MASK = 0xFFFFFFFF
HALF = 0x80000000
PAWS_IDLE = 24 * 24 * 3600.0     # RFC 7323 §5.5: TS.Recent is invalid after 24 days idle
DEFAULT_PEER_MSS = 536           # RFC 9293 §3.7.1 (IPv4 default send MSS)
TS_OPTION_LEN = 12               # NOP NOP TS



def _diff(a, b):
    return ((a - b + HALF) & MASK) - HALF


#: Flags (low six bits) a header-predicted data segment may carry.
_FAST_FLAGS = frozenset({ACK, ACK | PSH})


class Connection(Sender, Recovery):
    """A TCP connection (transmission control block + behaviour), RFC 9293 §3.3.1."""

    def __init__(self, layer, local_addr: int, local_port: int, remote_addr: int, remote_port: int,
                 config: TCPConfig | None = None, *, nodelay: bool | None = None, listener=None):
        cfg = config or TCPConfig()
        self.layer = layer
        self.config = cfg
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.listener = listener          # set for passive opens until accepted
        self.passive = listener is not None
        self.state = CLOSED
        self.nodelay = cfg.nodelay if nodelay is None else nodelay

        # Send sequence variables (RFC 9293 §3.3.1)
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0            # highest sequence number sent (go-back-N after RTO)
        self.snd_wnd = 0            # peer's window, already scaled, bytes
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_sndwnd = 0         # largest window the peer ever offered (sender SWS, RFC 1122 §4.2.3.4)
        self.snd_sml = 0            # end of the last small segment sent (Minshall's Nagle, sender.py)
        # Receive sequence variables
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0            # right edge of the window we advertised (never moves left)
        self.last_ack_sent = 0

        # Options (RFC 7323 / RFC 2018 / MSS)
        self.peer_mss = DEFAULT_PEER_MSS
        self.snd_mss = DEFAULT_PEER_MSS   # effective send MSS (payload bytes per segment)
        self.rcv_mss = cfg.mss            # what we expect per full-sized segment
        self.max_segment = cfg.max_segment
        self.snd_wscale = 0               # shift applied to the peer's window field
        self.rcv_wscale = 0               # shift applied to our window field
        self.ts_enabled = False
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.ts_offset = 0
        self.sack_ok = False
        self._offered_wscale = False

        # Buffers
        self.sndbuf = SendBuffer(cfg.sndbuf)
        self.rcvbuf = ReceiveBuffer(cfg.rcvbuf)
        self.ooo = OutOfOrderQueue(cfg.ooo_max)
        self.fin_queued = False           # user asked to close the sending side
        self.fin_seq = 0                  # sequence number of our FIN (valid if fin_queued)
        self.fin_received = False
        self.user_closed = False          # close() called: nobody will read any more

        # Timers, RTT, congestion
        self.timers = TimerSet()
        self.rto = RTOEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self.cc = congestion.create("newreno", cfg.mss, cfg.initial_cwnd_segments)
        self.retries = 0                  # consecutive RTO expirations
        self.persist_backoff = 0
        self.probes_unanswered = 0        # zero-window probes since the peer last answered
        self.rtt_seq = None               # timed sequence number (no timestamps), Karn's rule
        self.rtt_time = 0.0
        self.syn_time = 0.0
        self.syn_retransmitted = False
        self.dupacks = 0
        self.scoreboard = SackScoreboard()  # what the peer SACKed (RFC 2018 / RFC 6675)
        self.high_rxt = 0                 # RFC 6675 HighRxt: highest byte retransmitted in recovery
        self.rxt_mark = 0                 # SND.MAX when we last retransmitted a hole
        self.tlp_pending = False          # a tail loss probe is out, awaiting an ACK
        self.keepalive = cfg.keepalive    # SO_KEEPALIVE
        self.keepalive_probes = 0         # unanswered keep-alive probes
        self.retrans_segs = 0
        self.unacked_segs = 0             # in-order segments received since our last ACK
        self._ack_now = False
        # Delayed ACK (RFC 9293 §3.8.6.3) with Linux's adaptive timeout and quick-ACK mode
        self.ato = min(cfg.delack_min, cfg.delack_timeout)   # current delayed-ACK timeout
        self.quickack = 0                 # data segments still to ACK at once (quick-ACK mode)
        self.lrcvtime = None              # when in-order data last arrived (idle detection)
        self._syn_wnd = 0

        # User-facing
        self.on_event = None
        self.events: deque = deque(maxlen=64)
        self.error: BaseException | None = None
        self.soft_error = None            # last ICMP soft error (type, code), RFC 1122 §4.2.3.9
        self._dirty = False

    # ------------------------------------------------------------------ user API

    def __repr__(self):
        return (f"<Connection {_ip(self.local_addr)}:{self.local_port} -> "
                f"{_ip(self.remote_addr)}:{self.remote_port} {self.state}>")

    @property
    def readable(self) -> int:
        """Bytes ready for recv()."""
        return len(self.rcvbuf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self.fin_received and not self.rcvbuf.data

    @property
    def writable(self) -> int:
        """Bytes send() would accept now (0 once the sending side is shut)."""
        if self.state not in _USER_SEND_STATES or self.fin_queued:
            return 0
        return self.sndbuf.free

    @property
    def closed(self) -> bool:
        return self.state is CLOSED

    @property
    def established(self) -> bool:
        return self.state not in (CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED)

    @property
    def bytes_unacked(self) -> int:
        """Bytes sent or queued but not yet acknowledged by the peer."""
        return len(self.sndbuf)

    def send(self, data) -> int:
        """Queue bytes for transmission (RFC 9293 §3.10.2 SEND); returns how many were taken.

        0 means the send buffer is full (wait for the "writable" event).
        Raises the connection's error after a reset/timeout, BrokenPipeError
        once the sending side is shut down.
        """
        if self.error is not None:
            raise self._error_copy()
        if self.fin_queued or self.state not in _USER_SEND_STATES:
            raise BrokenPipeError(errno.EPIPE, "connection is shut down for writing")
        n = self.sndbuf.write(data)
        if n and self.state is not SYN_SENT and self.state is not SYN_RECEIVED:
            self._mark_dirty()
        return n

    def recv(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` received bytes (RFC 9293 §3.10.3 RECEIVE).

        Returns b"" at end of stream (FIN received and all data read).  Raises
        BlockingIOError when nothing is available yet, or the connection's
        error (ConnectionResetError, TimeoutError...) if it failed.
        """
        if self.rcvbuf.data:
            out = self.rcvbuf.read(max_bytes)
            self._after_user_read()
            return out
        if self.fin_received or self.user_closed:
            return b""
        if self.error is not None:
            raise self._error_copy()
        if self.state is CLOSED:
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data available")

    def _error_copy(self) -> BaseException:
        """A fresh exception of the connection's error (re-raising one instance grows its traceback)."""
        e = self.error
        return type(e)(*e.args)

    def recv_into(self, buf) -> int:
        """Like recv() but fills ``buf``; returns the byte count (0 at EOF)."""
        if self.rcvbuf.data:
            n = self.rcvbuf.read_into(buf)
            self._after_user_read()
            return n
        if self.fin_received or self.user_closed or (self.state is CLOSED and self.error is None):
            return 0
        if self.error is not None:
            raise self._error_copy()
        raise BlockingIOError(errno.EAGAIN, "no data available")

    def shutdown_write(self) -> None:
        """Half-close: send FIN after the queued data, keep receiving (RFC 9293 §3.10.4)."""
        st = self.state
        if self.fin_queued or st is CLOSED:
            return
        if st is SYN_SENT:
            self._enter_closed("closed")
            return
        self.fin_queued = True
        self.fin_seq = self.sndbuf.end_seq
        # In SYN-RECEIVED the FIN waits for ESTABLISHED (RFC 9293 §3.10.4), see _on_segment_sync.
        if st is ESTABLISHED:
            self._set_state(FIN_WAIT_1)
        elif st is CLOSE_WAIT:
            self._set_state(LAST_ACK)
        self._mark_dirty()

    def close(self) -> None:
        """CLOSE (RFC 9293 §3.10.4): orderly release; unread data makes it an abort (RFC 2525 §2.17)."""
        st = self.state
        if st is CLOSED:
            return
        if self.listener is not None and st is SYN_RECEIVED:
            self.listener._forget(self)
        if self.rcvbuf.data and self.established:
            self.abort()
            return
        self.user_closed = True
        self.shutdown_write()

    def abort(self) -> None:
        """ABORT (RFC 9293 §3.10.5): send RST in synchronized states, drop everything."""
        st = self.state
        if st is CLOSED:
            return
        if st not in (SYN_SENT, LISTEN, TIME_WAIT):
            self.layer._send_rst_for(self, self.snd_nxt)
        self._enter_closed("closed")

    def set_keepalive(self, on: bool = True) -> None:
        """SO_KEEPALIVE: probe an idle connection (RFC 1122 §4.2.3.6); off by default."""
        self.keepalive = bool(on)
        if not on:
            self.timers.keepalive = None
        else:
            self._mark_dirty()           # armed on the next flush (needs a "now")

    def set_nodelay(self, on: bool = True) -> None:
        """TCP_NODELAY: disable (True) or enable (False) Nagle's algorithm."""
        self.nodelay = bool(on)
        if on:
            self._mark_dirty()

    def info(self) -> dict:
        """A snapshot like ``ss -tin``."""
        return {
            "state": self.state.value,
            "local": f"{_ip(self.local_addr)}:{self.local_port}",
            "remote": f"{_ip(self.remote_addr)}:{self.remote_port}",
            "iss": self.iss, "irs": self.irs,
            "snd_una": self.snd_una, "snd_nxt": self.snd_nxt, "snd_max": self.snd_max,
            "snd_wnd": self.snd_wnd, "rcv_nxt": self.rcv_nxt,
            "rcv_wnd": max(0, _diff(self.rcv_adv, self.rcv_nxt)),
            "snd_wscale": self.snd_wscale, "rcv_wscale": self.rcv_wscale,
            "mss": self.snd_mss, "peer_mss": self.peer_mss, "rcv_mss": self.rcv_mss,
            "timestamps": self.ts_enabled, "sack_ok": self.sack_ok,
            "wscale_ok": self._offered_wscale,
            "srtt": self.rto.srtt, "rttvar": self.rto.rttvar, "rto": self.rto.rto,
            "backoff": self.rto.backoff_count,
            "retrans": self.retrans_segs, "retries": self.retries,
            "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh,
            "unacked": _diff(self.snd_max, self.snd_una), "send_q": len(self.sndbuf),
            "recv_q": len(self.rcvbuf), "ooo_bytes": self.ooo.nbytes,
            "nodelay": self.nodelay, "ato": self.ato, "quickack": self.quickack,
            "timers": self.timers.as_dict(),
            "error": None if self.error is None else type(self.error).__name__,
            "soft_error": self.soft_error,
        }

    # ------------------------------------------------------------------ events & helpers

    def _event(self, name: str) -> None:
        self.events.append(name)
        cb = self.on_event
        if cb is not None:
            try:
                cb(name)
            except Exception:  # the loop never dies because of a user callback
                log.exception("on_event callback failed for %r", name)

    def _set_state(self, st: State) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r: %s -> %s", self, self.state, st)
        self.state = st

    def _mark_dirty(self) -> None:
        if not self._dirty:
            self._dirty = True
            self.layer._want_flush(self)

    def _enter_closed(self, event: str) -> None:
        self._set_state(CLOSED)
        self.timers.stop_all()
        self.layer._forget(self)
        if self.listener is not None:
            self.listener._forget(self)
        if event != "closed":
            self._event(event)
        self._event("closed")

    def _fail(self, exc: BaseException, event: str) -> None:
        self.error = exc
        self.sndbuf.data.clear()
        self.ooo.clear()
        self._enter_closed(event)

    def ts_now(self, now: float) -> int:
        """Our TSval clock: 1 ms ticks plus a per-connection random offset (RFC 7323 §5.4)."""
        return (int(now * 1000) + self.ts_offset) & MASK

    def _effective_max_segment(self) -> int:
        return self.max_segment or self.snd_mss

    # ------------------------------------------------------------------ opening

    def _syn_options(self, now: float, peer_opts=None) -> bytes:
        """Options for our SYN, or for a SYN-ACK (only what the peer offered, RFC 7323 §1.3)."""
        cfg = self.config
        if peer_opts is None:
            return build_options(mss=cfg.mss, wscale=cfg.wscale,
                                 sack_permitted=cfg.sack,
                                 ts=(self.ts_now(now), 0) if cfg.timestamps else None)
        return build_options(
            mss=cfg.mss,
            wscale=self.rcv_wscale if self._offered_wscale else None,
            sack_permitted=self.sack_ok,
            ts=(self.ts_now(now), self.ts_recent) if self.ts_enabled else None)

    def _negotiate(self, opts, now: float) -> None:
        """Apply the peer's SYN options against ours (RFC 9293 §3.7.1, RFC 7323 §2.2/§3.2, RFC 2018 §2)."""
        cfg = self.config
        self.peer_mss = opts.mss if opts.mss else DEFAULT_PEER_MSS
        if cfg.wscale is not None and opts.wscale is not None:
            self._offered_wscale = True
            self.snd_wscale = min(opts.wscale, 14)          # RFC 7323 §2.3
            self.rcv_wscale = min(cfg.wscale, 14)
        else:
            self._offered_wscale = False
            self.snd_wscale = self.rcv_wscale = 0
        if cfg.timestamps and opts.ts_val is not None:
            self.ts_enabled = True
            self.ts_recent = opts.ts_val
            self.ts_recent_age = now
        else:
            self.ts_enabled = False
        self.sack_ok = bool(cfg.sack and opts.sack_permitted)
        mss = min(self.peer_mss, cfg.mss)
        rmss = cfg.mss
        if self.ts_enabled:
            mss -= TS_OPTION_LEN
            rmss -= TS_OPTION_LEN
        self.snd_mss = max(mss, 64)
        self.rcv_mss = max(rmss, 64)
        self.cc.set_mss(self.snd_mss)

    def open_active(self, iss: int, now: float) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT."""
        self.iss = iss
        self.snd_una = self.snd_sml = iss
        self.snd_nxt = self.snd_max = (iss + 1) & MASK
        self.sndbuf.seq = self.snd_nxt
        self.ts_offset = self.layer._ts_offset(self)
        self._set_state(SYN_SENT)
        self._send_syn(now)

    def open_passive(self, seg, iss: int, now: float) -> None:
        """A SYN reached a LISTEN socket (RFC 9293 §3.10.7.2): send SYN-ACK, enter SYN-RECEIVED."""
        self.iss = iss
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & MASK
        self.snd_una = self.snd_sml = iss
        self.snd_nxt = self.snd_max = (iss + 1) & MASK
        self.sndbuf.seq = self.snd_nxt
        self.ts_offset = self.layer._ts_offset(self)
        self._negotiate(seg.options, now)
        self.snd_wnd = seg.window          # never scaled in a SYN (RFC 7323 §2.2)
        self.max_sndwnd = self.snd_wnd
        self.snd_wl1 = seg.seq
        self.snd_wl2 = iss
        self._set_state(SYN_RECEIVED)
        self._send_syn(now, synack=True)
        # Data carried on the SYN is not queued (RFC 9293 allows it; Linux drops it too
        # without TFO): it is simply not acknowledged and the peer resends it.

    def _send_syn(self, now: float, synack: bool = False) -> None:
        if synack:
            opts = self._syn_options(now, peer_opts=True)
            flags = SYN | ACK
        else:
            opts = self._syn_options(now)
            flags = SYN
        wnd = self._syn_wnd = min(self.rcvbuf.free, 65535)
        self.rcv_adv = (self.rcv_nxt + wnd) & MASK
        self.syn_time = now
        self.layer._emit(self, self.iss, self.rcv_nxt, flags, wnd, opts, b"")
        if flags & ACK:
            self.last_ack_sent = self.rcv_nxt
        self.timers.retransmit = now + self.rto.rto

    # ------------------------------------------------------------------ segment arrival

    def on_segment(self, seg, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 §3.10.7) for every state but CLOSED and LISTEN."""
        st = self.state
        if st is ESTABLISHED and (seg.flags & 0x3F) in _FAST_FLAGS:
            if self._predicted(seg.seq, seg.ack, seg.window, seg.options.ts_val, seg.payload, now):
                return
        if st is SYN_SENT:
            self._on_segment_syn_sent(seg, now)
        elif st is not CLOSED:
            self._on_segment_sync(seg, now)
        if self.state is not CLOSED:
            if self.keepalive:
                self._arm_keepalive(now)
            self._flush(now)

    def _predicted(self, seq: int, ack: int, window: int, tsval, payload, now: float) -> bool:
        """Header prediction (Van Jacobson; RFC 9293 §3.10.7.4 for the common case).

        The next in-order data segment in ESTABLISHED that acknowledges
        nothing new and leaves the send window unchanged: every check of
        §3.10.7.4 passes trivially, so only the text step runs.  Returns
        False (nothing done) when the segment needs the full path.  Called
        with the parsed fields by on_segment, and by TCPLayer.on_datagram
        straight from the raw header (flags ACK or ACK|PSH, NOP,NOP,TS,
        checksum verified) before any parsing.
        """
        n = len(payload)
        rcv_nxt = self.rcv_nxt
        if seq != rcv_nxt or ack != self.snd_una or n == 0 or self.ooo.ranges or self.user_closed \
                or n > ((self.rcv_adv - rcv_nxt) & MASK) or (window << self.snd_wscale) != self.snd_wnd:
            return False
        if self.ts_enabled:
            if tsval is None or ((tsval - self.ts_recent) & MASK) >= HALF:
                return False                       # no TS or PAWS candidate: full path
            if rcv_nxt == self.last_ack_sent:      # RFC 7323 §4.3
                self.ts_recent = tsval
                self.ts_recent_age = now
        self.rcvbuf.data += payload                # the one copy of the payload
        rcv_nxt = self.rcv_nxt = (rcv_nxt + n) & MASK
        self.unacked_segs += 1
        self._event("readable")
        self._data_ack_policy(now)
        if self.keepalive:
            self._arm_keepalive(now)
        if self.state is ESTABLISHED:
            if self._dirty or self.sndbuf.data:
                self._output(now)
            if self._ack_now:
                self._send_ack(now)
            self._dirty = False
        return True

    def _on_segment_syn_sent(self, seg, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        flags = seg.flags
        ack_ok = False
        if flags & ACK:
            ack = seg.ack
            # first: SEG.ACK =< ISS or SEG.ACK > SND.NXT -> RST (unless RST), drop
            if _diff(ack, self.iss) <= 0 or _diff(ack, self.snd_max) > 0:
                if not flags & RST:
                    self.layer._send_rst(self.local_addr, self.local_port, self.remote_addr,
                                         self.remote_port, ack, 0, RST)
                self.layer._count("tcp.in.drop.bad_ack")
                return
            ack_ok = True
        if flags & RST:
            # second: RST with acceptable ACK -> "connection refused"
            if ack_ok:
                self.layer._count("tcp.attempt_fails")
                self._fail(ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {_ip(self.remote_addr)}:"
                                                  f"{self.remote_port} refused"), "refused")
            return
        if not flags & SYN:
            return
        # fourth: SYN
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & MASK
        self.rcv_adv = (self.rcv_nxt + self._syn_wnd) & MASK
        self._negotiate(seg.options, now)
        self.snd_wnd = seg.window                # unscaled in SYN segments
        self.max_sndwnd = max(self.max_sndwnd, self.snd_wnd)
        self.snd_wl1 = seg.seq
        if ack_ok:
            self.snd_wl2 = seg.ack
            self.snd_una = seg.ack
            self.timers.retransmit = None
            # RTT of the handshake (Karn: only if the SYN was not retransmitted)
            if self.ts_enabled and seg.options.ts_ecr:
                self.rto.sample(((self.ts_now(now) - seg.options.ts_ecr) & MASK) / 1000.0)
            elif not self.syn_retransmitted:
                self.rto.sample(now - self.syn_time)
            self._establish(now)
            self.retries = 0
            self._ack_now = True
            if len(seg.payload) or flags & FIN:
                # Data/FIN on a SYN-ACK: continue with the sixth step (§3.10.7.3)
                self._process_text_and_fin(seg, (seg.seq + 1) & MASK, seg.payload, flags, now)
        else:
            # Simultaneous open (§3.10.7.3 fourth, "otherwise"): SYN-RECEIVED, send SYN-ACK
            self.snd_wl2 = self.iss
            self._set_state(SYN_RECEIVED)
            self._send_syn(now, synack=True)

    def _establish(self, now: float) -> None:
        self._set_state(ESTABLISHED)
        self._incr_quickack()
        if self.keepalive:
            self._arm_keepalive(now)
        if self.syn_retransmitted and self.rto.samples == 0:
            # RFC 6298 §5.7: SYN timed out -> RTO 3 s when data transmission begins
            self.rto._base_rto = self.rto.rto = max(3.0, self.rto.rto_min)
        else:
            self.rto.reset_backoff()
        self._event("established")
        if self.sndbuf.data or self.fin_queued:
            self._dirty = True

    def _acceptable(self, seq: int, seg_len: int, rcv_wnd: int) -> bool:
        """The segment acceptability test, RFC 9293 §3.10.7.4 first (the table of four cases)."""
        rcv_nxt = self.rcv_nxt
        if seg_len == 0:
            if rcv_wnd == 0:
                return seq == rcv_nxt
            return ((seq - rcv_nxt) & MASK) < rcv_wnd
        if rcv_wnd == 0:
            return False
        return (((seq - rcv_nxt) & MASK) < rcv_wnd
                or ((seq + seg_len - 1 - rcv_nxt) & MASK) < rcv_wnd)

    def _on_segment_sync(self, seg, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and all synchronized states."""
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload
        st = self.state
        if st is SYN_RECEIVED and flags & SYN and seq == self.irs:
            if not flags & ACK:
                # A retransmitted SYN: our SYN-ACK was lost; send it again.
                self._send_syn(now, synack=True)
                return
            # Simultaneous open: the peer's SYN-ACK repeats the SYN we already took (BSD trims it).
            flags &= ~SYN
            seq = (seq + 1) & MASK
        seg_len = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        rcv_wnd = _diff(self.rcv_adv, self.rcv_nxt)
        if rcv_wnd < 0:
            rcv_wnd = 0

        # PAWS, RFC 7323 §5.3 R1 (before the sequence check)
        opts = seg.options
        tsval = opts.ts_val
        if self.ts_enabled and tsval is not None and not flags & RST:
            if ((tsval - self.ts_recent) & MASK) >= HALF:          # SEG.TSval < TS.Recent
                if (not payload and not flags & (SYN | FIN) and seq == self.rcv_nxt
                        and seg.ack == self.snd_una
                        and ((self.ts_recent - tsval) & MASK) <= int(self.rto.rto * 1000)):
                    # A reordered duplicate ACK, not an old duplicate segment: PAWS exists
                    # to reject wrapped *data*; dropping it would hide a dup ACK from loss
                    # recovery (Linux tcp_disordered_ack).  Process it, keep TS.Recent.
                    pass
                elif now - self.ts_recent_age > PAWS_IDLE:
                    self.ts_recent = tsval                          # 24 days idle: TS.Recent invalid
                    self.ts_recent_age = now
                else:
                    self.layer._count("tcp.in.drop.paws")
                    self._send_ack(now)
                    return

        # first: sequence number (acceptability) check
        if not self._acceptable(seq, seg_len, rcv_wnd):
            if rcv_wnd == 0 and seq == self.rcv_nxt and flags & ACK and not flags & (RST | SYN):
                # §3.10.7.4: with a zero window, still process valid ACKs (drop the text).
                self.layer._count("tcp.in.drop.zero_window")
                self._process_ack(seg, seq, now)
                self._ack_now = True
                return
            self.layer._count("tcp.in.drop.unacceptable")
            if not flags & RST:
                if st is TIME_WAIT and flags & FIN:
                    self.timers.timewait = now + 2 * self.config.msl
                self._send_ack(now)
            return

        # RFC 7323 §4.3: remember the timestamp to echo.
        if (self.ts_enabled and tsval is not None
                and ((self.last_ack_sent - seq) & MASK) < HALF          # SEG.SEQ <= Last.ACK.sent
                and ((tsval - self.ts_recent) & MASK) < HALF):         # SEG.TSval >= TS.Recent
            self.ts_recent = tsval
            self.ts_recent_age = now

        # second: RST
        if flags & RST:
            self._on_rst(now)
            return

        # fourth: SYN in window -> challenge ACK (RFC 9293 §3.10.7.4 fourth, RFC 5961 §4)
        if flags & SYN:
            if st is SYN_RECEIVED and self.passive:
                # "return to LISTEN": the half-open connection is discarded.
                self._enter_closed("closed")
                return
            self.layer._count("tcp.in.challenge_ack")
            self._send_ack(now)
            return

        # fifth: ACK
        if not flags & ACK:
            self.layer._count("tcp.in.drop.no_ack")
            return
        if st is SYN_RECEIVED:
            ack = seg.ack
            if _diff(ack, self.snd_una) > 0 and _diff(ack, self.snd_max) <= 0:
                self.snd_wnd = seg.window << self.snd_wscale
                self.max_sndwnd = max(self.max_sndwnd, self.snd_wnd)
                self.snd_wl1 = seq
                self.snd_wl2 = ack
                if self.ts_enabled and opts.ts_ecr:
                    self.rto.sample(((self.ts_now(now) - opts.ts_ecr) & MASK) / 1000.0)
                elif not self.syn_retransmitted:
                    self.rto.sample(now - self.syn_time)
                self.snd_una = (self.iss + 1) & MASK
                self.timers.retransmit = None
                self.retries = 0
                fin_before = self.fin_queued
                self._establish(now)
                if fin_before:
                    self._set_state(FIN_WAIT_1)
                if self.listener is not None:
                    self.listener._established(self)
                st = self.state
            else:
                self.layer._send_rst(self.local_addr, self.local_port, self.remote_addr,
                                     self.remote_port, ack, 0, RST)
                return
        if not self._process_ack(seg, seq, now):
            return
        if self.state is CLOSED:
            return

        # sixth (URG) is ignored (RFC 9293 §3.8.5: no urgent support needed by apps).
        # seventh & eighth: text and FIN
        if payload or flags & FIN:
            self._process_text_and_fin(seg, seq, payload, flags, now)

    def _on_rst(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 second: an acceptable RST."""
        st = self.state
        if st is SYN_RECEIVED:
            if self.passive:
                self.layer._count("tcp.in.rst_in_syn_recv")
                self._enter_closed("closed")          # back to LISTEN
            else:
                self.layer._count("tcp.attempt_fails")
                self._fail(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused"), "refused")
        elif st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.layer._count("tcp.estab_resets")
            self.rcvbuf.data.clear()
            self._fail(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"), "reset")
        else:  # CLOSING, LAST-ACK, TIME-WAIT
            self._enter_closed("closed")

    def _process_ack(self, seg, seq: int, now: float) -> bool:
        """RFC 9293 §3.10.7.4 fifth, synchronized states.  False means "drop the segment"."""
        ack = seg.ack
        snd_una = self.snd_una
        acked = _diff(ack, snd_una)
        self.probes_unanswered = 0
        if _diff(ack, self.snd_max) > 0:
            # ACKs something not yet sent: send an ACK, drop the segment.
            self.layer._count("tcp.in.drop.ack_unsent")
            self._send_ack(now)
            return False
        wnd = seg.window << self.snd_wscale
        new_sack = False
        sb = self.scoreboard
        if self.sack_ok:
            blocks = seg.options.sack_blocks
            if blocks:
                new_sack = sb.update(blocks, ack if acked > 0 else snd_una, self.snd_max)
            elif acked > 0 and sb.blocks:
                sb.trim(ack)
        if acked > 0:
            self.snd_una = ack
            if _diff(self.snd_nxt, ack) < 0:
                self.snd_nxt = ack
            freed = self.sndbuf.ack(ack)
            # RTT sample: TSecr (RFC 7323 §4.1) or the timed segment (Karn, RFC 6298 §3)
            rtt = None
            ecr = seg.options.ts_ecr
            if self.ts_enabled and ecr:
                rtt = ((self.ts_now(now) - ecr) & MASK) / 1000.0
            elif self.rtt_seq is not None and _diff(ack, self.rtt_seq) > 0:
                rtt = now - self.rtt_time
                self.rtt_seq = None
            if rtt is not None:
                self.rto.sample(rtt)
            self.retries = 0
            self.dupacks = 0
            flight = _diff(self.snd_max, ack)
            if self.cc.on_ack(acked, rtt, now, ack=ack, flight=flight):
                # NewReno partial ACK (RFC 6582 step 5); with SACK, _output fills the holes
                if not (self.sack_ok and sb.blocks):
                    self._retransmit_head(now)
                self._dirty = True
            # RFC 6298 §5.2/§5.3: stop the timer when all is acked, else restart it.
            self.tlp_pending = False
            if flight == 0:
                self.timers.retransmit = self.timers.tlp = None
            else:
                self.timers.retransmit = now + self.rto.rto
                self._arm_tlp(now)
            fin_acked = self.fin_queued and _diff(ack, self.fin_seq) > 0
            if fin_acked:
                st = self.state
                if st is FIN_WAIT_1:
                    self._set_state(FIN_WAIT_2)
                    if self.user_closed:
                        self.timers.timewait = now + self.config.fin_timeout
                elif st is CLOSING:
                    self._enter_time_wait(now)
                elif st is LAST_ACK:
                    self._enter_closed("closed")
                    return False
            if freed:
                self._dirty = True
                if not self.fin_queued and self.state in _USER_SEND_STATES:
                    self._event("writable")
        elif (acked == 0 and self.snd_max != snd_una and not seg.payload
              and not seg.flags & (SYN | FIN) and (wnd == self.snd_wnd or new_sack)):
            # A duplicate ACK (RFC 5681 §2; RFC 6675 §2 with SACK) -> maybe fast retransmit.
            self.dupacks += 1
            flight = _diff(self.snd_max, snd_una)
            threshold = 3
            unsent = len(self.sndbuf.data) - _diff(self.snd_max, self.sndbuf.seq)
            if unsent <= 0 or self.snd_wnd <= flight:
                # Early retransmit (RFC 5827 §3.1): with fewer than 4 segments outstanding
                # and nothing new to send, 3 duplicate ACKs may never come.
                segs = -(-flight // self.snd_mss)
                if segs < 4:
                    threshold = max(segs - 1, 1)
            if self.cc.on_dup_ack(now, flight=flight, snd_max=self.snd_max, ack=ack, threshold=threshold):
                self.layer._count("tcp.fast_retransmits")
                self.rtt_seq = None
                self.high_rxt = (snd_una + self._retransmit_head(now)) & MASK
                self.rxt_mark = self.snd_max
                self.timers.tlp = None
            self._dirty = True
        # RFC 6675 §5 (IsLost(HighACK+1)): more than (DupThresh-1)*SMSS bytes SACKed above
        # SND.UNA means the first one is lost, even if three duplicate ACKs never came.
        if sb.blocks and not self.cc.in_recovery and sb.sacked_bytes > 2 * self.snd_mss \
                and self.snd_max != self.snd_una:
            una = self.snd_una
            if self.cc.enter_recovery(now, flight=_diff(self.snd_max, una), snd_max=self.snd_max, ack=una):
                self.layer._count("tcp.fast_retransmits")
                self.layer._count("tcp.sack_recoveries")
                self.rtt_seq = None
                self.high_rxt = (una + self._retransmit_head(now)) & MASK
                self.rxt_mark = self.snd_max
                self.timers.tlp = None
                self._dirty = True
        # Window update (§3.10.7.4 fifth: SND.WL1 < SEG.SEQ or (WL1 = SEQ and WL2 =< ACK))
        if acked >= 0 and (_diff(self.snd_wl1, seq) < 0 or
                           (self.snd_wl1 == seq and _diff(self.snd_wl2, ack) <= 0)):
            if wnd != self.snd_wnd:
                self._dirty = True
            self.snd_wnd = wnd
            if wnd > self.max_sndwnd:
                self.max_sndwnd = wnd
            self.snd_wl1 = seq
            self.snd_wl2 = ack
        if self.snd_wnd == 0:
            if self.timers.persist is None and (len(self.sndbuf) or self.fin_queued):
                self.timers.retransmit = None
                self.timers.persist = now + self._persist_interval()
        elif self.timers.persist is not None:
            self.timers.persist = None
            self.persist_backoff = 0
            if self.snd_max != self.snd_una:
                self.timers.retransmit = now + self.rto.rto
        if self.state is TIME_WAIT:
            pass
        return True

    def _process_text_and_fin(self, seg, seq: int, payload, flags: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (segment text) and eighth (FIN)."""
        st = self.state
        rcv_nxt = self.rcv_nxt
        n = len(payload)
        fin = flags & FIN
        if n and st in _RECV_TEXT_STATES:
            if self.user_closed:
                # Data for a closed socket: nobody can read it (RFC 2525 §2.17, Linux).
                self.layer._count("tcp.in.data_after_close")
                self.layer._send_rst_for(self, self.snd_nxt)
                self._fail(ConnectionResetError(errno.ECONNRESET, "data received after close"), "reset")
                return
            off = _diff(seq, rcv_nxt)
            if off < 0:                                   # trim the already-received front
                payload = payload[-off:]
                n += off
                seq = rcv_nxt
                off = 0
                self._ack_now = True                      # duplicate data: ACK at once
                if n <= 0:
                    n = 0
            wnd = _diff(self.rcv_adv, rcv_nxt)
            if off + n > wnd:                             # trim beyond the window
                keep = wnd - off
                if keep < 0:
                    keep = 0
                payload = payload[:keep]
                n = keep
                fin = 0
            if off == 0:
                if n:
                    self.rcvbuf.append(payload)
                    rcv_nxt = self.rcv_nxt = (rcv_nxt + n) & MASK
                    self.unacked_segs += 1
                    if self.ooo.ranges:
                        for chunk in self.ooo.pop_ready(rcv_nxt):
                            self.rcvbuf.append(chunk)
                            rcv_nxt = (rcv_nxt + len(chunk)) & MASK
                        self.rcv_nxt = rcv_nxt
                        self._ack_now = True              # filled a hole: ACK at once (RFC 5681 §4.2)
                    if self.ooo.fin_seq is not None and self.ooo.fin_seq == rcv_nxt:
                        fin = FIN                         # a FIN held beyond the hole is now in order
                        seq = rcv_nxt
                        n = 0
                    self._event("readable")
                    self._data_ack_policy(now)
            else:
                # Out of order: hold it, ACK immediately (RFC 5681 §4.2, RFC 9293 §3.10.7.4)
                self.layer._count("tcp.in.ooo_segs")
                if not self.ooo.insert(seq, payload, rcv_nxt):
                    self.layer._count("tcp.in.drop.ooo_full")
                elif fin:
                    self.ooo.fin_seq = (seq + n) & MASK
                self._ack_now = True
                return
        elif n:
            # Text in CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: ignore (FIN already seen).
            if _diff((seq + n) & MASK, rcv_nxt) > 0:
                self._ack_now = True
            payload = b""
        if fin:
            fin_seq = (seq + n) & MASK
            if fin_seq == self.rcv_nxt:
                self._process_fin(now)
            elif _diff(fin_seq, self.rcv_nxt) > 0 and st in _RECV_TEXT_STATES:
                self.ooo.fin_seq = fin_seq
                self._ack_now = True
            else:
                self._ack_now = True               # an old FIN again: re-ACK

    def _process_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth: the FIN bit, in sequence."""
        st = self.state
        if st in (CLOSE_WAIT, CLOSING, LAST_ACK):
            self._ack_now = True
            return
        if st is TIME_WAIT:
            self._ack_now = True
            self.timers.timewait = now + 2 * self.config.msl
            return
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self.fin_received = True
        self.ooo.fin_seq = None
        self._ack_now = True
        if st is ESTABLISHED or st is SYN_RECEIVED:
            self._set_state(CLOSE_WAIT)
        elif st is FIN_WAIT_1:
            if self.fin_queued and _diff(self.snd_una, self.fin_seq) > 0:
                self._enter_time_wait(now)
            else:
                self._set_state(CLOSING)
        elif st is FIN_WAIT_2:
            self._enter_time_wait(now)
        self._event("eof")

    def _enter_time_wait(self, now: float) -> None:
        """TIME-WAIT for 2*MSL (RFC 9293 §3.4.2, §3.10.7.4 eighth)."""
        self._set_state(TIME_WAIT)
        t = self.timers
        t.retransmit = t.persist = t.delack = None
        t.timewait = now + 2 * self.config.msl

    def _data_ack_policy(self, now: float) -> None:
        """In-order data arrived: ACK now or later.  Delayed ACK, RFC 9293 §3.8.6.3 /
        RFC 1122 §4.2.3.2 / RFC 5681 §4.2, with Linux's quick-ACK and adaptive timeout.

        * Quick-ACK mode: the first data segments after the handshake, and
          after the receiver was idle longer than the RTO, are ACKed at once
          (``_incr_quickack``), so that a sender in slow start, or one whose
          Nagle is waiting for this ACK, does not sit out a timer.
        * Otherwise ACK at least every second full-sized segment (counted in
          bytes, so one large GRO segment counts for several), and within the
          delayed-ACK timeout ``ato``.
        * ``ato`` adapts to the spacing ``m`` of arriving data (Linux
          tcp_event_data_recv): closely spaced data pulls it towards
          ``delack_min``; it doubles when the timer expires
          (``_on_delack_timeout``); it always stays within
          [``delack_min``, ``delack_timeout``] (<= 200 ms, RFC 1122's < 0.5 s).
        """
        cfg = self.config
        last = self.lrcvtime
        self.lrcvtime = now
        if last is not None:
            m = now - last
            ato = self.ato
            lo = cfg.delack_min
            if m <= lo * 0.5:
                ato = ato * 0.5 + lo * 0.5
            elif m < ato:
                ato = ato * 0.5 + m
            elif m > self.rto.rto:
                self._incr_quickack()            # idle longer than the RTO
            if ato < lo:
                ato = lo
            hi = cfg.delack_timeout
            self.ato = hi if ato > hi else ato           # the maximum wins over the minimum
        if self._ack_now:
            return
        if self.quickack:
            self.quickack -= 1
            self.layer._count("tcp.quickacks")
            self._ack_now = True
        elif _diff(self.rcv_nxt, self.last_ack_sent) >= 2 * self.rcv_mss:
            self._ack_now = True
        elif self.timers.delack is None:
            self.timers.delack = now + self.ato

    def _incr_quickack(self) -> None:
        """Enter quick-ACK mode (Linux tcp_incr_quickack): the next rcv_wnd / (2 * MSS)
        data segments, at least 2 and at most ``quickack_segments``, are ACKed at once."""
        most = self.config.quickack_segments
        if most <= 0:
            return
        n = _diff(self.rcv_adv, self.rcv_nxt) // (2 * self.rcv_mss)
        if n < 2:
            n = 2
        if n > most:
            n = most
        if n > self.quickack:
            self.quickack = n

    # ------------------------------------------------------------------ receive window

    def _advertised_window(self) -> int:
        """Window to advertise, with receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2).

        The right edge moves only by at least min(rcvbuf/2, MSS), and never
        moves left (RFC 9293 §3.8.6: shrinking the window is discouraged).
        Returns the unscaled field value.
        """
        rcv_nxt = self.rcv_nxt
        free = self.rcvbuf.capacity - len(self.rcvbuf.data)
        if free < 0:
            free = 0
        cur = _diff(self.rcv_adv, rcv_nxt)
        if cur < 0:
            cur = 0
        if free - cur >= min(self.rcvbuf.capacity >> 1, self.rcv_mss):
            max_wnd = 65535 << self.rcv_wscale
            if free > max_wnd:
                free = max_wnd
            self.rcv_adv = (rcv_nxt + free) & MASK
            cur = free
        field = cur >> self.rcv_wscale
        return field if field <= 65535 else 65535

    def _after_user_read(self) -> None:
        """The user consumed data: send a window update if it opens enough (RFC 1122 §4.2.3.3)."""
        if self.state not in _RECV_TEXT_STATES:
            return
        free = self.rcvbuf.capacity - len(self.rcvbuf.data)
        cur = max(0, _diff(self.rcv_adv, self.rcv_nxt))
        inc = free - cur
        if inc >= min(self.rcvbuf.capacity >> 1, 2 * self.rcv_mss) or (cur < self.rcv_mss <= free):
            self._ack_now = True
            self._mark_dirty()

    # ------------------------------------------------------------------ output

    def _flush(self, now: float) -> None:
        """Send whatever is due: data/FIN under the windows, else a pending ACK."""
        self._dirty = False
        if self.keepalive and self.timers.keepalive is None:
            self._arm_keepalive(now)
        if self.state in _SEND_STATES:
            self._output(now)
        if self._ack_now and self.state is not CLOSED and self.state is not SYN_SENT:
            self._send_ack(now)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        """Fire every due timer (the stack calls this through TCPLayer.poll)."""
        t = self.timers
        if t.timewait is not None and t.timewait <= now:
            t.timewait = None
            if self.state is TIME_WAIT or self.state is FIN_WAIT_2:
                self._enter_closed("closed")
                return
        if t.retransmit is not None and t.retransmit <= now:
            t.retransmit = t.tlp = None
            self._on_retransmit_timeout(now)
            if self.state is CLOSED:
                return
        if t.tlp is not None and t.tlp <= now:
            t.tlp = None
            self._on_tlp_timeout(now)
        if t.persist is not None and t.persist <= now:
            t.persist = None
            self._on_persist_timeout(now)
        if t.delack is not None and t.delack <= now:
            t.delack = None
            self._on_delack_timeout(now)
        if t.keepalive is not None and t.keepalive <= now:
            t.keepalive = None
            self._on_keepalive_timeout(now)
            if self.state is CLOSED:
                return
        if self.state is not CLOSED:
            self._flush(now)

    def _on_delack_timeout(self, now: float) -> None:
        """The delayed-ACK timer (<= 200 ms) fired: ACK what we hold (RFC 9293 §3.8.6.3).

        Nothing to piggyback on came in time: the peer's data is sparser than
        ``ato`` assumed, so the next timeout doubles, up to ``delack_timeout``
        (Linux tcp_delack_timer_handler).
        """
        if self.state is not CLOSED and self.state is not SYN_SENT:
            self.layer._count("tcp.delayed_acks")
            self._ack_now = True
            ato = self.ato * 2
            hi = self.config.delack_timeout
            self.ato = hi if ato > hi else ato


def _ip(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"
