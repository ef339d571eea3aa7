"""``--profile FILE`` for the benchmarks: where the time goes, per packet (not a benchmark itself).

The profiled pass is an extra one, after the timed runs, so the profiler's
own overhead never reaches the reported figures.  cProfile charges a fixed
cost to every Python call, so shares are inflated for code that makes many
small calls; use them to rank, and the timed figures for absolute costs.
"""
from __future__ import annotations

import cProfile
import os
import pstats

from netstack.bench import report

COLUMNS = [
    report.Column("function", "function (own time, cProfile)", "{}", "<"),
    report.Column("calls_per_packet", "calls/packet", "{:.2f}"),
    report.Column("ns_per_packet", "ns/packet", "{:.0f}"),
    report.Column("share", "share", "{:.1%}"),
]


def _name(func) -> str:
    filename, line, name = func
    if filename == "~":
        return name                                    # a builtin, e.g. <built-in method posix.write>
    parts = filename.replace(os.sep, "/").split("/")
    if "netstack" in parts:
        short = "/".join(parts[parts.index("netstack"):])
    else:
        short = "/".join(parts[-2:])
    return f"{short}:{line}({name})"


def top(profile: cProfile.Profile, packets: int, n: int = 15) -> list[dict]:
    """The ``n`` functions with the most own time, per packet."""
    stats = pstats.Stats(profile)
    total = sum(v[2] for v in stats.stats.values()) or 1e-12
    rows = []
    for func, (_cc, ncalls, tottime, _cum, _callers) in stats.stats.items():
        rows.append({"function": _name(func), "calls_per_packet": ncalls / packets,
                     "ns_per_packet": tottime / packets * 1e9, "share": tottime / total})
    rows.sort(key=lambda r: r["ns_per_packet"], reverse=True)
    return rows[:n]


def dump(profile: cProfile.Profile, path: str) -> None:
    """Write the raw profile (read it with ``python -m pstats FILE`` or snakeviz)."""
    profile.dump_stats(path)


def format_top(rows: list[dict]) -> str:
    return report.format_table(COLUMNS, rows)
