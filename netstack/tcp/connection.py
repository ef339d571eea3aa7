"""One TCP connection: the RFC 9293 state machine, sans-I/O, a closed unit.

A Connection is driven from two sides:

* the network: ``on_segment(seg, now)`` with a parsed TCPSegment (the
  layer demultiplexes to it), ``fast_path(...)`` with the fields of a
  header-predicted segment, ``on_timer(now)`` when one of its timers is
  due, and ``on_icmp_error(...)``;
* the user: ``send``, ``recv``, ``recv_into``, ``shutdown_write``,
  ``close``, ``abort``, ``set_nodelay``, ``set_keepalive``.  User calls never
  transmit directly (they have no ``now``): they ask the host for a flush,
  and the host calls ``flush(now)`` soon.

It talks to its host (the TCP layer) only through
:class:`~netstack.tcp.host.ConnectionHost`: segments go out as fields
(``emit``), never bytes; counters are incremented by name; state changes are
reported as typed :class:`~netstack.tcp.events.StateChange` values.  The
user hears :class:`~netstack.tcp.events.ConnEvent` values through
``on_event``.

The transmission control block is made of composed parts, each a small
class with its own state and its own tests:

  snd       send_space.py    SND.UNA/NXT/MAX/WND, the send buffer, our FIN
  rcv       recv_space.py    RCV.NXT, the advertised window, receive buffer, out-of-order queue
  neg       negotiation.py   MSS, window scale, timestamps and PAWS, SACK-permitted
  rto       rto.py           RFC 6298 RTT estimator and RTO (and Karn's timed segment)
  acks      delack.py        delayed ACK and quick-ACK
  timers    timers.py        one exclusive slot (retransmit/persist/keep-alive/TIME-WAIT/FIN-WAIT-2)
                             + delayed ACK + TLP + the reordering timer
  cc        congestion/      congestion control behind its interface (CUBIC or NewReno)
  recovery  recovery.py      fast retransmit, SACK recovery (scoreboard: sack.py; loss detection:
                             rack.py; PRR: prr.py), TLP, undo, THE RTO firing
  sender    sender.py        what goes out and when: Nagle, SWS, persist, keep-alive probes

Reading guide (RFC section -> where):
  §3.3.2 the eleven states          state.py; every change through Connection._set_state
  §3.10.1 OPEN (active)             TCPLayer.connect -> Connection.open_active
  §3.10.7.2 LISTEN, SYN arrives     listener.py -> Connection.open_passive
  §3.10.7.3 SYN-SENT                Connection._on_segment_syn_sent
  §3.10.7.4 other states            Connection._on_segment_sync, in the RFC's order:
                                    PAWS (RFC 7323 §5), first: acceptability
                                    (ReceiveSpace.acceptable), second: RST (_on_rst),
                                    fourth: SYN, fifth: ACK (_process_ack), seventh and
                                    eighth: text and FIN (_process_text, _process_fin);
                                    header prediction: fast_path (TCPLayer.on_datagram
                                    calls it from the raw header)
  §3.8.6.3 delayed ACK, quick-ACK   delack.py (AckPolicy), Connection._on_delack_timeout
  §3.8.6.2.2 receiver SWS           ReceiveSpace.advertise, window_update_due
  receive-buffer autotuning         ReceiveSpace.space_adjust, from _after_user_read
  (Linux tcp_rcv_space_adjust)      (once per RTT); set_rcvbuf fixes the size
  RFC 7323 / 2018 negotiation       negotiation.py
  sending, Nagle, sender SWS,       sender.py
  persist, keep-alive
  retransmission timer (RFC 6298),  recovery.py (LossRecovery.on_retransmit_timeout, ...);
  fast retransmit, SACK recovery,   the RTO value: rto.py
  tail loss probe, path MTU
  congestion window                 congestion/cubic.py (RFC 9438, RFC 9406), congestion/newreno.py
                                    (RFC 5681, RFC 6582)
  loss detection, D-SACK, undo      rack.py (RFC 8985, RFC 6675), recovery.py (RFC 2883, 3522, 4015,
                                    5682); the hooks in _process_ack are marked [recovery]
  D-SACK generation                 _process_text and the acceptability step, marked [D-SACK]
"""
from __future__ import annotations

import errno
import logging
from collections import deque

from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN

from . import congestion
from .buffers import KEEP_MIN as _KEEP_MIN
from .config import TCPConfig
from .delack import AckPolicy
from .events import (ConnEvent, ErrorCause, SegmentCause, StateChange, TimerCause, UserCall, UserCause)
from .negotiation import Negotiation
from .recovery import LossRecovery
from .recv_space import ReceiveSpace
from .rto import RTOEstimator
from .send_space import SendSpace
from .sender import Sender
from .seq import HALF, MASK, seq_diff
from .state import (CLOSE_WAIT, CLOSED, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, LAST_ACK, LISTEN,
                    RECV_TEXT_STATES, SEND_STATES, SYN_RECEIVED, SYN_SENT, TIME_WAIT, USER_SEND_STATES, State)
from .timers import Timer, Timers

log = logging.getLogger("netstack.tcp")

#: Flags (low six bits) a header-predicted segment may carry.
_FAST_FLAGS = frozenset({ACK, ACK | PSH})

_EV_READABLE = ConnEvent.READABLE
_EV_WRITABLE = ConnEvent.WRITABLE
_RETRANSMIT = Timer.RETRANSMIT
_PERSIST = Timer.PERSIST
_KEEPALIVE = Timer.KEEPALIVE
_TIME_WAIT = Timer.TIME_WAIT
_FIN_WAIT_2 = Timer.FIN_WAIT_2


