"""The TCP state log: every transition of RFC 9293 §3.3.2 (Figure 5) and every congestion or
loss-recovery event, one JSON line each.

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

Congestion and loss-recovery events come as typed
:class:`~netstack.tcp.events.RecoveryEvent` values to the layer's
``on_recovery`` observer (``StateLogWriter.recovery``).  Their lines have an
``"event"`` key instead of ``"from"``/``"to"``::

    {"time": 1.31, "local": "198.18.0.2:25", "remote": "198.18.0.1:40000",
     "event": "fast-retransmit", "cc": "cubic", "cwnd": 10136, "ssthresh": 10136,
     "prior_cwnd": 14480, "snd_una": 1449, "snd_max": 15481, "rto": 0.2, "retries": 0}

``event`` is one of ``fast-retransmit`` (duplicate ACKs started fast recovery,
RFC 5681 §3.2), ``sack-recovery`` (SACK loss detection started it, RFC 8985 /
RFC 6675), ``recovery-exit`` (a full ACK ended it, RFC 6582), ``rto`` (the
retransmission timer fired, RFC 6298 §5), ``tlp`` (a tail loss probe, RFC 8985
§7), ``tlp-repair`` (the probe repaired a loss: cwnd reduced once, RFC 8985 §7.4) and ``undo`` (a spurious reduction undone, RFC 4015), which adds
``"undo": "eifel" | "dsack" | "frto"`` (how it was found) and ``"undone":
"rto" | "fast-retransmit" | "sack-recovery"``.  ``cwnd`` and ``ssthresh`` are
after the event, ``prior_cwnd`` before it (bytes); ``snd_una``/``snd_max`` are
absolute sequence numbers; ``rto`` is the timeout after the event (seconds, backed
off after an RTO), ``retries`` the consecutive timeouts so far.

:func:`read_state_log` reads the transitions back into :class:`StateRecord`
values (recovery lines are checked and skipped); :func:`read_log` reads both
kinds (:class:`RecoveryRecord` for the events), with a one-line
:class:`StateLogError` naming the file and line for a bad line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Iterable

from netstack.tcp.events import (ErrorCause, RecoveryEvent, RecoveryKind, SegmentCause, StateChange,
                                 TimerCause, UndoMethod, UserCause)
from netstack.tcp.state import State
from netstack.wire.ipv4 import int2ip
from netstack.wire.tcp import flags_str

__all__ = ["StateLogWriter", "StateRecord", "RecoveryRecord", "StateLogError", "change_record",
           "recovery_record", "recovery_from_dict", "read_state_log", "parse_state_log", "read_log", "parse_log"]

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


def recovery_record(local: tuple[int, int], remote: tuple[int, int], event: RecoveryEvent) -> dict:
    """The JSON object of one congestion or recovery event (see the module docstring)."""
    rec = {"time": round(event.time, 6),
           "local": f"{int2ip(local[0])}:{local[1]}", "remote": f"{int2ip(remote[0])}:{remote[1]}",
           "event": event.kind.value, "cc": event.cc, "cwnd": event.cwnd, "ssthresh": event.ssthresh,
           "prior_cwnd": event.prior_cwnd, "snd_una": event.snd_una, "snd_max": event.snd_max,
           "rto": round(event.rto, 6), "retries": event.retries}
    if event.undo is not None:
        rec["undo"] = event.undo.value
    if event.undone is not None:
        rec["undone"] = event.undone.value
    return rec


class StateLogWriter:
    """An ``on_transition`` and ``on_recovery`` observer writing JSON lines to a text file.

    ``StateLogWriter(path_or_text_file, time_offset=0.0)``; use it as
    ``stack.tcp.on_transition = writer`` and ``stack.tcp.on_recovery = writer.recovery``.
    ``time_offset`` is added to each transition's time (the stack's clock is
    monotonic; add an offset to log wall-clock seconds).  Each line is flushed
    so a log can be followed with ``tail -f``.  ``count`` is the number of lines written.
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

    def recovery(self, conn, event: RecoveryEvent) -> None:
        """The ``on_recovery`` observer: one line for a congestion or recovery event."""
        rec = recovery_record((conn.local_addr, conn.local_port), (conn.remote_addr, conn.remote_port), event)
        if self.time_offset:
            rec["time"] = round(event.time + self.time_offset, 6)
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


