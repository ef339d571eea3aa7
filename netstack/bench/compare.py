"""Compare two --json reports of one benchmark: the ratio of each matching row.

``netstack bench compare A.json B.json [--figure COLUMN]``

Rows are matched on the columns that identify them (the report's ``key``,
e.g. size and implementation for ``checksum``); the figure compared is the
report's own (``figure``: ns/call for ``checksum``, ns/segment for
``segments``, msgs/s for ``smtp``, packets/s for ``tun``) or ``--figure``.
Each matching row prints both medians, ``B/A`` and the change in words
(``1.25x faster``/``slower``, whichever way the figure is better), and
``within noise`` when the two rows' runs overlap (the slowest run of one
is no better than the fastest of the other), as pyperf's ``compare_to``
hides differences that are not significant.  A warning follows for a row
whose own runs spread over more than 10% of its median in either file.
The last line is the geometric mean of the changes.  Rows found in only
one file are listed.  Reports written before ``schema_version`` 2 (no
``key``/``figure``) are matched on their text and integer columns and
compared on their first fractional column.

Exit status 0, or 2 with one line on stderr for a file that cannot be read
or two reports of different benchmarks.  ``-`` reads one report from stdin.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from netstack.bench import report


class CompareError(Exception):
    """A report that cannot be compared; ``str()`` is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A.json", help="the baseline report (--json of a benchmark; - for stdin)")
    parser.add_argument("b", metavar="B.json", help="the report compared with it")
    parser.add_argument("--figure", metavar="COLUMN",
                        help="compare this column (a key of the rows, e.g. gb_per_s) instead of the report's figure; "
                             "higher is better unless its name says time (ns_, us_, seconds)")


def load(path: str) -> dict[str, Any]:
    try:
        if path == "-":
            doc = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
    except OSError as exc:
        raise CompareError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{path}: not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list) or "benchmark" not in doc:
        raise CompareError(f"{path}: not a netstack bench report (no 'benchmark' and 'rows')")
    version = doc.get("schema_version", 1)
    if not isinstance(version, int) or version > report.SCHEMA_VERSION:
        raise CompareError(f"{path}: schema_version {version!r} is newer than this netstack reads "
                           f"({report.SCHEMA_VERSION})")
    return doc


def _lower_is_better(column: str) -> bool:
    return column.startswith(("ns_", "us_")) or "seconds" in column or column.endswith(("_ns", "_us", "_per_packet"))


def key_and_figure(doc: dict[str, Any], figure: str | None = None) -> tuple[list[str], str, bool]:
    """(key columns, figure column, lower is better) of a report."""
    columns = [c["key"] for c in doc.get("columns", [])]
    rows = doc["rows"]
    key = doc.get("key")
    if not key:                                   # schema 1: text and integer columns identify a row
        key = [c for c in columns if rows and all(isinstance(r.get(c), (str, int)) and not isinstance(r.get(c), bool)
                                                  for r in rows)]
    fig = doc.get("figure") or {}
    if figure:
        return list(key), figure, _lower_is_better(figure)
    if fig.get("key"):
        return list(key), fig["key"], fig.get("better") == "lower"
    for c in columns:
        if c not in key and any(isinstance(r.get(c), float) for r in rows):
            return list(key), c, _lower_is_better(c)
    raise CompareError(f"report {doc.get('benchmark')!r} has no figure to compare")


def _rows_by_key(doc, key) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for r in doc["rows"]:
        out.setdefault(tuple(r.get(k) for k in key), r)
    return out


def _overlap(a: dict | None, b: dict | None) -> bool:
    if not a or not b or a.get("n", 0) < 2 or b.get("n", 0) < 2:
        return False
    return a["min"] <= b["max"] and b["min"] <= a["max"]


