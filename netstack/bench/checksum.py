"""Internet checksum speed: native vs pure twin vs scapy vs a plain memory copy.

``netstack bench checksum [--quick] [--repeat N] [--sizes 20,1500] [--json FILE]``

For each size (default 20, 40, 64, 576, 1500, 9000, 65536 bytes) it times,
in one run and on the same ``bytes`` buffer:

- ``native``: ``netstack.checksum.checksum`` (the public call: Python
  wrapper + one cffi crossing + the C kernel);
- ``pure``: ``netstack.checksum_pure.checksum`` (the twin used without a
  compiler);
- ``scapy``: ``scapy.utils.checksum`` (what a Python user would otherwise
  pick);
- ``copy``: the ceiling, a plain memcpy of the same buffer into a
  preallocated one: ``ns_copy`` in native/checksum.c called through cffi on
  ``ffi.from_buffer`` views (so it pays one cffi crossing, like ``native``).
  Without the native module it is ``bytearray`` slice assignment instead;
  the JSON says which (``copy_method``).

Columns: ns/call (median of ``--repeat`` runs after ``--warmup`` discarded
ones), GB/s (10^9 B/s), ``vs scapy`` (scapy's time / this one: how many times
faster), ``vs copy`` (copy's time / this one: the fraction of memcpy's rate)
and the spread of the runs (slowest and fastest relative to the median; a
warning under the table for a row spread over more than 10%).

A second table times calls on a 20-byte buffer against ``ns_noop``, a C
function that does nothing, called through cffi with the same arguments as
the checksum (the floor for any native call), and shows what the argument
type costs (``bytes`` goes straight to C; ``bytearray``/``memoryview`` go
through ``ffi.from_buffer``).

Targets, judged on figures from the same run: native at 1500 B
>= 50x scapy; native at 64 KiB >= 0.5x the copy rate; native at 20 B
within 2x of the do-nothing cffi call.
"""
from __future__ import annotations

import argparse
import random
import sys

from netstack.bench import report

SIZES = (20, 40, 64, 576, 1500, 9000, 65536)
IMPLS = ("native", "pure", "scapy", "copy")