@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """One congestion or recovery line of a state log, read back."""
    time: float
    local: str
    remote: str
    kind: RecoveryKind
    cwnd: int
    ssthresh: int
    prior_cwnd: int
    snd_una: int
    snd_max: int
    rto: float
    retries: int
    cc: str = ""
    undo: UndoMethod | None = None
    undone: RecoveryKind | None = None

    @property
    def conn(self) -> tuple[str, str]:
        return self.local, self.remote

    def text(self) -> str:
        """In words: ``fast-retransmit cwnd 14480 -> 10136 ssthresh 10136``, ``undo (eifel) of rto ...``."""
        head = self.kind.value
        if self.kind is RecoveryKind.UNDO:
            head += f" ({self.undo.value if self.undo else '?'}) of {self.undone.value if self.undone else '?'}"
        if self.kind is RecoveryKind.RTO:
            head += f" #{self.retries}, rto now {self.rto:g}s"
        if self.prior_cwnd != self.cwnd:
            win = f"cwnd {self.prior_cwnd} -> {self.cwnd}"
        else:
            win = f"cwnd {self.cwnd}"
        return f"{head}: {win}, ssthresh {self.ssthresh}" + (f" ({self.cc})" if self.cc else "")


_INT_FIELDS = ("cwnd", "ssthresh", "prior_cwnd", "snd_una", "snd_max", "retries")


def recovery_from_dict(obj: dict, where: str = "<state log>") -> RecoveryRecord:
    """A RecoveryRecord from the JSON object of a recovery line; StateLogError if it is malformed."""
    try:
        kind = RecoveryKind(obj["event"])
    except ValueError:
        raise StateLogError(f"{where}: 'event' is not a recovery event: {obj['event']!r}") from None
    missing = [k for k in ("time", "local", "remote") + _INT_FIELDS + ("rto",) if k not in obj]
    if missing:
        raise StateLogError(f"{where}: missing {', '.join(missing)}")
    bad = [k for k in ("time", "rto") + _INT_FIELDS
           if not isinstance(obj[k], (int, float)) or isinstance(obj[k], bool)]
    if bad:
        raise StateLogError(f"{where}: {bad[0]!r} is not a number")
    try:
        undo = UndoMethod(obj["undo"]) if obj.get("undo") is not None else None
        undone = RecoveryKind(obj["undone"]) if obj.get("undone") is not None else None
    except ValueError:
        raise StateLogError(f"{where}: bad 'undo' or 'undone'") from None
    return RecoveryRecord(float(obj["time"]), str(obj["local"]), str(obj["remote"]), kind,
                          *(int(obj[k]) for k in _INT_FIELDS[:5]), float(obj["rto"]), int(obj["retries"]),
                          str(obj.get("cc", "")), undo, undone)


def parse_log(lines: Iterable[str], name: str = "<state log>") -> tuple[list[StateRecord], list[RecoveryRecord]]:
    """Parse JSON lines (blank lines skipped) into transitions and recovery events;
    :class:`StateLogError` on a bad line."""
    out = []
    events = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise StateLogError(f"{name}: line {n}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise StateLogError(f"{name}: line {n}: expected a JSON object")
        if "event" in obj and "from" not in obj:
            events.append(recovery_from_dict(obj, f"{name}: line {n}"))
            continue
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
    return out, events


def parse_state_log(lines: Iterable[str], name: str = "<state log>") -> list[StateRecord]:
    """The transitions of a state log (recovery lines are checked, then left out)."""
    return parse_log(lines, name)[0]


def read_log(path: str) -> tuple[list[StateRecord], list[RecoveryRecord]]:
    """Read a state log file: its transitions and its recovery events;
    :class:`StateLogError` (one line) if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_log(f, path)
    except OSError as exc:
        raise StateLogError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StateLogError(f"{path}: not a text file") from None


def read_state_log(path: str) -> list[StateRecord]:
    """Read the transitions of a state log file; :class:`StateLogError` (one line) if it cannot be read."""
    return read_log(path)[0]
