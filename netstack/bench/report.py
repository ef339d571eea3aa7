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
- ``add_common_arguments(parser)`` adds ``--repeat``, ``--warmup``,
  ``--min-time``, ``--quick``, ``--json FILE`` and ``--quiet``;
  ``timing_settings(args)`` turns them into ``(repeat, min_time)`` and
  ``warmup_setting(args)`` into the number of discarded warm-up runs;
  ``table_stream(args)`` is where the table goes (stderr when ``--json -``
  keeps stdout for the JSON alone).
- Spread, as pyperf reports it: ``add_spread(rows, runs_key)`` puts the
  :class:`Spread` of each row's runs (median, min, max, quartiles) in
  ``row["spread"]``; the :data:`SPREAD` column shows min and max relative to
  the median, and ``spread_warnings(rows, label)`` returns one warning per row
  whose runs spread over more than 10% of its median (:data:`UNSTABLE`), to
  be printed under the table and stored in the JSON.
- The JSON carries ``schema_version`` (:data:`SCHEMA_VERSION`), the columns
  that identify a row (``key``) and the figure to compare with its direction
  (``figure``), which is what ``netstack bench compare A.json B.json`` reads.
"""
from __future__ import annotations

import argparse
import contextlib
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
DEFAULT_WARMUP = 1             # discarded runs before the measured ones (pyperf's default too)
QUICK_REPEAT = 3
QUICK_MIN_TIME = 0.002
#: Version of the JSON written by :func:`write_json`.  1: no version field; 2: ``schema_version``,
#: ``key``, ``figure``, ``warnings``, ``row["spread"]``.
SCHEMA_VERSION = 2
#: A row whose runs spread (max - min) over more than this fraction of its median is flagged
#: as unstable, as pyperf flags a standard deviation above 10% of the mean.
UNSTABLE = 0.10


# --- timing -------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The benchmark could not measure (one line for the user)."""


def guarded(command: str, fn: Callable[[], Any], *, interrupted: str = "interrupted"):
    """Run the measurement ``fn()`` of ``netstack COMMAND``: ``(result, None)``, or ``(None,
    status)`` after one line on stderr: 1 for a :class:`BenchError`, 130 when interrupted
    (Ctrl-C, or a SIGTERM a benchmark turned into KeyboardInterrupt)."""
    try:
        return fn(), None
    except BenchError as exc:
        print(f"netstack {command}: {exc}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print(f"netstack {command}: {interrupted}", file=sys.stderr)
        return None, 130


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
              min_time: float = DEFAULT_MIN_TIME, warmup: int = 0) -> Timing:
    """Time ``fn(*args)``: median ns/call over ``repeat`` runs of at least ``min_time`` s each."""
    return time_calls({"call": (fn, args)}, repeat=repeat, min_time=min_time, warmup=warmup)["call"]


def time_calls(calls: dict[str, tuple[Callable, Sequence]], *, repeat: int = DEFAULT_REPEAT,
               min_time: float = DEFAULT_MIN_TIME, warmup: int = 0) -> dict[str, Timing]:
    """Time several ``name: (fn, args)`` calls, interleaved.

    Each call is calibrated on its own, then ``warmup`` rounds run and are
    discarded, then the measured runs go round-robin (A B C, A B C, ...), so
    that a burst of load from another process on the machine hits every
    subject alike and the ratios between them stay fair.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    if warmup < 0:
        raise ValueError("warmup must be at least 0")
    timers = {name: _timer(fn, args) for name, (fn, args) in calls.items()}
    numbers = {name: _calibrate(timer, min_time) for name, timer in timers.items()}
    for _ in range(warmup):
        for name, timer in timers.items():
            timer.timeit(numbers[name])
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
    """A table column: ``key`` into each row dict, a ``title``, and a format for values
    (a ``str.format`` pattern or a function of the value)."""

    key: str
    title: str
    fmt: str | Callable[[Any], str] = "{}"
    align: str = ">"          # ">" right (numbers) or "<" left (names)

    def cell(self, row: dict) -> str:
        value = row.get(self.key)
        if value is None:
            return "-"
        return self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


# --- spread of the runs -----------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """How the runs of one row are spread around their median."""

    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def rel_range(self) -> float:
        """(max - min) / median: the fraction of the median the runs spread over."""
        return (self.max - self.min) / abs(self.median) if self.median else 0.0

    @property
    def rel_iqr(self) -> float:
        """Interquartile range / median."""
        return (self.q3 - self.q1) / abs(self.median) if self.median else 0.0

    @property
    def unstable(self) -> bool:
        return self.n > 1 and self.rel_range > UNSTABLE

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "median": self.median, "min": self.min, "max": self.max, "q1": self.q1,
                "q3": self.q3, "rel_range": self.rel_range, "rel_iqr": self.rel_iqr, "unstable": self.unstable}


def spread_of(values: Sequence[float | None]) -> Spread | None:
    """The :class:`Spread` of *values* (``None`` entries ignored); None when there are none."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    if len(vals) > 1:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return Spread(len(vals), statistics.median(vals), vals[0], vals[-1], q1, q3)


