"""What a connection tells its user and its observers: typed events, never strings.

Two kinds, in the manner of h11's ``_events.py``:

* :class:`ConnEvent`, delivered to ``Connection.on_event`` (the socket layer's
  hook) and recorded in ``Connection.events``.  ``CLOSED`` always comes last;
  ``RESET``, ``REFUSED`` and ``TIMEOUT`` come just before it when the
  connection failed (``Connection.error`` then holds the exception).
* :class:`StateChange`, one for every transition between the eleven states of
  RFC 9293 §3.3.2, with its cause: the segment that caused it (its flags, seq
  and ack: :class:`SegmentCause`), the timer that fired (:class:`TimerCause`)
  or the user call (:class:`UserCause`).  They are recorded in
  ``Connection.transitions`` and handed to the layer's ``on_transition``
  observer (a state log, a picture of the state diagram).

:class:`RecoveryEvent`, one for every congestion or loss-recovery event (fast
retransmit, a SACK/RACK recovery, the end of recovery, a retransmission
timeout, a tail loss probe, an undo of a spurious reduction), with the
congestion window and slow-start threshold after it.  Raised by recovery.py
through the host's ``recovery_event`` and handed to the layer's
``on_recovery`` observer (the state log, ``netstack report``).

:class:`ListenerEvent` is what a listening socket says (a connection is ready
for ``accept()``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from .state import State
from .timers import Timer


class ConnEvent(enum.Enum):
    """What a connection tells the socket layer."""
    ESTABLISHED = enum.auto()   #: the three-way handshake completed (RFC 9293 §3.5)
    READABLE = enum.auto()      #: in-order data arrived (``recv`` has bytes)
    WRITABLE = enum.auto()      #: the send buffer gained room (``send`` takes more)
    EOF = enum.auto()           #: the peer's FIN arrived in order (§3.10.7.4 eighth)
    RESET = enum.auto()         #: the peer reset the connection (ConnectionResetError)
    REFUSED = enum.auto()       #: the active open was refused (ConnectionRefusedError)
    TIMEOUT = enum.auto()       #: retransmissions or probes ran out (TimeoutError)
    CLOSED = enum.auto()        #: the connection reached CLOSED; always the last event

    @property
    def is_failure(self) -> bool:
        """True for the events that end a connection with an error."""
        return self in _FAILURES


_FAILURES = frozenset({ConnEvent.RESET, ConnEvent.REFUSED, ConnEvent.TIMEOUT})


class ListenerEvent(enum.Enum):
    """What a listening socket tells the socket layer."""
    ACCEPTABLE = enum.auto()    #: a connection completed its handshake and waits in the accept queue


class UserCall(enum.Enum):
    """The user calls of RFC 9293 §3.10 that change a connection's state."""
    OPEN = "open"               #: §3.10.1 (active open; a passive open is caused by the SYN)
    CLOSE = "close"             #: §3.10.4 (also a half-close, shutdown(SHUT_WR))
    ABORT = "abort"             #: §3.10.5


@dataclass(frozen=True, slots=True)
class SegmentCause:
    """The arriving segment that caused a transition: its control bits, SEG.SEQ and SEG.ACK."""
    flags: int
    seq: int
    ack: int


@dataclass(frozen=True, slots=True)
class TimerCause:
    """The timer whose expiry caused a transition."""
    timer: Timer


@dataclass(frozen=True, slots=True)
class UserCause:
    """The user call that caused a transition."""
    call: UserCall


@dataclass(frozen=True, slots=True)
class ErrorCause:
    """An ICMP error about our segments (RFC 1122 §4.2.3.9) that caused a transition."""
    icmp_type: int
    code: int


Cause = Union[SegmentCause, TimerCause, UserCause, ErrorCause]


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition of RFC 9293 §3.3.2 (Figure 5): from ``old`` to ``new`` because of ``cause``."""
    time: float
    old: State
    new: State
    cause: Cause


class RecoveryKind(enum.Enum):
    """Congestion and loss-recovery events of a connection (the ``event`` of a state-log line)."""
    FAST_RETRANSMIT = "fast-retransmit"   #: duplicate ACKs started fast recovery (RFC 5681 §3.2, RFC 6582)
    SACK_RECOVERY = "sack-recovery"       #: SACK loss detection started recovery (RFC 8985 §6, RFC 6675 §5)
    RECOVERY_EXIT = "recovery-exit"       #: a full ACK ended fast recovery (RFC 6582 §3.2 step 3)
    RTO = "rto"                           #: the retransmission timer fired (RFC 6298 §5.4-§5.7)
    TLP = "tlp"                           #: a tail loss probe went out (RFC 8985 §7.3)
    TLP_REPAIR = "tlp-repair"             #: the probe repaired a loss: cwnd reduced once (RFC 8985 §7.4)
    UNDO = "undo"                         #: a reduction was found spurious and undone (RFC 4015 §3.2)


class UndoMethod(enum.Enum):
    """How a spurious retransmission was detected."""
    EIFEL = "eifel"                       #: timestamps (RFC 3522)
    DSACK = "dsack"                       #: D-SACK blocks (RFC 3708)
    FRTO = "frto"                         #: F-RTO's two ACKs of new data (RFC 5682)


@dataclass(frozen=True, slots=True)
class RecoveryEvent:
    """One congestion or loss-recovery event: what happened and the window after it.

    ``cwnd`` and ``ssthresh`` are after the event (bytes), ``prior_cwnd`` before it (the
    reduction, or what an undo restored from); ``snd_una``/``snd_max`` are absolute
    sequence numbers; ``rto`` is the retransmission timeout after it (backed off after
    an RTO) and ``retries`` the consecutive timeouts so far; ``cc`` names the congestion
    control (``newreno``, ``cubic``) that made the reduction.  For :attr:`RecoveryKind.UNDO`,
    ``undo`` says how the spurious retransmission was found and ``undone`` what was undone
    (a fast recovery or an RTO)."""
    time: float
    kind: RecoveryKind
    cwnd: int
    ssthresh: int
    prior_cwnd: int
    snd_una: int
    snd_max: int
    rto: float
    retries: int
    cc: str
    undo: UndoMethod | None = None
    undone: RecoveryKind | None = None