def compare(doc_a: dict, doc_b: dict, figure: str | None = None) -> dict[str, Any]:
    """Match the rows of two reports; returns {"key", "figure", "lower_better", "rows", "only_a",
    "only_b", "geomean"}: each row has the key values, ``a``, ``b``, ``ratio`` (b / a), ``speedup``
    (how many times better B is; below 1 is worse), ``noise`` (the runs overlap) and ``unstable``."""
    if doc_a["benchmark"] != doc_b["benchmark"]:
        raise CompareError(f"different benchmarks: {doc_a['benchmark']!r} and {doc_b['benchmark']!r}")
    key, fig, lower = key_and_figure(doc_a, figure)
    by_b = _rows_by_key(doc_b, key)
    by_a = _rows_by_key(doc_a, key)
    rows, logs = [], []
    for k, ra in by_a.items():
        rb = by_b.get(k)
        if rb is None:
            continue
        a, b = ra.get(fig), rb.get(fig)
        row = dict(zip(key, k))
        row.update(a=a, b=b, ratio=None, speedup=None, change=None, noise=False, unstable=False)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
            row["ratio"] = b / a
            row["speedup"] = a / b if lower else b / a
            logs.append(math.log(row["speedup"]))
            sa, sb = ra.get("spread"), rb.get("spread")
            same_figure = figure is None or figure == (doc_a.get("figure") or {}).get("key")
            row["noise"] = same_figure and _overlap(sa, sb)
            row["unstable"] = same_figure and bool((sa and sa.get("unstable")) or (sb and sb.get("unstable")))
            s = row["speedup"]
            row["change"] = ("same" if abs(s - 1) < 0.005 else f"{s:.2f}x faster" if s > 1 else f"{1 / s:.2f}x slower")
        rows.append(row)
    return {"key": key, "figure": fig, "lower_better": lower, "rows": rows,
            "only_a": [dict(zip(key, k)) for k in by_a if k not in by_b],
            "only_b": [dict(zip(key, k)) for k in by_b if k not in by_a],
            "geomean": math.exp(sum(logs) / len(logs)) if logs else None}


def _label(doc: dict) -> str:
    env = doc.get("environment") or {}
    parts = [env.get("time"), f"netstack {env['netstack']}" if env.get("netstack") else None, env.get("python"),
             env.get("checksum")]
    return ", ".join(p for p in parts if p)


def _title(doc: dict, column: str) -> str:
    for c in doc.get("columns", []):
        if c["key"] == column:
            return c["title"]
    return column


def run(args: argparse.Namespace) -> int:
    try:
        if args.a == "-" and args.b == "-":
            raise CompareError("only one of the two reports can come from stdin")
        doc_a, doc_b = load(args.a), load(args.b)
        result = compare(doc_a, doc_b, args.figure)
    except CompareError as exc:
        print(f"netstack bench compare: {exc}", file=sys.stderr)
        return 2
    key, fig = result["key"], result["figure"]
    title = _title(doc_a, fig)
    fmt = "{:,.2f}" if any(isinstance(r["a"], float) and r["a"] < 100 for r in result["rows"]) else "{:,.0f}"
    columns = [report.Column(k, _title(doc_a, k), "{}", "<" if any(isinstance(r.get(k), str) for r in result["rows"])
                             else ">") for k in key]
    columns += [report.Column("a", f"A {title}", fmt), report.Column("b", f"B {title}", fmt),
                report.Column("ratio", "B/A", "{:.3f}"),
                report.Column("change", "change", "{}", "<"),
                report.Column("note", "", "{}", "<")]
    for r in result["rows"]:
        r["note"] = "within noise" if r["noise"] else ("unstable" if r["unstable"] else "")
    print(f"{doc_a['benchmark']}: {title} ({'lower' if result['lower_better'] else 'higher'} is better), "
          "B against A")
    print(f"A: {args.a} ({_label(doc_a)})")
    print(f"B: {args.b} ({_label(doc_b)})")
    env_a, env_b = doc_a.get("environment") or {}, doc_b.get("environment") or {}
    for what in ("cpu", "python", "checksum"):
        if env_a.get(what) != env_b.get(what):
            print(f"note: the {what} differs: A {env_a.get(what)!r}, B {env_b.get(what)!r}")
    print()
    print(report.format_table(columns, result["rows"]))
    for r in result["rows"]:
        if r["unstable"] and not r["noise"]:
            label = " ".join(str(r[k]) for k in key)
            print(f"WARNING: {label}: the runs of A or B spread over more than {report.UNSTABLE:.0%} of the median; "
                  "the change may not be real")
    for which, rows in (("A", result["only_a"]), ("B", result["only_b"])):
        if rows:
            print(f"only in {which}: " + "; ".join(" ".join(str(v) for v in r.values()) for r in rows))
    if result["geomean"] is not None:
        g = result["geomean"]
        print()
        print(f"geometric mean: {g:.3f}x ({'B is better' if g > 1.005 else 'B is worse' if g < 0.995 else 'same'})")
    return 0