COLUMNS = [
    report.Column("size", "size B", "{}"),
    report.Column("impl", "impl", "{}", "<"),
    report.Column("ns_per_call", "ns/call", "{:.0f}"),
    report.Column("gb_per_s", "GB/s", "{:.2f}"),
    report.Column("vs_scapy", "vs scapy", "{:.1f}x"),
    report.Column("vs_copy", "vs copy", "{:.2f}x"),
    report.SPREAD,
]
CALL_COLUMNS = [
    report.Column("call", "call at 20 B", "{}", "<"),
    report.Column("ns_per_call", "ns/call", "{:.0f}"),
    report.Column("vs_noop", "/ no-op", "{:.2f}x"),
    report.SPREAD,
]
KEY = ("size", "impl")                 # what identifies a row (bench compare matches on it)
FIGURE = ("ns_per_call", "lower")      # what bench compare divides


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected sizes in bytes like 20,1500,65536") from None
    if not sizes or any(s < 0 or s > 1 << 30 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be between 0 and 1 GiB")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    report.add_common_arguments(parser)
    parser.add_argument("--sizes", type=_sizes, default=SIZES, metavar="N,N,...",
                        help="buffer sizes in bytes (default " + ",".join(map(str, SIZES)) + ")")
    parser.add_argument("--kernel", metavar="NAME",
                        help="native kernel to use (see `netstack info`; e.g. scalar, avx2); default: the best")
    parser.add_argument("--no-scapy", action="store_true", help="leave scapy out (it is slow to import)")


# --- what is timed ------------------------------------------------------------------------


class Subjects:
    """The callables under test and the buffers they run on."""

    def __init__(self, include_scapy: bool):
        from netstack import checksum, checksum_pure

        self.checksum = checksum
        self.native = checksum.checksum if checksum.IMPLEMENTATION == "native" else None
        self.pure = checksum_pure.checksum
        self.scapy = None
        self.scapy_note = "left out (--no-scapy)"
        if include_scapy:
            try:
                from scapy.utils import checksum as scapy_checksum
            except ImportError as exc:
                self.scapy_note = f"not installed ({exc})"
            else:
                self.scapy = scapy_checksum
                self.scapy_note = "scapy.utils.checksum"
        if self.native is not None:
            from netstack._checksum import ffi, lib

            self.ffi, self.lib = ffi, lib
            self.copy_method = "native memcpy via cffi (ns_copy) into a preallocated buffer"
        else:
            self.ffi = self.lib = None
            self.copy_method = "bytearray slice assignment into a preallocated bytearray"

    def impl_call(self, impl: str, data: bytes):
        """(fn, args) timing ``impl`` on ``data``, or None when unavailable."""
        if impl == "native":
            return None if self.native is None else (self.native, (data,))
        if impl == "pure":
            return self.pure, (data,)
        if impl == "scapy":
            return None if self.scapy is None else (self.scapy, (data,))
        if impl == "copy":
            if self.lib is not None:
                dst = self.ffi.from_buffer(bytearray(len(data)))
                return self.lib.ns_copy, (dst, self.ffi.from_buffer(data), len(data))
            dst = bytearray(len(data))
            return dst.__setitem__, (slice(None), data)
        raise ValueError(impl)

    def small_calls(self, size: int = 20):
        """(label, fn, args) rows of the 20-byte call-overhead table (native only)."""
        if self.native is None:
            return []
        c = self.checksum
        data = _buffer(size)
        big = bytearray(_buffer(size + 64))
        view = memoryview(big)[13:13 + size]            # an odd offset into a larger buffer
        return [
            ("no-op cffi call ns_noop(bytes, n)", self.lib.ns_noop, (data, size)),
            ("checksum(bytes)", c.checksum, (data,)),
            ("checksum(bytearray)", c.checksum, (bytearray(data),)),
            ("checksum(memoryview slice)", c.checksum, (view,)),
            ("sum16(bytes)", c.sum16, (data,)),
            ("pseudo_header_checksum(bytes)", c.pseudo_header_checksum, (0xC6120001, 0xC6120002, 6, data)),
            ("pseudo_header_checksum(memoryview)", c.pseudo_header_checksum, (0xC6120001, 0xC6120002, 6, view)),
        ]


def _buffer(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _check_agreement(subjects: Subjects, sizes) -> str | None:
    """Every implementation must give the same answer before we time it."""
    for size in sizes:
        data = _buffer(size)
        answers = {"pure": subjects.pure(data)}
        if subjects.native is not None:
            answers["native"] = subjects.native(data)
        if subjects.scapy is not None:
            answers["scapy"] = subjects.scapy(data)
        if len(set(answers.values())) != 1:
            return f"implementations disagree at {size} B: " + ", ".join(f"{k}={v:#06x}" for k, v in answers.items())
    return None


# --- the run -----------------------------------------------------------------------------


def measure(sizes=SIZES, *, repeat: int, min_time: float, include_scapy: bool = True,
            progress: report.Progress | None = None, subjects: Subjects | None = None, warmup: int = 0) -> dict:
    """Time everything; returns {"rows", "calls", "targets", "copy_method", "scapy"}."""
    subjects = subjects or Subjects(include_scapy)
    error = _check_agreement(subjects, sizes)
    if error:
        raise RuntimeError(error)
    small = subjects.small_calls()
    if progress is not None:
        progress.total = len(sizes) + (1 if small else 0)

    rows = []
    for size in sizes:
        data = _buffer(size)
        subjects_at_size = {}
        for impl in IMPLS:
            call = subjects.impl_call(impl, data)
            if call is not None:
                subjects_at_size[impl] = call
        if progress is not None:
            progress.step(f"{size} B: " + ", ".join(subjects_at_size))
        timings = report.time_calls(subjects_at_size, repeat=repeat, min_time=min_time, warmup=warmup)
        scapy_ns = timings["scapy"].ns if "scapy" in timings else None
        copy_ns = timings["copy"].ns if "copy" in timings else None
        for impl in IMPLS:
            t = timings.get(impl)
            row = {"size": size, "impl": impl, "ns_per_call": None, "gb_per_s": None,
                   "vs_scapy": None, "vs_copy": None}
            if t is not None:
                row.update(ns_per_call=t.ns, gb_per_s=t.gbps(size) if size else None,
                           vs_scapy=report.ratio(scapy_ns, t.ns), vs_copy=report.ratio(copy_ns, t.ns),
                           runs_ns_per_call=t.runs, calls_per_run=t.number)
            rows.append(row)

    calls = []
    if small:
        if progress is not None:
            progress.step("20 B calls against a no-op cffi call")
        timings = report.time_calls({label: (fn, args) for label, fn, args in small},
                                    repeat=repeat, min_time=min_time, warmup=warmup)
        noop_ns = timings[small[0][0]].ns
        for label, _, _ in small:
            t = timings[label]
            calls.append({"call": label, "ns_per_call": t.ns, "vs_noop": t.ns / noop_ns,
                          "runs_ns_per_call": t.runs, "calls_per_run": t.number})

    report.add_spread(rows, "runs_ns_per_call")
    report.add_spread(calls, "runs_ns_per_call")
    return {"rows": rows, "calls": calls, "targets": targets(rows, calls),
            "copy_method": subjects.copy_method, "scapy": subjects.scapy_note}


def _find(rows, size, impl):
    for row in rows:
        if row["size"] == size and row["impl"] == impl:
            return row
    return None


def targets(rows, calls) -> list[report.Target]:
    """The three checksum goals, judged on this run's figures."""
    out = []
    row = _find(rows, 1500, "native")
    value = row and row["vs_scapy"]
    out.append(report.Target("native 1500 B vs scapy", ">= 50x", value,
                              None if value is None else value >= 50,
                              "not measured" if value is None else f"{value:.0f}x faster than scapy"))
    row = _find(rows, 65536, "native")
    value = row and row["vs_copy"]
    out.append(report.Target("native 64 KiB vs memory copy", ">= 0.5x the copy rate", value,
                             None if value is None else value >= 0.5,
                             "not measured" if value is None
                             else f"{value:.2f}x the copy rate ({row['gb_per_s']:.1f} GB/s)"))
    by_label = {c["call"]: c for c in calls}
    c20 = by_label.get("checksum(bytes)")
    value = c20 and c20["vs_noop"]
    out.append(report.Target("native 20 B vs a no-op cffi call", "<= 2x", value,
                             None if value is None else value <= 2,
                             "not measured" if value is None
                             else f"{value:.2f}x ({c20['ns_per_call']:.0f} ns vs "
                                  f"{calls[0]['ns_per_call']:.0f} ns)"))
    return out


def run(args: argparse.Namespace) -> int:
    problem = report.check_writable(args.json)
    if problem:
        print(f"netstack bench checksum: {problem}", file=sys.stderr)
        return 2
    from netstack import checksum

    if args.kernel:
        try:
            checksum.select_native_path(args.kernel)
        except ValueError as exc:
            print(f"netstack bench checksum: --kernel: {exc}", file=sys.stderr)
            return 2
    repeat, min_time = report.timing_settings(args)
    progress = report.Progress(0, "bench checksum", quiet=args.quiet)
    if not args.no_scapy and not args.quiet:
        print("bench checksum: importing scapy ...", file=sys.stderr, flush=True)
    try:
        result = measure(args.sizes, repeat=repeat, min_time=min_time,
                         include_scapy=not args.no_scapy, progress=progress, warmup=report.warmup_setting(args))
    except RuntimeError as exc:
        print(f"netstack bench checksum: {exc}", file=sys.stderr)
        return 1
    progress.finish()

    env = report.environment()
    out = report.table_stream(args)
    lines = [
        f"checksum: {env['checksum']}; {env['python']}; {env['cpu']}",
        f"median of {repeat} runs after {report.warmup_setting(args)} warm-up, each >= {min_time * 1000:g} ms; "
        f"copy = {result['copy_method']}; "
        f"scapy = {result['scapy']}",
        "",
        report.format_table(COLUMNS, result["rows"]),
    ]
    if result["calls"]:
        lines += ["", report.format_table(CALL_COLUMNS, result["calls"])]
    warnings = (report.spread_warnings(result["rows"], lambda r: f"{r['impl']} {r['size']} B")
                + report.spread_warnings(result["calls"], lambda r: r["call"]))
    if warnings:
        lines += [""] + warnings
    lines += ["", "targets:", report.format_targets(result["targets"])]
    print("\n".join(lines), file=out, flush=True)

    if args.json:
        settings = {"repeat": repeat, "warmup": report.warmup_setting(args), "min_time_s": min_time,
                    "sizes": list(args.sizes),
                    "kernel": checksum.native_path(), "buffer": "bytes"}
        try:
            report.write_json(args.json, "checksum", COLUMNS, result["rows"], settings=settings, key=KEY,
                              figure=FIGURE, warnings=warnings,
                              copy_method=result["copy_method"], scapy=result["scapy"],
                              call_columns=[{"key": c.key, "title": c.title} for c in CALL_COLUMNS
                                            if c is not report.SPREAD],
                              calls=result["calls"], targets=result["targets"])
        except OSError as exc:
            print(f"netstack bench checksum: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0
