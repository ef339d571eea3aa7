"""The TCP state log: every transition of RFC 9293 §3.3.2 (Figure 5) as one JSON line.

A connection reports each state change as a typed
:class:`~netstack.tcp.events.StateChange` (old state, new state, cause) to its
layer's ``on_transition`` observer.  :class:`StateLogWriter` is such an
observer: it writes one JSON object per line::

    {"time": 0.2, "local": "198.18.0.2:25", "remote": "198.18.0.1:40000",
     "from": "LISTEN", "to": "SYN-RECEIVED",
     "cause": {"kind": "segment", "flags": "S", "seq": 2953, "ack": 0}}

The cause is one of

* ``{"kind": "segment", "flags": "S.", "seq": N, "ack": N}``: the arriving
  segment (its control bits in tcpdump's letters, SEG.SEQ and SEG.ACK, absolute);
* ``{"kind": "timer", "timer": "timewait"}``: the timer that fired
  (``retransmit``, ``persist``, ``keepalive``, ``timewait``, ``finwait2``, ...);
* ``{"kind": "user", "call": "close"}``: the user call of RFC 9293 §3.10
  (``open``, ``close``, ``abort``);
* ``{"kind": "icmp", "type": 3, "code": 3}``: an ICMP error (RFC 1122 §4.2.3.9).

Congestion and loss-recovery events (fast retransmit, RTO, tail loss probe)
are not typed events of the TCP core yet, so they are not in the log.

:func:`read_state_log` reads a log back into :class:`StateRecord` values,
with a one-line :class:`StateLogError` naming the file and line for a bad line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Iterable

from netstack.tcp.events import ErrorCause, SegmentCause, StateChange, TimerCause, UserCause
from netstack.tcp.state import State
from netstack.wire.ipv4 import int2ip
from netstack.wire.tcp import flags_str

__all__ = ["StateLogWriter", "StateRecord", "StateLogError", "change_record", "read_state_log",
           "parse_state_log"]

_STATE_NAMES = {s.value for s in State}


class StateLogError(ValueError):
    """A state log that cannot be read; ``str()`` is one line naming the file and line."""


def _cause_dict(cause) -> dict:
    if isinstance(cause, SegmentCause):
        return {"kind": "segment", "flags": flags_str(cause.flags), "seq": cause.seq, "ack": cause.ack}
    if isinstance(cause, TimerCause):
        return {"kind": "timer", "timer": cause.timer.value}
    if isinstance(cause, UserCause):
        return {"kind": "user", "call": cause.call.value}
    if isinstance(cause, ErrorCause):
        return {"kind": "icmp", "type": cause.icmp_type, "code": cause.code}
    raise TypeError(f"unknown cause {cause!r}")


def change_record(local: tuple[int, int], remote: tuple[int, int], change: StateChange) -> dict:
    """The JSON object of one transition: ``local``/``remote`` are ``(address, port)`` pairs."""
    return {"time": round(change.time, 6),
            "local": f"{int2ip(local[0])}:{local[1]}", "remote": f"{int2ip(remote[0])}:{remote[1]}",
            "from": change.old.value, "to": change.new.value, "cause": _cause_dict(change.cause)}


class StateLogWriter:
    """An ``on_transition`` observer writing JSON lines to a text file.

    ``StateLogWriter(path_or_text_file, time_offset=0.0)``; use it as
    ``stack.tcp.on_transition = writer``.
    ``time_offset`` is added to each transition's time (the stack's clock is
    monotonic; add an offset to log wall-clock seconds).  Each line is flushed
    so a log can be followed with ``tail -f``.  ``count`` is the number written.
    """

    def __init__(self, dest: str | IO[str], *, time_offset: float = 0.0) -> None:
        if isinstance(dest, str):
            self._f = open(dest, "w", encoding="utf-8")
            self._owns = True
        else:
            self._f = dest
            self._owns = False
        self.time_offset = time_offset
        self.count = 0

    def __call__(self, conn, change: StateChange) -> None:
        rec = change_record((conn.local_addr, conn.local_port), (conn.remote_addr, conn.remote_port), change)
        if self.time_offset:
            rec["time"] = round(change.time + self.time_offset, 6)
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if self._owns and not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True, slots=True)
class StateRecord:
    """One line of a state log, read back."""
    time: float
    local: str
    remote: str
    old: State
    new: State
    cause: dict

    @property
    def conn(self) -> tuple[str, str]:
        return self.local, self.remote

    def cause_text(self) -> str:
        """The cause in words: ``rcv S. seq 1 ack 2``, ``timer timewait``, ``user close``, ``icmp 3/3``."""
        c = self.cause
        kind = c.get("kind")
        if kind == "segment":
            return f"rcv [{c.get('flags')}]"
        if kind == "timer":
            return f"timer {c.get('timer')}"
        if kind == "user":
            return f"user {c.get('call')}"
        if kind == "icmp":
            return f"icmp {c.get('type')}/{c.get('code')}"
        return str(kind)


def parse_state_log(lines: Iterable[str], name: str = "<state log>") -> list[StateRecord]:
    """Parse JSON lines (blank lines skipped) into records; :class:`StateLogError` on a bad line."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise StateLogError(f"{name}: line {n}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise StateLogError(f"{name}: line {n}: expected a JSON object")
        missing = [k for k in ("time", "local", "remote", "from", "to", "cause") if k not in obj]
        if missing:
            raise StateLogError(f"{name}: line {n}: missing {', '.join(missing)}")
        for k in ("from", "to"):
            if obj[k] not in _STATE_NAMES:
                raise StateLogError(f"{name}: line {n}: {k!r} is not a TCP state: {obj[k]!r}")
        if not isinstance(obj["time"], (int, float)) or not isinstance(obj["cause"], dict):
            raise StateLogError(f"{name}: line {n}: bad 'time' or 'cause'")
        out.append(StateRecord(float(obj["time"]), str(obj["local"]), str(obj["remote"]),
                               State(obj["from"]), State(obj["to"]), obj["cause"]))
    return out


def read_state_log(path: str) -> list[StateRecord]:
    """Read a state log file; :class:`StateLogError` (one line) if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_state_log(f, path)
    except OSError as exc:
        raise StateLogError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StateLogError(f"{path}: not a text file") from None
