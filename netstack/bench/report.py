"""Shared helpers for ``netstack bench`` benchmarks: timing, tables, JSON, progress.

Every benchmark reports figures the same way:

- ``time_call(fn, args)`` times ``fn(*args)`` with :mod:`timeit` (the call is
  compiled into timeit's loop, so no wrapper lambda is measured), calibrating
  the loop count so that one run lasts at least ``min_time`` seconds, and
  returns a :class:`Timing` whose ``ns`` is the MEDIAN ns/call over
  ``repeat`` runs (``runs`` keeps them all for the JSON).  ``time_calls``
  does the same for several calls with their runs interleaved, which keeps
  ratios fair on a machine shared with other work: use it for anything you
  will divide.
- Ratios are always against a reference measured in the same run
  (``ratio(reference_ns, ns)``: above 1 means faster than the reference).
  Never compare against a number from another machine or another day.
- ``format_table(columns, rows)`` prints an aligned text table; ``None`` shows
  as ``-``.  ``write_json(path, ...)`` writes the same rows plus the
  environment (``environment()``) and settings.
- ``Progress`` writes what is being measured to stderr (an in-place line on a
  terminal, one line per step otherwise), so stdout carries only the table.
- ``add_common_arguments(parser)`` adds ``--repeat``, ``--min-time``,
  ``--quick``, ``--json FILE`` and ``--quiet``; ``timing_settings(args)``
  turns them into ``(repeat, min_time)``; ``table_stream(args)`` is where the
  table goes (stderr when ``--json -`` keeps stdout for the JSON alone).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import timeit
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

DEFAULT_REPEAT = 7
DEFAULT_MIN_TIME = 0.02        # seconds per run
QUICK_REPEAT = 3
QUICK_MIN_TIME = 0.002


# --- timing -------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


@dataclass
class Timing:
    """Median nanoseconds per call of ``repeat`` runs of ``number`` calls each."""

    ns: float
    runs: list[float] = field(default_factory=list)   # ns/call of each run
    number: int = 1                                     # calls per run

    def gbps(self, nbytes: int) -> float:
        """Throughput in GB/s (10^9 bytes per second) for ``nbytes`` per call."""
        return nbytes / self.ns if self.ns > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {"ns_per_call": self.ns, "runs_ns_per_call": self.runs, "calls_per_run": self.number}


def _calibrate(timer: timeit.Timer, min_time: float) -> int:
    """Smallest loop count (roughly) whose run lasts at least ``min_time`` seconds."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= min_time:
            return number
        if elapsed <= 0:
            number *= 10
        else:
            number = max(number * 2, int(number * min_time / elapsed * 1.1) + 1)


def _timer(fn: Callable, args: Sequence) -> timeit.Timer:
    names = [f"a{i}" for i in range(len(args))]
    namespace = {"fn": fn, **dict(zip(names, args))}
    return timeit.Timer(f"fn({', '.join(names)})", globals=namespace)


def time_call(fn: Callable, args: Sequence = (), *, repeat: int = DEFAULT_REPEAT,
              min_time: float = DEFAULT_MIN_TIME) -> Timing:
    """Time ``fn(*args)``: median ns/call over ``repeat`` runs of at least ``min_time`` s each."""
    return time_calls({"call": (fn, args)}, repeat=repeat, min_time=min_time)["call"]


def time_calls(calls: dict[str, tuple[Callable, Sequence]], *, repeat: int = DEFAULT_REPEAT,
               min_time: float = DEFAULT_MIN_TIME) -> dict[str, Timing]:
    """Time several ``name: (fn, args)`` calls, interleaved.

    Each call is calibrated on its own, then the runs go round-robin
    (A B C, A B C, ...), so that a burst of load from another process on the
    machine hits every subject alike and the ratios between them stay fair.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    timers = {name: _timer(fn, args) for name, (fn, args) in calls.items()}
    numbers = {name: _calibrate(timer, min_time) for name, timer in timers.items()}
    runs: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name] * 1e9)
    return {name: Timing(ns=median(r), runs=r, number=numbers[name]) for name, r in runs.items()}


def ratio(reference_ns: float | None, ns: float | None) -> float | None:
    """How many times faster than the reference (``reference_ns / ns``); None if unknown."""
    if reference_ns is None or ns is None or ns <= 0:
        return None
    return reference_ns / ns


# --- tables -------------------------------------------------------------------------


@dataclass
class Column:
    """A table column: ``key`` into each row dict, a ``title``, and a format for values."""

    key: str
    title: str
    fmt: str = "{}"
    align: str = ">"          # ">" right (numbers) or "<" left (names)

    def cell(self, row: dict) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        return self.fmt.format(value)


def format_table(columns: Sequence[Column], rows: Sequence[dict]) -> str:
    """An aligned plain-text table (header, rule, rows)."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.title)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]

    def line(values):
        return "  ".join(f"{v:{c.align}{w}}" for v, c, w in zip(values, columns, widths)).rstrip()

    out = [line([c.title for c in columns]), "  ".join("-" * w for w in widths)]
    out += [line(values) for values in cells]
    return "\n".join(out)