class Connection:
    """A TCP connection (transmission control block + behaviour), RFC 9293 §3.3.1."""

    def __init__(self, host, local_addr: int, local_port: int, remote_addr: int, remote_port: int,
                 config: TCPConfig | None = None, *, nodelay: bool | None = None, passive: bool = False,
                 ts_offset: int = 0, ooo_budget=None):
        cfg = config or TCPConfig()
        self.host = host                  #: a ConnectionHost (host.py): the only way out
        self.config = cfg
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.passive = passive            #: opened by a SYN to a listener
        self.state = CLOSED
        self.nodelay = cfg.nodelay if nodelay is None else nodelay
        self.keepalive = cfg.keepalive    #: SO_KEEPALIVE
        self.keepalive_idle = cfg.keepalive_idle           #: TCP_KEEPIDLE, seconds
        self.keepalive_interval = cfg.keepalive_interval   #: TCP_KEEPINTVL, seconds
        self.keepalive_count = cfg.keepalive_probes        #: TCP_KEEPCNT

        # The parts of the transmission control block.
        self.snd = SendSpace(cfg.sndbuf, cfg.max_segment)
        self.rcv = ReceiveSpace(cfg.rcvbuf, cfg.ooo_max, cfg.mss, ooo_budget)
        if cfg.rcvbuf_autotune:
            self.rcv.enable_autotune(cfg.rcvbuf_max)
        self.neg = Negotiation(cfg, ts_offset)
        self.rto = RTOEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self.acks = AckPolicy(cfg, host.count)
        self.timers = Timers()
        self.cc = congestion.create(cfg.congestion, cfg.mss, cfg.initial_cwnd_segments)
        self.recovery = LossRecovery(self)
        self.sender = Sender(self)

        self.user_closed = False          #: close() called: nobody will read any more
        self.syn_time = 0.0               #: when our SYN / SYN-ACK went out (handshake RTT)
        self.syn_retransmitted = False

        # Per-connection statistics (ss -ti; RFC 4898's tcpEStatsPerfSegsIn/SegsOut and
        # HCThruOctetsAcked): one integer increment each, nothing more on the segment paths.
        self.segs_in = 0                  #: segments received for this connection
        self.segs_out = 0                 #: segments sent, retransmissions and RSTs included
        self.bytes_acked = 0              #: sequence space the peer acknowledged (SYN and FIN count 1)

        # User-facing
        self.on_event = None              #: callable(ConnEvent), set by the socket layer
        self.events: deque = deque(maxlen=64)        #: the last ConnEvents
        self.transitions: deque = deque(maxlen=32)   #: the last StateChanges
        self.error: BaseException | None = None
        self.soft_error = None            #: last ICMP soft error (type, code), RFC 1122 §4.2.3.9
        self._cause = None                #: what is being processed: the segment, timer or user call
        self._last_challenge = float("-inf")  #: when the last challenge ACK went out (RFC 5961 §7)
        self._dirty = False               #: a flush has been asked of the host

    def __repr__(self):
        return (f"<Connection {_ip(self.local_addr)}:{self.local_port} -> "
                f"{_ip(self.remote_addr)}:{self.remote_port} {self.state}>")

    # ------------------------------------------------------------------ user API

    @property
    def readable(self) -> int:
        """Bytes ready for recv()."""
        return len(self.rcv.buf)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN arrived and every byte before it has been read."""
        return self.rcv.fin_received and not self.rcv.buf

    @property
    def would_block(self) -> bool:
        """recv() would raise BlockingIOError now: no data buffered, no EOF, no error, not closed."""
        return (not self.rcv.buf and not self.rcv.fin_received and not self.user_closed
                and self.error is None and self.state is not CLOSED)

    @property
    def writable(self) -> int:
        """Bytes send() would accept now (0 once the sending side is shut)."""
        if self.state not in USER_SEND_STATES or self.snd.fin_queued:
            return 0
        return self.snd.buf.free

    @property
    def closed(self) -> bool:
        return self.state is CLOSED

    @property
    def established(self) -> bool:
        """The handshake completed (any state from ESTABLISHED on, CLOSED excluded)."""
        return self.state not in (CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED)

    @property
    def bytes_unacked(self) -> int:
        """Bytes sent or queued but not yet acknowledged by the peer."""
        return len(self.snd.buf)

    @property
    def sending(self) -> bool:
        """Data or a FIN of ours is not yet acknowledged, or the handshake is not done."""
        st = self.state
        if st in (SYN_SENT, SYN_RECEIVED, FIN_WAIT_1, CLOSING, LAST_ACK):
            return True
        return (st is ESTABLISHED or st is CLOSE_WAIT) and len(self.snd.buf) > 0

    def send(self, data) -> int:
        """Queue bytes for transmission (RFC 9293 §3.10.2 SEND); returns how many were taken.

        0 means the send buffer is full (wait for ConnEvent.WRITABLE).
        Raises the connection's error after a reset/timeout, BrokenPipeError
        once the sending side is shut down.
        """
        if self.error is not None:
            raise self._error_copy()
        if self.snd.fin_queued or self.state not in USER_SEND_STATES:
            raise BrokenPipeError(errno.EPIPE, "connection is shut down for writing")
        n = self.snd.buf.write(data)
        if n and self.state is not SYN_SENT and self.state is not SYN_RECEIVED:
            self._want_flush()
        return n

    def recv(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` received bytes (RFC 9293 §3.10.3 RECEIVE).

        Returns b"" at end of stream (FIN received and all data read).  Raises
        BlockingIOError when nothing is available yet, or the connection's
        error (ConnectionResetError, TimeoutError...) if it failed.
        """
        if self.rcv.buf:
            out = self.rcv.buf.read(max_bytes)
            self._after_user_read()
            return out
        if self.rcv.fin_received or self.user_closed:
            return b""
        if self.error is not None:
            raise self._error_copy()
        if self.state is CLOSED:
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data available")

    def recv_owned(self, max_bytes: int = -1):
        """Like :meth:`recv`, but without a copy where it can, so the data is ``bytes``, a
        ``bytearray`` the caller owns (bytes the receive buffer had copied, handed over
        rather than copied again) or a read-only ``memoryview`` of a link's read buffer (a
        super-segment's payload the receive buffer kept; see ``ReceiveBuffer.take``), valid for as long as the caller references it; a
        caller that needs a bytearray converts it (what the socket transport does for an
        asyncio StreamReader, which copies it anyway)."""
        if self.rcv.buf:
            out = self.rcv.buf.take(max_bytes)
            self._after_user_read()
            return out
        return self.recv(max_bytes)

    def recv_into(self, buf) -> int:
        """Like recv() but fills ``buf``; returns the byte count (0 at EOF)."""
        if self.rcv.buf:
            n = self.rcv.buf.read_into(buf)
            self._after_user_read()
            return n
        if self.rcv.fin_received or self.user_closed or (self.state is CLOSED and self.error is None):
            return 0
        if self.error is not None:
            raise self._error_copy()
        raise BlockingIOError(errno.EAGAIN, "no data available")

    def _error_copy(self) -> BaseException:
        """A fresh exception of the connection's error (re-raising one instance grows its traceback)."""
        e = self.error
        return type(e)(*e.args)

    def shutdown_write(self) -> None:
        """Half-close: send FIN after the queued data, keep receiving (RFC 9293 §3.10.4)."""
        st = self.state
        if self.snd.fin_queued or st is CLOSED:
            return
        self._cause = UserCause(UserCall.CLOSE)
        if st is SYN_SENT:
            self._enter_closed(None)
            return
        self.snd.queue_fin()
        # In SYN-RECEIVED the FIN waits for ESTABLISHED (RFC 9293 §3.10.4), see _on_segment_sync.
        if st is ESTABLISHED:
            self._set_state(FIN_WAIT_1)
        elif st is CLOSE_WAIT:
            self._set_state(LAST_ACK)
        self._want_flush()

    def close(self) -> None:
        """CLOSE (RFC 9293 §3.10.4): orderly release; unread data makes it an abort (RFC 2525 §2.17)."""
        if self.state is CLOSED:
            return
        if self.rcv.buf and self.established:
            self.abort()
            return
        if not self.host.may_orphan(self):
            # Too many connections closed by their applications still wind down: this one
            # is aborted instead (Linux tcp_max_orphans).
            self.host.count("tcp.limits.orphans_reset")
            self.abort()
            return
        self.user_closed = True
        self.shutdown_write()

    def abort(self) -> None:
        """ABORT (RFC 9293 §3.10.5): send RST in synchronized states, drop everything: the
        data queued to send and the data received but not read (pending RECEIVEs are ended,
        recv() then returns b""), so kept views of a link's read buffers are released now,
        not when this object is freed.  (After a reset or a timeout, :meth:`fail`, the
        data received before it stays readable, as recv() returns it before the error.)"""
        st = self.state
        if st is CLOSED:
            return
        self._cause = UserCause(UserCall.ABORT)
        if st not in (SYN_SENT, LISTEN, TIME_WAIT):
            self._send_rst()
        self.snd.buf.data.clear()
        self.rcv.buf.clear()
        self._enter_closed(None)

    def set_keepalive(self, on: bool = True, *, idle: float | None = None, interval: float | None = None,
                      count: int | None = None) -> None:
        """SO_KEEPALIVE, with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (RFC 1122 §4.2.3.6).

        Off by default.  ``idle``: seconds of silence before the first probe;
        ``interval``: seconds between probes; ``count``: unanswered probes
        before the connection times out.  Those given are kept for later even
        while keep-alive is off, as with Linux's socket options."""
        if idle is not None:
            if not idle > 0:
                raise ValueError(f"keep-alive idle time must be positive, not {idle!r}")
            self.keepalive_idle = float(idle)
        if interval is not None:
            if not interval > 0:
                raise ValueError(f"keep-alive interval must be positive, not {interval!r}")
            self.keepalive_interval = float(interval)
        if count is not None:
            if not 0 < int(count) <= 127:
                raise ValueError(f"keep-alive probe count must be 1..127, not {count!r}")
            self.keepalive_count = int(count)
        was_on = self.keepalive
        self.keepalive = bool(on)
        if not on:
            self.timers.stop(_KEEPALIVE)
        elif not was_on or (idle is not None and self.timers.kind is _KEEPALIVE
                            and self.sender.keepalive_probes == 0):
            # Starting, or a new idle time before any probe went out: the flush arms the
            # timer an idle period from now.  Probes already under way are left alone.
            self.timers.stop(_KEEPALIVE)
            self._want_flush()

    def set_nodelay(self, on: bool = True) -> None:
        """TCP_NODELAY: disable (True) or enable (False) Nagle's algorithm."""
        self.nodelay = bool(on)
        if on:
            self._want_flush()

    @property
    def congestion(self) -> str:
        """The congestion control's name (TCP_CONGESTION)."""
        return self.cc.name

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: switch the congestion control (``congestion.ALGORITHMS``).

        As Linux, the window and slow-start threshold carry over; the new
        algorithm's own state starts afresh.  ValueError for an unknown name."""
        if name == "reno":
            name = "newreno"
        if name == self.cc.name:
            return
        old = self.cc
        cc = congestion.create(name, old.mss, self.config.initial_cwnd_segments)
        cc.cwnd, cc.ssthresh = old.cwnd, old.ssthresh
        cc.in_recovery, cc.recover, cc.recover_valid = old.in_recovery, old.recover, old.recover_valid
        self.cc = cc

    def info(self) -> dict:
        """A snapshot like ``ss -tin``."""
        snd, rcv, neg = self.snd, self.rcv, self.neg
        return {
            "state": self.state.value,
            "local": f"{_ip(self.local_addr)}:{self.local_port}",
            "remote": f"{_ip(self.remote_addr)}:{self.remote_port}",
            "iss": snd.iss, "irs": rcv.irs,
            "snd_una": snd.una, "snd_nxt": snd.nxt, "snd_max": snd.max,
            "snd_wnd": snd.wnd, "rcv_nxt": rcv.nxt, "rcv_wnd": rcv.wnd,
            "snd_wscale": snd.wscale, "rcv_wscale": rcv.wscale,
            "mss": snd.mss, "peer_mss": neg.peer_mss, "rcv_mss": rcv.mss,
            "timestamps": neg.ts_enabled, "sack_ok": neg.sack_ok, "wscale_ok": neg.wscale_ok,
            "srtt": self.rto.srtt, "rttvar": self.rto.rttvar, "rto": self.rto.rto,
            "backoff": self.rto.backoff_count,
            "retrans": self.recovery.retrans_segs, "retries": self.recovery.retries,
            "cc": self.cc.name, "cwnd": self.cc.cwnd, "ssthresh": self.cc.ssthresh,
            "in_recovery": self.cc.in_recovery, "loss_detection": self.recovery.loss.name,
            "reordering": getattr(self.recovery.loss, "reordering", 0),
            "dsack": self.recovery.dsacks, "undo": self.recovery.undos,
            "spurious_rto": self.recovery.spurious_rtos,
            "unacked": snd.in_flight, "send_q": len(snd.buf),
            "recv_q": len(rcv.buf), "ooo_bytes": rcv.ooo.nbytes,
            "rcvbuf": self.rcvbuf, "rcvbuf_autotune": bool(rcv.space_max),
            "nodelay": self.nodelay, "ato": self.acks.ato, "quickack": self.acks.quickack,
            "keepalive": self.keepalive,
            "timers": self.timers.as_dict(),
            "timer": self._slot_timer(),
            "segs_in": self.segs_in, "segs_out": self.segs_out, "bytes_acked": self.bytes_acked,
            "minrtt": self.rto.min_rtt,
            "error": None if self.error is None else type(self.error).__name__,
            "soft_error": self.soft_error,
        }

    def _slot_timer(self) -> dict | None:
        """What the exclusive timer slot holds, as ss -o shows it: the timer's name, its
        deadline and how many times it has fired without an answer (retransmissions of the
        head segment, zero-window or keep-alive probes), or None when the slot is empty."""
        kind = self.timers.kind
        if kind is None:
            return None
        if kind is _RETRANSMIT:
            fired = self.recovery.retries
        elif kind is _PERSIST:
            fired = self.sender.probes_unanswered
        elif kind is _KEEPALIVE:
            fired = self.sender.keepalive_probes
        else:
            fired = 0
        return {"name": kind.value, "at": self.timers.deadline, "fired": fired}

    # ------------------------------------------------------------------ events, states, failure

    def _event(self, ev: ConnEvent) -> None:
        self.events.append(ev)
        cb = self.on_event
        if cb is not None:
            try:
                cb(ev)
            except Exception:  # the loop never dies because of a user callback
                log.exception("on_event callback failed for %s", ev)

    def _set_state(self, new: State, now: float | None = None) -> None:
        """Every transition of RFC 9293 §3.3.2 goes through here, with its cause."""
        old = self.state
        self.state = new
        if old is new:
            return
        cause = self._cause
        if cause is None:
            cause = UserCause(UserCall.OPEN)
        elif not isinstance(cause, (SegmentCause, TimerCause, UserCause, ErrorCause)):
            cause = SegmentCause(cause.flags, cause.seq, cause.ack)     # the segment itself
            self._cause = cause
        change = StateChange(self.host.now if now is None else now, old, new, cause)
        self.transitions.append(change)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r: %s -> %s (%s)", self, old, new, cause)
        self.host.transition(self, change)

    def _want_flush(self) -> None:
        if not self._dirty:
            self._dirty = True
            self.host.want_flush(self)

    def arm_rto(self, now: float) -> None:
        """Start the retransmission timer if it is not running (RFC 6298 §5.1) -- unless the
        peer's window is zero and the persist timer holds the slot: then its probes watch the
        peer, and retransmissions into the closed window wait for it to open (window_opened)."""
        t = self.timers
        kind = t.kind
        if kind is _RETRANSMIT or (kind is _PERSIST and self.snd.wnd == 0):
            return
        t.arm(_RETRANSMIT, now + self.rto.rto)

    def _send_rst(self) -> None:
        """<SEQ=SND.NXT><CTL=RST> (ABORT, RFC 9293 §3.10.5)."""
        self.segs_out += 1
        self.host.send_reset(self, self.snd.nxt, 0, RST)

    def _enter_closed(self, failure: ConnEvent | None) -> None:
        self._set_state(CLOSED)
        self.timers.stop_all()
        self.rcv.ooo.clear()
        self.host.closed(self)
        if failure is not None:
            self._event(failure)
        self._event(ConnEvent.CLOSED)

    def fail(self, exc: BaseException, event: ConnEvent) -> None:
        """End the connection with an error (RESET, REFUSED or TIMEOUT)."""
        self.error = exc
        self.snd.buf.data.clear()
        self.rcv.ooo.clear()
        self._enter_closed(event)

    def _give_up(self, exc: BaseException | None) -> bool:
        """A timer's part reported that retries ran out: reset the peer and fail.  True if so."""
        if exc is None:
            return False
        if self.state not in (SYN_SENT, SYN_RECEIVED):
            self._send_rst()
        self.fail(exc, ConnEvent.TIMEOUT)
        return True

    # ------------------------------------------------------------------ opening

    def open_active(self, iss: int, now: float) -> None:
        """Active OPEN (RFC 9293 §3.10.1): send SYN, enter SYN-SENT."""
        self.snd.start(iss)
        self._cause = UserCause(UserCall.OPEN)
        self._set_state(SYN_SENT, now)
        self.sender.send_syn(now)

    def open_passive(self, seg, iss: int, now: float) -> None:
        """A SYN reached a LISTEN socket (RFC 9293 §3.10.7.2): send SYN-ACK, enter SYN-RECEIVED."""
        snd = self.snd
        self.segs_in += 1                            # the SYN is this connection's first segment
        self.rcv.start(seg.seq)
        snd.start(iss)
        self.neg.apply_peer_syn(seg.options, now, snd, self.rcv)
        self.cc.set_mss(snd.mss)
        snd.set_window(seg.window, seg.seq, iss)     # never scaled in a SYN (RFC 7323 §2.2)
        self.state = LISTEN                          # the transition starts from the listener's state
        self._cause = seg
        self._set_state(SYN_RECEIVED, now)
        self.sender.send_syn(now, synack=True)
        # Data carried on the SYN is not queued (RFC 9293 allows it; Linux drops it too
        # without TFO): it is simply not acknowledged and the peer resends it.

    def open_from_cookie(self, seg, iss: int, opts, now: float) -> None:
        """The ACK of a SYN-cookie handshake (RFC 4987 §3.6, syncookies.py) arrived at a listener
        and its cookie checked out: become ESTABLISHED at once, with the options the cookie
        carried (``opts``: mss, wscale, sack_permitted, ts_val)."""
        snd = self.snd
        rcv = self.rcv
        rcv.start((seg.seq - 1) & MASK)
        snd.start(iss)
        self.neg.apply_peer_syn(opts, now, snd, rcv)
        self.cc.set_mss(snd.mss)
        rcv.syn_window()                             # what the cookie SYN-ACK offered
        rcv.last_ack_sent = rcv.nxt
        snd.una = snd.nxt
        snd.set_window(seg.window << snd.wscale, seg.seq, seg.ack)
        self.state = LISTEN                          # the handshake's two transitions, at once
        self._cause = seg
        self._set_state(SYN_RECEIVED, now)
        self._establish(now)
        self._cause = None

    def reopens_time_wait(self, seg) -> bool:
        """A SYN for this 4-tuple in TIME-WAIT may start a new incarnation (RFC 6191 §2 with
        timestamps: its TSval is newer than TS.Recent; without them, RFC 1122 §4.2.2.13: its
        SEG.SEQ is beyond RCV.NXT)."""
        if self.state is not TIME_WAIT:
            return False
        tsval = seg.options.ts_val
        if self.neg.ts_enabled and tsval is not None:
            return seq_diff(tsval, self.neg.ts_recent) > 0
        return seq_diff(seg.seq, self.rcv.nxt) > 0

    def end_time_wait(self) -> None:
        """Leave TIME-WAIT early for a new incarnation (``reopens_time_wait``)."""
        self._cause = None
        self._enter_closed(None)

    # ------------------------------------------------------------------ segment arrival

    def on_segment(self, seg, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 §3.10.7) for every state but CLOSED and LISTEN."""
        st = self.state
        if st is ESTABLISHED and (seg.flags & 0x3F) in _FAST_FLAGS and not seg.options.sack_blocks:
            opts = seg.options
            if self.fast_path(seg.seq, seg.ack, seg.window, opts.ts_val, opts.ts_ecr, seg.payload, now):
                return                             # counted in segs_in there
        self.segs_in += 1
        self._cause = seg
        if st is SYN_SENT:
            self._on_segment_syn_sent(seg, now)
        elif st is not CLOSED:
            self._on_segment_sync(seg, now)
        if self.state is not CLOSED:
            if self.keepalive:
                self.sender.heard(now)
            self.flush(now)
        self._cause = None                 # the segment's payload is only valid during the call

    def fast_path(self, seq: int, ack: int, window: int, tsval, ecr, payload, now: float) -> bool:
        """Header prediction (Van Jacobson; RFC 9293 §3.10.7.4 for the common cases).

        Two predictions, chained: the segment is the next in order in ESTABLISHED,
        with data or (a pure ACK) none, and it either acknowledges nothing new
        (then it must carry data: a bulk receiver's segment) or acknowledges new
        data (a request/response exchange: each request acknowledges our last
        reply).  Every check of §3.10.7.4 up to the fifth passes trivially, the
        ACK is processed as the fifth step would, then the text step runs.
        Returns False (nothing done) when the segment needs the full path.
        Called with the parsed fields by on_segment, and by TCPLayer.on_datagrams
        straight from the raw header (flags ACK or ACK|PSH, NOP,NOP,TS,
        checksum verified) before any parsing.  The sequence comparisons are
        inlined from seq.py (an equivalence test holds them to the full path).

        The prediction (all of it must hold, else the full path runs):
        SEG.SEQ = RCV.NXT; data within the window advertised to the peer and the
        buffer's room (a window-limited sender's last segment ends at the edge the
        window field, rounded up, promised: RFC 7323 §2.4), or no
        data and an ACK of new data; nothing held out of order (no SACK state
        to update); no SACK blocks in the segment (the raw header has room for
        none; on_segment checks the parsed ones); the application has not
        closed; the window field, scaled, equals SND.WND; with timestamps, a
        TSval not older than TS.Recent (PAWS, RFC 7323 §5.3; equal passes);
        SEG.ACK = SND.UNA with data, a window not zero and no persist timer
        (its rules are the full path's), or SND.UNA < SEG.ACK =< SND.MAX with
        no loss recovery under way (the congestion control not in recovery,
        no recovery reported, no F-RTO step pending, an empty SACK scoreboard).

        Then: TS.Recent (RFC 7323 §4.3); for an ACK of new data, in
        _process_ack's order: SND.UNA and the send buffer, the RTT sample
        (TSecr, RFC 7323 §4.1, or the timed segment, RFC 6298 §3) into the
        estimator, Eifel's check of an open undo episode, the congestion
        control's growth, the retransmission timer stopped or restarted
        (RFC 6298 §5.2/§5.3) with the TLP (RFC 8985 §7.2), WRITABLE, the loss
        detection (RACK, RFC 8985 §6.2), which also sees an ACK of nothing new
        while data of ours is in flight; SND.WL1/WL2 (the window update rule,
        the window itself unchanged) and the persist timer's rules; then the
        payload into the receive buffer (kept or copied once), READABLE, the
        delayed-ACK decision (AckPolicy.on_data), keep-alive, output, and the
        ACK when due (Sender.send: a pure ACK from the layer's template).
        """
        rcv = self.rcv
        rcv_nxt = rcv.nxt
        n = len(payload)
        if seq != rcv_nxt or rcv.ooo.ranges:
            return False
        beyond = n > ((rcv.committed - rcv_nxt) & MASK)
        if beyond and (n > ((rcv.adv - rcv_nxt) & MASK) or n > rcv.room):
            return False        # beyond the advertised edge, or the buffer's room: the full path trims
        snd = self.snd
        snd_una = snd.una
        if (window << snd.wscale) != snd.wnd or self.user_closed:
            return False
        if ack == snd_una:
            if not n:
                return False                       # a duplicate ACK, a probe's answer: full path
            acked = 0
            if snd.buf.data:
                # Data of ours queued or in flight (never on a bulk receiver's path): a zero
                # window or the persist timer's rules go to the full path; with data in flight
                # and SACK on, the loss detection sees this ACK (acked -1, below).
                if not snd.wnd or self.timers.kind is _PERSIST or self.sender.persist_backoff:
                    return False
                if snd.max != snd_una and self.neg.sack_ok:
                    acked = -1
        else:
            # SND.UNA < SEG.ACK =< SND.MAX (seq_diff inlined): acknowledges new data
            acked = (ack - snd_una) & MASK
            if acked >= HALF or ((snd.max - ack) & MASK) >= HALF:
                return False
            recovery = self.recovery
            if (self.cc.in_recovery or recovery.recovering or recovery.frto or recovery.scoreboard.blocks
                    or recovery.tlp_end is not None):     # (a TLP episode: RFC 8985 §7.4 on the full path)
                return False
        neg = self.neg
        if neg.ts_enabled:
            if tsval is None or ((tsval - neg.ts_recent) & MASK) >= HALF:
                return False                       # no TS or PAWS candidate: full path
            if rcv_nxt == rcv.last_ack_sent:       # RFC 7323 §4.3
                neg.ts_recent = tsval
                neg.ts_recent_age = now
        self.segs_in += 1
        if acked > 0:
            # §3.10.7.4 fifth, as _process_ack does it for this case (no SACK, not a duplicate)
            timers = self.timers
            sender = self.sender
            sender.probes_unanswered = 0
            probing = timers.kind is _PERSIST
            self.bytes_acked += acked
            freed = snd.acknowledge(ack)
            if neg.ts_enabled and ecr:
                rtt = neg.rtt_from_ecr(ecr, now)
            else:
                rtt = self.rto.sample_timed(ack, now)
            if rtt is not None:
                self.rto.sample(rtt)
            if recovery.episode is not None:
                recovery.check_spurious(now, ecr)
            recovery.new_ack()
            flight = (snd.max - ack) & MASK        # SND.MAX - SND.UNA (SendSpace.in_flight)
            self.cc.on_ack(acked, rtt, now, ack=ack, flight=flight, snd_max=snd.max)   # False: not in recovery
            if flight == 0:
                timers.stop(_RETRANSMIT)
            elif not probing:
                timers.arm(_RETRANSMIT, now + self.rto.rto)
                recovery.arm_tlp(now)
            # (no FIN of ours can be queued in ESTABLISHED: CLOSE moves to FIN-WAIT-1)
            if freed:
                self._event(_EV_WRITABLE)
            recovery.after_ack(now, acked, False)  # (its "output due" is the output below)
        elif acked:
            # data of ours in flight: the loss detection sees this ACK too (RFC 8985 §6.2), as on the full path
            self.recovery.after_ack(now, 0, False)
        # §3.10.7.4 fifth, the window update with the window unchanged: SND.WL1/WL2 follow
        # (SND.WL1 < SEG.SEQ, or WL1 = SEQ and WL2 =< ACK; seq_diff inlined), as on the full path
        wl1 = snd.wl1
        if wl1 != seq:
            if ((wl1 - seq) & MASK) >= HALF:
                snd.wl1 = seq
                snd.wl2 = ack
        elif snd.wl2 == ack or ((snd.wl2 - ack) & MASK) >= HALF:
            snd.wl2 = ack
        if acked > 0:
            if snd.wnd == 0:
                sender.window_closed(now)
            elif probing or timers.kind is _PERSIST or sender.persist_backoff:
                sender.window_opened(now)
            if self.state is not ESTABLISHED or self.user_closed:
                # The WRITABLE callback closed or aborted the connection: the rest as the full path.
                if self.state is not CLOSED:
                    if n:
                        self._process_text(None, seq, payload, ACK, now)
                    if self.state is not CLOSED:
                        if self.keepalive:
                            sender.heard(now)
                        self.flush(now)
                self._cause = None
                return True
        if n:
            if n < _KEEP_MIN:
                rcv.buf.data += payload            # the one copy of the payload
            else:
                rcv.buf.append(payload)            # kept (a super-segment's view) or copied once
            rcv.nxt = (rcv_nxt + n) & MASK
            if beyond:                             # data taken from the rounding allowance (take_in_order)
                rcv.committed = rcv.nxt
            # READABLE (_event, inlined: it runs per segment)
            self.events.append(_EV_READABLE)
            cb = self.on_event
            if cb is not None:
                try:
                    cb(_EV_READABLE)
                except Exception:  # the loop never dies because of a user callback
                    log.exception("on_event callback failed for %s", _EV_READABLE)
            d = self.acks.on_data(now, rcv, self.rto.rto, n)
            if d is not None:
                timers = self.timers
                if timers.delack is None:
                    timers.delack = d
        if self.keepalive:
            self.sender.heard(now)
        if self.state is ESTABLISHED:              # (the callback may have closed or aborted it)
            # A flush asked for (_dirty: after the application read, a window update) is this
            # segment's ACK; output has nothing to do without data queued (no FIN is queued in
            # ESTABLISHED, and nothing can be in flight or to retransmit with the buffer empty).
            if snd.buf.data:
                self.sender.output(now)
            acks = self.acks
            if acks.due:
                if acks.round_end:
                    # A super-segment's ACK that leaves at the end of the input round, after the
                    # application's callbacks (delack.py): a read there re-opens the window in it.
                    if not self._dirty:
                        self._dirty = True
                        self.host.flush_after_input(self)
                    return True
                self.sender.send(now, snd.max, ACK)
            self._dirty = False
        return True

    def _on_segment_syn_sent(self, seg, now: float) -> None:
        """RFC 9293 §3.10.7.3."""
        flags = seg.flags
        snd = self.snd
        ack_ok = False
        if flags & ACK:
            ack = seg.ack
            # first: SEG.ACK =< ISS or SEG.ACK > SND.NXT -> RST (unless RST), drop
            if seq_diff(ack, snd.iss) <= 0 or seq_diff(ack, snd.max) > 0:
                if not flags & RST:
                    self.segs_out += 1
                    self.host.send_reset(self, ack, 0, RST)
                self.host.count("tcp.in.drop.bad_ack")
                return
            ack_ok = True
        if flags & RST:
            # second: RST with acceptable ACK -> "connection refused"
            if ack_ok:
                self.host.count("tcp.attempt_fails")
                self.fail(ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {_ip(self.remote_addr)}:"
                                                 f"{self.remote_port} refused"), ConnEvent.REFUSED)
            return
        if not flags & SYN:
            return
        # fourth: SYN
        rcv = self.rcv
        rcv.start_after_syn(seg.seq)
        self.neg.apply_peer_syn(seg.options, now, snd, rcv)
        self.cc.set_mss(snd.mss)
        snd.set_window(seg.window, seg.seq, snd.wl2)     # unscaled in SYN segments
        if ack_ok:
            snd.wl2 = seg.ack
            snd.una = seg.ack
            self.bytes_acked += 1                  # our SYN
            self.timers.stop(_RETRANSMIT)
            self._sample_handshake_rtt(seg.options.ts_ecr, now)
            self._establish(now)
            self.recovery.retries = 0
            self.acks.due = True
            if len(seg.payload) or flags & FIN:
                # Data/FIN on a SYN-ACK: continue with the sixth step (§3.10.7.3)
                self._process_text(seg, (seg.seq + 1) & MASK, seg.payload, flags, now)
        else:
            # Simultaneous open (§3.10.7.3 fourth, "otherwise"): SYN-RECEIVED, send SYN-ACK
            snd.wl2 = snd.iss
            self._set_state(SYN_RECEIVED, now)
            self.sender.send_syn(now, synack=True)

    def _sample_handshake_rtt(self, ecr, now: float) -> None:
        """RTT of the handshake: from TSecr, or (Karn) only if the SYN was not retransmitted."""
        if self.neg.ts_enabled and ecr:
            self.rto.sample(self.neg.rtt_from_ecr(ecr, now))
        elif not self.syn_retransmitted:
            self.rto.sample(now - self.syn_time)

    def _establish(self, now: float) -> None:
        self._set_state(ESTABLISHED, now)
        self.acks.enter_quickack(self.rcv.wnd, self.rcv.mss)
        if self.keepalive:
            self.sender.heard(now)
        if self.syn_retransmitted and self.rto.samples == 0:
            self.rto.after_syn_timeout()             # RFC 6298 §5.7
        else:
            self.rto.reset_backoff()
        self._event(ConnEvent.ESTABLISHED)
        if self.snd.buf.data or self.snd.fin_queued:
            self._dirty = True

    def _on_segment_sync(self, seg, now: float) -> None:
        """RFC 9293 §3.10.7.4: SYN-RECEIVED and all synchronized states."""
        flags = seg.flags
        seq = seg.seq
        payload = seg.payload
        st = self.state
        rcv = self.rcv
        snd = self.snd
        neg = self.neg
        if st is SYN_RECEIVED and flags & SYN and seq == rcv.irs:
            if not flags & ACK:
                # A retransmitted SYN: our SYN-ACK was lost; send it again.
                self.sender.send_syn(now, synack=True)
                return
            # Simultaneous open: the peer's SYN-ACK repeats the SYN we already took (BSD trims it).
            flags &= ~SYN
            seq = (seq + 1) & MASK
        seg_len = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)

        # PAWS, RFC 7323 §5.3 R1 (before the sequence check)
        opts = seg.options
        tsval = opts.ts_val
        if neg.ts_enabled and tsval is not None and not flags & RST and neg.ts_older(tsval):
            if (not payload and not flags & (SYN | FIN) and seq == rcv.nxt and seg.ack == snd.una
                    and ((neg.ts_recent - tsval) & MASK) <= int(self.rto.rto * 1000)):
                # A reordered duplicate ACK, not an old duplicate segment: PAWS exists
                # to reject wrapped *data*; dropping it would hide a dup ACK from loss
                # recovery (Linux tcp_disordered_ack).  Process it, keep TS.Recent.
                pass
            elif neg.paws_rejects(tsval, now):
                self.host.count("tcp.in.drop.paws")
                self.sender.send_ack(now)
                return

        # first: sequence number (acceptability) check
        if not rcv.acceptable(seq, seg_len):
            if rcv.wnd == 0 and seq == rcv.nxt and flags & ACK and not flags & (RST | SYN):
                # §3.10.7.4: with a zero window, still process valid ACKs (drop the text).
                self.host.count("tcp.in.drop.zero_window")
                self._process_ack(seg, seq, now)
                self.acks.due = True
                return
            self.host.count("tcp.in.drop.unacceptable")
            if payload and neg.sack_ok and seq_diff((seq + len(payload)) & MASK, rcv.nxt) <= 0:
                rcv.note_duplicate(seq, len(payload))     # [D-SACK] an old duplicate (RFC 2883 §4)
            if not flags & RST:
                if st is TIME_WAIT and flags & FIN:
                    self.timers.arm(_TIME_WAIT, now + 2 * self.config.msl)
                self.sender.send_ack(now)
            return

        # RFC 7323 §4.3: remember the timestamp to echo.
        if neg.ts_enabled and tsval is not None:
            neg.remember(tsval, seq, rcv.last_ack_sent, now)

        # second: RST (RFC 9293 §3.10.7.4 second, RFC 5961 §3.2): only an RST at exactly
        # RCV.NXT resets; one elsewhere in the window gets a challenge ACK, so that a blind
        # attacker must guess the one right number, not just land in the window.
        if flags & RST:
            if seq != rcv.nxt:
                self.host.count("tcp.in.rst_in_window")
                self._challenge_ack(now)
                return
            self._on_rst()
            return

        # fourth: SYN in window -> challenge ACK (RFC 9293 §3.10.7.4 fourth, RFC 5961 §4)
        if flags & SYN:
            if st is SYN_RECEIVED and self.passive:
                # "return to LISTEN": the half-open connection is discarded.
                self._enter_closed(None)
                return
            self.host.count("tcp.in.syn_in_window")
            self._challenge_ack(now)
            return

        # fifth: ACK
        if not flags & ACK:
            self.host.count("tcp.in.drop.no_ack")
            return
        if st is SYN_RECEIVED:
            ack = seg.ack
            if seq_diff(ack, snd.una) > 0 and seq_diff(ack, snd.max) <= 0:
                snd.set_window(seg.window << snd.wscale, seq, ack)
                self._sample_handshake_rtt(opts.ts_ecr, now)
                snd.una = (snd.iss + 1) & MASK
                self.bytes_acked += 1              # our SYN-ACK
                self.timers.stop(_RETRANSMIT)
                self.recovery.retries = 0
                fin_before = snd.fin_queued
                self._establish(now)
                if fin_before:
                    self._set_state(FIN_WAIT_1, now)
                if self.passive:
                    self.host.established(self)
            else:
                self.segs_out += 1
                self.host.send_reset(self, ack, 0, RST)
                return
        if not self._process_ack(seg, seq, now):
            return
        if self.state is CLOSED:
            return

        # sixth (URG) is ignored (RFC 9293 §3.8.5: no urgent support needed by apps).
        # seventh & eighth: text and FIN
        if payload or flags & FIN:
            self._process_text(seg, seq, payload, flags, now)

    def _challenge_ack(self, now: float) -> None:
        """A challenge ACK (RFC 5961 §3.2, §4.2, §5.2), rate-limited (RFC 5961 §7): at most one
        per ``challenge_ack_interval`` per connection, and within the host's global budget."""
        if now - self._last_challenge < self.config.challenge_ack_interval or not self.host.challenge_ack_allowed(now):
            self.host.count("tcp.challenge_acks_limited")
            return
        self._last_challenge = now
        self.host.count("tcp.in.challenge_ack")
        self.sender.send_ack(now)

    def _on_rst(self) -> None:
        """RFC 9293 §3.10.7.4 second: an acceptable RST."""
        st = self.state
        if st is SYN_RECEIVED:
            if self.passive:
                self.host.count("tcp.in.rst_in_syn_recv")
                self._enter_closed(None)          # back to LISTEN
            else:
                self.host.count("tcp.attempt_fails")
                self.fail(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused"), ConnEvent.REFUSED)
        elif st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.host.count("tcp.estab_resets")
            self.rcv.buf.clear()
            self.fail(ConnectionResetError(errno.ECONNRESET, "connection reset by peer"), ConnEvent.RESET)
        elif st is TIME_WAIT:
            # RFC 1337 (TIME-WAIT assassination, hazard H1): an RST must not end TIME-WAIT early,
            # or an old duplicate could be taken into a new incarnation of the connection.
            self.host.count("tcp.in.rst_in_time_wait")
        else:  # CLOSING, LAST-ACK
            self._enter_closed(None)

    def _process_ack(self, seg, seq: int, now: float) -> bool:
        """RFC 9293 §3.10.7.4 fifth, synchronized states.  False means "drop the segment"."""
        ack = seg.ack
        snd = self.snd
        recovery = self.recovery
        timers = self.timers
        snd_una = snd.una
        acked = seq_diff(ack, snd_una)
        self.sender.probes_unanswered = 0
        probing = timers.kind is _PERSIST          # the zero-window probe timer runs
        if seq_diff(ack, snd.max) > 0:
            # ACKs something not yet sent: send an ACK, drop the segment.
            self.host.count("tcp.in.drop.ack_unsent")
            self._challenge_ack(now)
            return False
        if seq_diff(ack, (snd_una - snd.max_wnd) & MASK) < 0:
            # RFC 5961 §5.2: acceptable only if SND.UNA - MAX.SND.WND =< SEG.ACK; an older ACK
            # is a blind data injection's guess: drop the segment, send a (challenge) ACK.
            self.host.count("tcp.in.drop.ack_too_old")
            self._challenge_ack(now)
            return False
        wnd = seg.window << snd.wscale
        new_sack = False
        sb = recovery.scoreboard
        sacked_before = sb.sacked_bytes
        dsack = False
        if self.neg.sack_ok:
            blocks = seg.options.sack_blocks
            if blocks:
                n_blocks = len(blocks)
                blocks = recovery.take_dsack(blocks, ack, now)     # [recovery] RFC 2883 §4 D-SACK
                dsack = len(blocks) < n_blocks
                new_sack = sb.update(blocks, ack if acked > 0 else snd_una, snd.max)
            elif acked > 0 and sb.blocks:
                sb.trim(ack)
        if acked > 0:
            self.bytes_acked += acked
            freed = snd.acknowledge(ack)
            # RTT sample: TSecr (RFC 7323 §4.1) or the timed segment (Karn, RFC 6298 §3)
            ecr = seg.options.ts_ecr
            if self.neg.ts_enabled and ecr:
                rtt = self.neg.rtt_from_ecr(ecr, now)
            else:
                rtt = self.rto.sample_timed(ack, now)
            if rtt is not None:
                self.rto.sample(rtt)
            if recovery.episode is not None:
                recovery.check_spurious(now, ecr)                 # [recovery] Eifel, RFC 3522
            recovery.new_ack()
            if recovery.frto and recovery.frto_ack(now, acked):   # [recovery] F-RTO, RFC 5682
                self._dirty = True
            flight = snd.in_flight
            if self.cc.on_ack(acked, rtt, now, ack=ack, flight=flight, snd_max=snd.max):
                # NewReno partial ACK (RFC 6582 step 5); with SACK, output fills the holes
                if not (self.neg.sack_ok and sb.blocks):
                    recovery.retransmit_head(now)
                self._dirty = True
            elif recovery.recovering:
                recovery.recovery_ack(now)                        # [recovery] a full ACK ends it
            # RFC 6298 §5.2/§5.3: stop the timer when all is acked, else restart it.
            if flight == 0:
                timers.stop(_RETRANSMIT)
            elif not probing:                      # (while probing, the window decides below)
                timers.arm(_RETRANSMIT, now + self.rto.rto)
                recovery.arm_tlp(now)
            if snd.fin_acked(ack):
                st = self.state
                if st is FIN_WAIT_1:
                    self._set_state(FIN_WAIT_2, now)
                    if self.user_closed:
                        timers.arm(_FIN_WAIT_2, now + self.config.fin_timeout)
                elif st is CLOSING:
                    self._enter_time_wait(now)
                elif st is LAST_ACK:
                    self._enter_closed(None)
                    return False
            if freed:
                self._dirty = True
                if not snd.fin_queued and self.state in USER_SEND_STATES:
                    self._event(ConnEvent.WRITABLE)
        elif (acked == 0 and snd.max != snd_una and not seg.payload
              and not seg.flags & (SYN | FIN) and (wnd == snd.wnd or new_sack)):
            if recovery.frto:
                recovery.frto_ack(now, 0)                         # [recovery] F-RTO step 2a/3a
            else:
                recovery.on_duplicate_ack(now, ack)
            self._dirty = True
        if recovery.tlp_end is not None:           # [recovery] did a tail loss probe repair a loss?
            recovery.tlp_ack(now, ack, dsack, acked == 0 and not seg.payload and not new_sack
                             and not seg.flags & (SYN | FIN) and wnd == snd.wnd)
        # [recovery] loss detection (RACK / RFC 6675) and PRR see every ACK
        if recovery.after_ack(now, (acked if acked > 0 else 0) + sb.sacked_bytes - sacked_before, new_sack):
            self._dirty = True
        # Window update (§3.10.7.4 fifth: SND.WL1 < SEG.SEQ or (WL1 = SEQ and WL2 =< ACK))
        if acked >= 0 and snd.update_window(seq, ack, wnd):
            self._dirty = True
        if snd.wnd == 0:
            self.sender.window_closed(now)
        elif probing or timers.kind is _PERSIST or self.sender.persist_backoff:
            self.sender.window_opened(now)
        return True

    def _process_text(self, seg, seq: int, payload, flags: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 seventh (segment text) and eighth (FIN)."""
        st = self.state
        rcv = self.rcv
        rcv_nxt = rcv.nxt
        n = len(payload)
        fin = flags & FIN
        if n and st in RECV_TEXT_STATES:
            if self.user_closed:
                # Data for a closed socket: nobody can read it (RFC 2525 §2.17, Linux).
                self.host.count("tcp.in.data_after_close")
                self._send_rst()
                self.fail(ConnectionResetError(errno.ECONNRESET, "data received after close"), ConnEvent.RESET)
                return
            off = seq_diff(seq, rcv_nxt)
            if off < 0:                                   # trim the already-received front
                if self.neg.sack_ok:                      # [D-SACK] RFC 2883 §4: report the duplicate part
                    rcv.note_duplicate(seq, min(-off, n))
                payload = payload[-off:]
                n += off
                seq = rcv_nxt
                off = 0
                self.acks.due = True                      # duplicate data: ACK at once
                if n <= 0:
                    n = 0
            wnd = seq_diff(rcv.adv, rcv_nxt)
            if off + n > wnd:                             # trim beyond the window
                keep = wnd - off
                if keep < 0:
                    keep = 0
                payload = payload[:keep]
                n = keep
                fin = 0
            if off == 0:
                room = rcv.room
                if n > room:
                    # Beyond the buffer and its slack for the window's rounding (recv_space.py):
                    # not stored, not acknowledged.
                    self.host.count("tcp.in.drop.rcvbuf_full")
                    payload = payload[:room]
                    n = room
                    fin = 0
                    self.acks.due = True
                if n:
                    if rcv.take_in_order(payload, n):
                        self.acks.due = True              # filled a hole: ACK at once (RFC 5681 §4.2)
                    rcv_nxt = rcv.nxt
                    if rcv.ooo.fin_seq is not None and rcv.ooo.fin_seq == rcv_nxt:
                        fin = FIN                         # a FIN held beyond the hole is now in order
                        seq = rcv_nxt
                        n = 0
                    self._event(_EV_READABLE)
                    self._data_arrived(now, n)
            else:
                # Out of order: hold it, ACK immediately (RFC 5681 §4.2, RFC 9293 §3.10.7.4)
                self.host.count("tcp.in.ooo_segs")
                held = rcv.ooo.nbytes
                if not rcv.ooo.insert(seq, payload, rcv_nxt):
                    self.host.count("tcp.in.drop.ooo_full")
                else:
                    if rcv.ooo.nbytes == held and n and self.neg.sack_ok:
                        rcv.note_duplicate(seq, n)        # [D-SACK] all of it held already (RFC 2883 §4)
                    if fin:
                        rcv.ooo.fin_seq = (seq + n) & MASK
                self.acks.due = True
                return
        elif n:
            # Text in CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: ignore (FIN already seen).
            if seq_diff((seq + n) & MASK, rcv_nxt) > 0:
                self.acks.due = True
        if fin:
            fin_seq = (seq + n) & MASK
            if fin_seq == rcv.nxt:
                self._process_fin(now)
            elif seq_diff(fin_seq, rcv.nxt) > 0 and st in RECV_TEXT_STATES:
                rcv.ooo.fin_seq = fin_seq
                self.acks.due = True
            else:
                self.acks.due = True               # an old FIN again: re-ACK

    def _process_fin(self, now: float) -> None:
        """RFC 9293 §3.10.7.4 eighth: the FIN bit, in sequence."""
        st = self.state
        rcv = self.rcv
        self.acks.due = True
        if st in (CLOSE_WAIT, CLOSING, LAST_ACK):
            return
        if st is TIME_WAIT:
            self.timers.arm(_TIME_WAIT, now + 2 * self.config.msl)
            return
        rcv.nxt = (rcv.nxt + 1) & MASK
        rcv.fin_received = True
        rcv.ooo.fin_seq = None
        if st is ESTABLISHED or st is SYN_RECEIVED:
            self._set_state(CLOSE_WAIT, now)
        elif st is FIN_WAIT_1:
            if self.snd.fin_acked(self.snd.una):
                self._enter_time_wait(now)
            else:
                self._set_state(CLOSING, now)
        elif st is FIN_WAIT_2:
            self._enter_time_wait(now)
        self._event(ConnEvent.EOF)

    def _enter_time_wait(self, now: float) -> None:
        """TIME-WAIT for 2*MSL (RFC 9293 §3.4.2, §3.10.7.4 eighth)."""
        self._set_state(TIME_WAIT, now)
        self.timers.arm(_TIME_WAIT, now + 2 * self.config.msl)
        self.timers.delack = None

    def _data_arrived(self, now: float, n: int = 0) -> None:
        """In-order data arrived, ``n`` bytes in this segment: ACK now or arm the delayed-ACK
        timer (delack.py)."""
        d = self.acks.on_data(now, self.rcv, self.rto.rto, n)
        if d is not None and self.timers.delack is None:
            self.timers.delack = d

    def _rcv_space_adjust(self, now: float) -> None:
        """Receive-buffer autotuning (ReceiveSpace.space_adjust), after an application read as
        Linux's tcp_recvmsg does it (not per segment; ``now`` is the host's clock, the time of
        the input or timer it last processed), measured over the
        connection's RTT estimate (RFC 6298: from the handshake or the ACKs; the RTO before
        any sample)."""
        srtt = self.rto.srtt
        self.rcv.space_adjust(now, srtt if srtt is not None else self.rto.rto)

    @property
    def rcvbuf(self) -> int:
        """The receive buffer's size now, in bytes (grown by autotuning, or fixed by
        :meth:`set_rcvbuf`): what bounds the window we advertise."""
        return self.rcv.buf.capacity

    def set_rcvbuf(self, size: int) -> None:
        """Fix the receive buffer at ``size`` bytes (SO_RCVBUF): autotuning stops for this
        connection, as on Linux.  The buffer never shrinks below what it already holds or
        what the window promised (RFC 9293 §3.8.6: the window is not shrunk), so a smaller
        size takes effect as the advertised window is used up."""
        if size <= 0:
            raise ValueError("the receive buffer size must be positive")
        rcv = self.rcv
        rcv.disable_autotune()
        promised = len(rcv.buf) + rcv.wnd
        rcv.buf.capacity = size if size > promised else promised

    def _after_user_read(self) -> None:
        """The user consumed data: once an RTT has passed, the receive buffer's autotuning
        (``_rcv_space_adjust``); send a window update if it opens enough (RFC 1122 §4.2.3.3),
        or the delayed ACK of two full-sized segments or more that waited for this read (a
        super-segment, delack.py; Linux tcp_cleanup_rbuf)."""
        rcv = self.rcv
        now = self.host.now
        if now >= rcv.space_due:                   # receive-buffer autotuning, once per RTT
            self._rcv_space_adjust(now)
        if self.state in RECV_TEXT_STATES and (rcv.window_update_due() or (
                self.timers.delack is not None and ((rcv.nxt - rcv.last_ack_sent) & MASK) >= 2 * rcv.mss)):
            self.acks.due = True
            self._want_flush()

    # ------------------------------------------------------------------ output

    def flush(self, now: float) -> None:
        """Send whatever is due: data/FIN under the windows, else a pending ACK."""
        self._dirty = False
        st = self.state
        if self.keepalive and self.timers.kind is None and (st is ESTABLISHED or st is CLOSE_WAIT):
            self.sender.heard(now)
        if st in SEND_STATES:
            self.sender.output(now)
        if self.acks.due and self.state is not CLOSED and self.state is not SYN_SENT:
            self.sender.send_ack(now)

    @property
    def flush_pending(self) -> bool:
        """A user call asked for a flush that has not happened yet."""
        return self._dirty

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        """Fire every due timer (the host calls this when next_deadline() has come)."""
        t = self.timers
        kind = t.kind
        if kind is not None and t.deadline <= now:
            t.stop()
            self._cause = TimerCause(kind)
            if kind is _RETRANSMIT:
                if self._give_up(self.recovery.on_retransmit_timeout(now)):
                    return
            elif kind is _PERSIST:
                if self._give_up(self.sender.on_persist_timeout(now)):
                    return
            elif kind is _KEEPALIVE:
                if self._give_up(self.sender.on_keepalive_timeout(now)):
                    return
            elif self.state is TIME_WAIT or self.state is FIN_WAIT_2:     # TIME_WAIT, FIN_WAIT_2
                self._enter_closed(None)
                return
        if t.tlp is not None and t.tlp <= now:
            t.tlp = None
            self._cause = TimerCause(Timer.TLP)
            self.recovery.on_tlp_timeout(now)
        if t.reo is not None and t.reo <= now:
            t.reo = None
            self._cause = TimerCause(Timer.REORDER)
            self.recovery.on_reorder_timeout(now)
        if t.delack is not None and t.delack <= now:
            t.delack = None
            self._on_delack_timeout()
        if self.state is not CLOSED:
            self.flush(now)

    def _on_delack_timeout(self) -> None:
        """The delayed-ACK timer (<= 200 ms) fired: ACK what we hold (RFC 9293 §3.8.6.3)."""
        if self.state is not CLOSED and self.state is not SYN_SENT:
            self.host.count("tcp.delayed_acks")
            self.acks.on_timeout()

    # ------------------------------------------------------------------ ICMP

    def on_icmp_error(self, icmp_type: int, code: int, info: int, now: float) -> None:
        """An ICMP error about one of our segments, already checked to quote one in
        SND.UNA..SND.MAX (RFC 5927 §4.1) by the host.  Fragmentation needed lowers
        the MSS (RFC 1191 §6.2); protocol/port unreachable during SYN-SENT refuses the
        connection; everything else is a soft error (RFC 1122 §4.2.3.9, RFC 5461)."""
        self._cause = ErrorCause(icmp_type, code)
        if icmp_type == 3 and code == 4:
            self.host.count("tcp.in.icmp.frag_needed")
            self.recovery.on_path_mtu(info, now)
        elif icmp_type == 3 and code in (2, 3) and self.state is SYN_SENT:
            self.host.count("tcp.in.icmp.unreachable")
            self.host.count("tcp.attempt_fails")
            self.fail(ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (ICMP unreachable)"),
                      ConnEvent.REFUSED)
        else:
            self.host.count("tcp.in.icmp.soft_errors")
            self.soft_error = (icmp_type, code)

    def quotes_in_flight(self, seq: int) -> bool:
        """RFC 5927 §4.1: ``seq`` lies in SND.UNA..SND.NXT, i.e. SND.UNA <= seq < SND.MAX (the highest
        sent): the quoted segment was sent and is not acknowledged.  Nothing in flight, nothing quoted:
        the next sequence number of an idle connection is no segment of ours."""
        snd = self.snd
        return seq_diff(seq, snd.una) >= 0 and seq_diff(snd.max, seq) > 0


def _ip(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"
