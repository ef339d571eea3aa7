"""Congestion control behind one small interface (RFC 5681).

A Connection owns one CongestionControl and calls:

  on_ack(acked_bytes, rtt, now, ack=..., flight=..., snd_max=...) -> bool   new data acked;
        True means "retransmit the first unacknowledged segment now"
        (a NewReno partial ACK, RFC 6582 §3.2 step 5)
  on_dup_ack(now, flight=..., snd_max=..., ack=..., threshold=3) -> bool  a duplicate ACK;
        True means "fast retransmit now" (RFC 5681 §3.2 step 2)
  enter_recovery(now, flight=..., snd_max=..., ack=...) -> bool loss inferred from SACK or
        RACK (RFC 6675 IsLost, RFC 8985 §6.2); True means "fast retransmit now"
  on_timeout(now, flight=..., snd_max=...)                     the RTO fired (RFC 5681 §3.1, eqn 4)
  on_loss(now, flight=...)                                     other loss signal (ECN later)
  undo(now) -> bool                                            the last reduction was spurious
        (RFC 4015 §3.2 / RFC 9438 §4.9): restore cwnd, ssthresh and the algorithm's state
  cwnd, ssthresh (bytes), in_recovery, name

Two algorithms: ``cubic`` (RFC 9438 with HyStart++, RFC 9406: the default,
as in Linux) and ``newreno`` (RFC 5681 + RFC 6582).  :func:`create` makes
one by name; :data:`ALGORITHMS` lists the names.  The connection does not
know which one it has.
"""
from __future__ import annotations

#: The congestion-control algorithms :func:`create` knows (``TCP_CONGESTION`` names, as Linux's).
ALGORITHMS = ("cubic", "newreno")
#: The default, as in Linux.
DEFAULT = "cubic"


class CongestionControl:
    name = "base"
    cwnd: int
    ssthresh: int
    in_recovery: bool = False

    def on_ack(self, acked_bytes: int, rtt: float | None, now: float, *, ack: int = 0,
               flight: int = 0, snd_max: int | None = None) -> bool:
        raise NotImplementedError

    def on_dup_ack(self, now: float, *, flight: int = 0, snd_max: int = 0, ack: int | None = None,
                   threshold: int = 3) -> bool:
        raise NotImplementedError

    def enter_recovery(self, now: float, *, flight: int = 0, snd_max: int = 0, ack: int | None = None) -> bool:
        raise NotImplementedError

    def on_timeout(self, now: float, *, flight: int = 0, snd_max: int | None = None) -> None:
        raise NotImplementedError

    def on_loss(self, now: float, *, flight: int = 0) -> None:
        raise NotImplementedError

    def undo(self, now: float) -> bool:
        raise NotImplementedError

    def set_mss(self, mss: int) -> None:
        raise NotImplementedError


#: name -> class, filled on first use (the modules import this one for the base class)
_CLASSES: dict = {}


def create(name: str = DEFAULT, mss: int = 1460, initial_segments: int = 10) -> CongestionControl:
    """A congestion control by name (one of :data:`ALGORITHMS`); ValueError otherwise."""
    cls = _CLASSES.get(name)
    if cls is None:
        if name == "newreno" or name == "reno":
            from .newreno import NewReno as cls
        elif name == "cubic":
            from .cubic import Cubic as cls
        else:
            raise ValueError(f"unknown congestion control {name!r} (known: {', '.join(ALGORITHMS)})")
        _CLASSES[name] = cls
    return cls(mss, initial_segments)