def format_ns(ns: float) -> str:
    """Readable duration: 153 ns, 12.3 us, 4.56 ms."""
    if ns < 1e4:
        return f"{ns:.0f} ns"
    if ns < 1e7:
        return f"{ns / 1e3:.1f} us"
    return f"{ns / 1e6:.2f} ms"


# --- targets ------------------------------------------------------------------------


@dataclass
class Target:
    """A goal checked against figures of the same run, e.g. "native 1500 B >= 50x scapy"."""

    name: str
    goal: str                 # human text of the goal
    value: float | None       # the measured figure (None: could not be measured here)
    met: bool | None          # None when not measurable
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "value": self.value, "met": self.met, "detail": self.detail}


def format_targets(targets: Sequence[Target]) -> str:
    lines = []
    for t in targets:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t.met]
        lines.append(f"  [{verdict:>6}] {t.name}: {t.detail}  (goal: {t.goal})")
    return "\n".join(lines)


# --- environment and JSON -------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where the figures come from: versions, CPU, the active checksum implementation."""
    from netstack import __version__, checksum

    return {
        "netstack": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "checksum": checksum.describe(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: str, benchmark: str, columns: Sequence[Column], rows: Sequence[dict],
               **extra: Any) -> None:
    """Write ``{"benchmark", "environment", "columns", "rows", **extra}`` to ``path`` ("-" = stdout)."""
    doc = {
        "benchmark": benchmark,
        "environment": environment(),
        "columns": [{"key": c.key, "title": c.title} for c in columns],
        "rows": list(rows),
        **extra,
    }
    text = json.dumps(doc, indent=2, sort_keys=False, default=_jsonable) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"not JSON serialisable: {value!r}")


# --- progress -------------------------------------------------------------------------


class Progress:
    """Tells the user on stderr what is being measured: ``[ 3/28] native 1500 B``.

    On a terminal the line is rewritten in place; otherwise one line per step.
    ``quiet=True`` says nothing.
    """

    def __init__(self, total: int, title: str, *, stream=None, quiet: bool = False):
        self.total, self.title, self.done = total, title, 0
        self.stream = sys.stderr if stream is None else stream
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._width = 0
        self._started = time.monotonic()

    def step(self, what: str) -> None:
        """Announce the next measurement."""
        self.done += 1
        if self.quiet:
            return
        text = f"{self.title}: [{self.done:>{len(str(self.total))}}/{self.total}] {what}"
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.quiet:
            return
        text = f"{self.title}: done in {time.monotonic() - self._started:.1f} s"
        if self.tty:
            self.stream.write("\r" + text + " " * max(0, self._width - len(text)) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# --- command-line options shared by all benchmarks -------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--repeat, --min-time, --quick, --json FILE, --quiet."""
    parser.add_argument("--repeat", type=_positive_int, metavar="N",
                        help=f"runs per measurement; the median is reported (default {DEFAULT_REPEAT}, "
                             f"--quick {QUICK_REPEAT})")
    parser.add_argument("--min-time", type=_positive_float, metavar="SECONDS",
                        help=f"least duration of one run (default {DEFAULT_MIN_TIME}, --quick {QUICK_MIN_TIME})")
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter runs: a rough picture in a second or two")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON to FILE ('-' for stdout)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def timing_settings(args: argparse.Namespace) -> tuple[int, float]:
    """(repeat, min_time) from --repeat/--min-time/--quick; explicit values win over --quick."""
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    min_time = args.min_time or (QUICK_MIN_TIME if args.quick else DEFAULT_MIN_TIME)
    return repeat, min_time


def table_stream(args: argparse.Namespace):
    """Where the human-readable table goes: stdout, or stderr when ``--json -`` takes stdout."""
    return sys.stderr if getattr(args, "json", None) == "-" else sys.stdout


def check_writable(path: str | None) -> str | None:
    """Fail early (before minutes of measuring) if ``--json FILE`` cannot be written.

    Returns an error text, or None when fine.
    """
    if path is None or path == "-":
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"--json {path}: directory {directory} does not exist"
    if not os.access(directory, os.W_OK):
        return f"--json {path}: directory {directory} is not writable"
    if os.path.isdir(path):
        return f"--json {path}: is a directory"
    return None
