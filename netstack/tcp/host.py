"""What a connection asks of its host: the one declared interface out of a Connection.

A :class:`~netstack.tcp.connection.Connection` never touches the layer's or
a listener's members; the :class:`~netstack.tcp.layer.TCPLayer` is its host
and implements this protocol.  Tests drive a connection with a fake host
that records what comes out.

Segments leave as fields (the repr; serialising is segment.py's job):
sequence and acknowledgment numbers, control bits, the window field, the
payload (a view of the send buffer: serialise it before the buffer moves),
and the options as values.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .connection import Connection
    from .events import RecoveryEvent, StateChange
    from .negotiation import SynOptions


class ConnectionHost(Protocol):
    #: The time of the input or timer being processed (the caller's clock, never a wall clock).
    now: float

    def emit(self, conn: "Connection", seq: int, ack: int, flags: int, window: int, payload,
             ts: tuple[int, int] | None, sack_blocks: list | None, syn: "SynOptions | None") -> None:
        """Send one segment of ``conn`` (DF set: path-MTU discovery, RFC 1191)."""

    def emit_ack(self, conn: "Connection", seq: int, ack: int, flags: int, window: int, tsval: int,
                 tsecr: int) -> bool:
        """Send a pure ACK of ``conn`` with timestamps and no other option (the receive path's
        ACK), as :meth:`emit` would.  False when its fields do not fit that shape (flags beyond
        9 bits, an out-of-range field): nothing is sent, and the caller uses :meth:`emit`."""

    def send_reset(self, conn: "Connection", seq: int, ack: int, flags: int) -> None:
        """Send an RST (``flags`` include RST, maybe ACK) on ``conn``'s 4-tuple, outside its state."""

    def count(self, name: str, n: int = 1) -> None:
        """Increment the counter ``name`` (``tcp.retrans_segs``, ``tcp.in.drop.paws`` ...)."""

    def challenge_ack_allowed(self, now: float) -> bool:
        """The global challenge-ACK budget (RFC 5961 §7) allows one more now (and takes it)."""

    def may_orphan(self, conn: "Connection") -> bool:
        """The application closes ``conn``: may it wind down on its own (an orphan)?"""

    def want_flush(self, conn: "Connection") -> None:
        """A user call queued work: call ``conn.flush(now)`` soon (it has no ``now`` of its own)."""

    def flush_after_input(self, conn: "Connection") -> None:
        """Call ``conn.flush(now)`` once the input under way and the application's callbacks for
        it are done, in the same loop turn (the ACK of a super-segment, delack.py): at the next
        poll, which the host asks for as it does for :meth:`want_flush`."""

    def established(self, conn: "Connection") -> None:
        """A passive open completed its handshake: it is ready for ``accept()``."""

    def closed(self, conn: "Connection") -> None:
        """``conn`` reached CLOSED: forget it (its 4-tuple is free again)."""

    def transition(self, conn: "Connection", change: "StateChange") -> None:
        """``conn`` changed state (for observers: a state log, a picture)."""

    def recovery_event(self, conn: "Connection", event: "RecoveryEvent") -> None:
        """``conn`` had a congestion or loss-recovery event (for observers: a state log, a report).
        Called only on recovery paths (never per segment)."""