def add_spread(rows: Sequence[dict], runs_key: str, value_key: str | None = None) -> None:
    """Set ``row["spread"]`` (a dict, see :meth:`Spread.as_dict`) from ``row[runs_key]``: a list
    of numbers, or of dicts whose ``value_key`` holds the number."""
    for row in rows:
        runs = row.get(runs_key) or []
        if value_key is not None:
            runs = [r.get(value_key) if isinstance(r, dict) else None for r in runs]
        sp = spread_of(runs)
        row["spread"] = sp.as_dict() if sp is not None else None


def format_spread(d: dict) -> str:
    """``-1.2% +3.4%``: the slowest and fastest runs relative to the median; `` !`` marks a
    spread above :data:`UNSTABLE` of the median."""
    if not d["median"]:
        return "-"
    lo = (d["min"] - d["median"]) / abs(d["median"])
    hi = (d["max"] - d["median"]) / abs(d["median"])
    return f"{lo * 100:+.1f}% {hi * 100:+.1f}%" + (" !" if d["unstable"] else "")


#: The column showing each row's spread (after :func:`add_spread`).
SPREAD = Column("spread", "runs min max", format_spread)


def spread_warnings(rows: Sequence[dict], label: Callable[[dict], str]) -> list[str]:
    """One line per row whose runs spread over more than :data:`UNSTABLE` of the median."""
    out = []
    for row in rows:
        d = row.get("spread")
        if d and d["unstable"]:
            out.append(f"WARNING: {label(row)}: its {d['n']} runs spread over {d['rel_range']:.1%} of the median "
                       f"(> {UNSTABLE:.0%}; IQR {d['rel_iqr']:.1%}); the figure may be unstable: "
                       "use more --repeat or --warmup, or a quieter machine")
    return out


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


def write_json(path: str, benchmark: str, columns: Sequence[Column], rows: Sequence[dict], *,
               key: Sequence[str] = (), figure: tuple[str, str] | None = None, warnings: Sequence[str] = (),
               **extra: Any) -> None:
    """Write ``{"schema_version", "benchmark", "environment", "columns", "key", "figure", "rows",
    "warnings", **extra}`` to ``path`` ("-" = stdout).

    *key*: the columns that identify a row (``["size", "impl"]``); *figure*: ``(column, "lower"
    or "higher")``, the figure ``bench compare`` divides and which direction is better."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": benchmark,
        "environment": environment(),
        "columns": [{"key": c.key, "title": c.title} for c in columns if c is not SPREAD],
        "key": list(key),
        "figure": {"key": figure[0], "better": figure[1]} if figure else None,
        "rows": list(rows),
        "warnings": list(warnings),
        **extra,
    }
    text = json.dumps(doc, indent=2, sort_keys=False, default=_jsonable) + "\n"
    if path == "-":
        (_json_stdout or sys.stdout).write(text)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


_json_stdout = None


@contextlib.contextmanager
def json_alone_on_stdout():
    """For ``--json -``: inside, ``print()`` goes to stderr (tables, notes) and only
    :func:`write_json` writes to the real stdout, so that the output parses as JSON."""
    global _json_stdout
    saved, _json_stdout = _json_stdout, sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _json_stdout = saved


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


def add_warmup_argument(parser: argparse.ArgumentParser, default: int = DEFAULT_WARMUP) -> None:
    """``--warmup N``: runs done and discarded before the measured ones."""
    from netstack.bench._args import bounded

    parser.add_argument("--warmup", type=bounded(int, 0, 1000), metavar="N", default=default,
                        help=f"runs done and discarded before the measured ones (default {default})")


def warmup_setting(args: argparse.Namespace) -> int:
    return getattr(args, "warmup", 0) or 0


def add_common_arguments(parser: argparse.ArgumentParser, *, warmup: int = DEFAULT_WARMUP) -> None:
    """--repeat, --warmup, --min-time, --quick, --json FILE, --quiet."""
    parser.add_argument("--repeat", type=_positive_int, metavar="N",
                        help=f"runs per measurement; the median is reported (default {DEFAULT_REPEAT}, "
                             f"--quick {QUICK_REPEAT})")
    add_warmup_argument(parser, warmup)
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
