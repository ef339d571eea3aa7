"""Congestion control behind one small interface (RFC 5681).

A Connection owns one CongestionControl and calls:

  on_ack(acked_bytes, rtt, now, ack=..., flight=...) -> bool   new data acked;
        True means "retransmit the first unacknowledged segment now"
        (a NewReno partial ACK, RFC 6582 §3.2 step 5)
  on_dup_ack(now, flight=..., snd_max=..., ack=..., threshold=3) -> bool  a duplicate ACK;
        True means "fast retransmit now" (RFC 5681 §3.2 step 2)
  enter_recovery(now, flight=..., snd_max=..., ack=...) -> bool loss inferred from SACK
        (RFC 6675 IsLost); True means "fast retransmit now"
  on_timeout(now, flight=..., snd_max=...)                     the RTO fired (RFC 5681 §3.1, eqn 4)
  on_loss(now, flight=...)                                     other loss signal (ECN later)
  cwnd, ssthresh (bytes), in_recovery

Swapping the algorithm (CUBIC later) means writing another class with these
methods; the connection does not know which one it has.
"""
from __future__ import annotations


class CongestionControl:
    name = "base"
    cwnd: int
    ssthresh: int
    in_recovery: bool = False

    def on_ack(self, acked_bytes: int, rtt: float | None, now: float, *, ack: int = 0,
               flight: int = 0) -> bool:
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

    def set_mss(self, mss: int) -> None:
        raise NotImplementedError


def create(name: str = "newreno", mss: int = 1460, initial_segments: int = 10) -> CongestionControl:
    from .newreno import NewReno
    if name == "newreno":
        return NewReno(mss, initial_segments)
    raise ValueError(f"unknown congestion control {name!r}")
