"""A connection's timers (RFC 9293 §3.8, RFC 6298, RFC 1122 §4.2.2.17, RFC 8985 §7).

Nothing here sleeps: a timer is a deadline in the caller's clock.  The
connection asks ``next_deadline()``; the stack calls ``poll(now)`` when it
comes.

The rules between the timers are made structural, as smoltcp's
``enum Timer`` does:

* **One exclusive slot** holds at most one of RETRANSMIT, PERSIST,
  KEEPALIVE, TIME_WAIT and FIN_WAIT_2.  They can never be armed together:
  arming one replaces the other.  (Data in flight is watched by the
  retransmission timer; a zero window with data queued or in flight by the
  persist timer (its probes replace retransmissions until the window opens);
  an idle connection by keep-alive; a closing one by TIME-WAIT's 2*MSL or
  the orphan FIN-WAIT-2 limit.)
* **Two independent timers**: DELAYED_ACK (RFC 9293 §3.8.6.3), and TLP, the
  tail loss probe (RFC 8985 §7), which exists only in front of an armed
  retransmission timer: it is refused unless it comes before the RTO, and
  it is cleared whenever the slot stops holding RETRANSMIT.

The read-only properties (``retransmit``, ``persist``, ...) give one timer's
deadline, or None, for tests and the connection table.
"""
from __future__ import annotations

import enum


class Timer(enum.Enum):
    """Every timer a connection has."""
    RETRANSMIT = "retransmit"     #: RFC 6298: data, SYN or FIN unacknowledged (exclusive slot)
    PERSIST = "persist"           #: RFC 9293 §3.8.6.1: zero-window probes (exclusive slot)
    KEEPALIVE = "keepalive"       #: RFC 1122 §4.2.3.6: idle probes (exclusive slot)
    TIME_WAIT = "timewait"        #: RFC 9293 §3.4.2: 2*MSL in TIME-WAIT (exclusive slot)
    FIN_WAIT_2 = "finwait2"       #: orphaned FIN-WAIT-2 limit after close() (exclusive slot)
    DELAYED_ACK = "delack"        #: RFC 9293 §3.8.6.3 (independent)
    TLP = "tlp"                   #: RFC 8985 §7.2 tail loss probe (independent, before the RTO)


#: The timers that share the one exclusive slot.
EXCLUSIVE = frozenset({Timer.RETRANSMIT, Timer.PERSIST, Timer.KEEPALIVE, Timer.TIME_WAIT, Timer.FIN_WAIT_2})

_RETRANSMIT = Timer.RETRANSMIT


class Timers:
    """The exclusive slot plus the delayed-ACK and TLP deadlines."""

    __slots__ = ("kind", "deadline", "delack", "tlp")

    def __init__(self) -> None:
        self.kind: Timer | None = None        #: what the exclusive slot holds, or None
        self.deadline: float | None = None    #: when it fires
        self.delack: float | None = None      #: the delayed-ACK deadline, or None
        self.tlp: float | None = None         #: the tail-loss-probe deadline, or None

    # -- the exclusive slot ---------------------------------------------------------------------
    def arm(self, kind: Timer, at: float) -> None:
        """Put ``kind`` in the exclusive slot, replacing whatever it held."""
        if kind is Timer.DELAYED_ACK or kind is Timer.TLP:      # identity tests: this runs per ACK
            raise ValueError(f"{kind} does not use the exclusive slot")
        if kind is not _RETRANSMIT:
            self.tlp = None
        self.kind = kind
        self.deadline = at

    def stop(self, kind: Timer | None = None) -> None:
        """Empty the slot (only if it holds ``kind``, when given)."""
        if kind is None or self.kind is kind:
            if self.kind is _RETRANSMIT:
                self.tlp = None
            self.kind = self.deadline = None

    def holds(self, kind: Timer) -> bool:
        return self.kind is kind

    # -- the tail loss probe --------------------------------------------------------------------
    def arm_tlp(self, at: float) -> bool:
        """Arm the TLP at ``at`` if the retransmission timer is armed and later (RFC 8985 §7.2)."""
        if self.kind is _RETRANSMIT and at < self.deadline:
            self.tlp = at
            return True
        self.tlp = None
        return False

    # -- all of them ----------------------------------------------------------------------------
    def stop_all(self) -> None:
        self.kind = self.deadline = self.delack = self.tlp = None

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None."""
        best = self.deadline
        d = self.delack
        if d is not None and (best is None or d < best):
            best = d
        d = self.tlp
        if d is not None and (best is None or d < best):
            best = d
        return best

    def _of(self, kind: Timer) -> float | None:
        return self.deadline if self.kind is kind else None

    @property
    def retransmit(self) -> float | None:
        return self._of(_RETRANSMIT)

    @property
    def persist(self) -> float | None:
        return self._of(Timer.PERSIST)

    @property
    def keepalive(self) -> float | None:
        return self._of(Timer.KEEPALIVE)

    @property
    def timewait(self) -> float | None:
        """TIME-WAIT's 2*MSL, or the orphan FIN-WAIT-2 limit."""
        return self.deadline if self.kind is Timer.TIME_WAIT or self.kind is Timer.FIN_WAIT_2 else None

    def as_dict(self) -> dict:
        """{timer name: deadline} of the armed timers (for ``info()`` and the ss-style table)."""
        out = {}
        if self.kind is not None:
            out[self.kind.value] = self.deadline
        if self.delack is not None:
            out[Timer.DELAYED_ACK.value] = self.delack
        if self.tlp is not None:
            out[Timer.TLP.value] = self.tlp
        return out
