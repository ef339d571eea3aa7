"""``netstack bench``: benchmarks, one subcommand each (``netstack bench checksum``).

The subcommands form a registry that fills itself: every module
``netstack/bench/<name>.py`` that defines both

``add_arguments(parser)``
    adds its options to its own ``argparse`` sub-parser; call
    ``netstack.bench.report.add_common_arguments(parser)`` there to get the
    shared ``--repeat N``, ``--min-time S``, ``--quick``, ``--json FILE`` and
    ``--quiet``;
``run(args) -> int``
    measures, prints the table on stdout (progress on stderr), writes
    ``--json`` when given, and returns the exit status,

becomes ``netstack bench <name>``, with the first line of the module
docstring as its help and the whole docstring as its description.  Nothing
else needs to change to add one (e.g. ``segments``, ``tun``, ``smtp``).
Modules without those two functions (``report``, helpers) are not
benchmarks.  ``ORDER`` only sorts the listing; unknown names follow
alphabetically.

Every benchmark module is imported to build ``netstack bench --help``, so keep
its top-level imports light (import scapy, the stack, pyroute2... inside
``run``).  A module that fails to import still gets a subcommand, which
reports the import error when run (exit status 1) instead of breaking the
other benchmarks.

Report figures as ratios against a reference measured in the same run (see
``netstack.bench.report``); tests check a benchmark's structure (columns,
JSON), never its timings.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

ORDER = ["checksum", "segments", "tun", "smtp", "conns", "pictures"]


class _Broken:
    """Stands in for a benchmark module that failed to import."""

    def __init__(self, name: str, exc: BaseException):
        self.name, self.exc = name, exc
        self.__doc__ = f"(unavailable: {type(exc).__name__}: {exc})"

    def add_arguments(self, parser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(self, args) -> int:
        print(f"netstack bench {self.name}: cannot load netstack.bench.{self.name}: "
              f"{type(self.exc).__name__}: {self.exc}", file=sys.stderr)
        return 1


def discover() -> dict:
    """{name: module} of every benchmark under netstack.bench, in listing order."""
    import netstack.bench as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        name = info.name
        if name.startswith("_") or info.ispkg:
            continue
        try:
            module = importlib.import_module(f"netstack.bench.{name}")
        except Exception as exc:  # a half-built benchmark must not break the others
            found[name] = _Broken(name, exc)
            continue
        if callable(getattr(module, "add_arguments", None)) and callable(getattr(module, "run", None)):
            found[name] = module
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def _summary(module) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def add_parser(sub) -> None:
    benches = discover()
    p = sub.add_parser("bench", help="run a benchmark (" + ", ".join(benches) + ")",
                       description="Benchmarks. Each prints a table on stdout (median of repeated runs after "
                                   "--warmup discarded ones, how the runs spread around it, a warning for a row "
                                   "spread over more than 10%, ratios against references measured in the same "
                                   "run), shows progress on stderr and can write JSON with --json FILE. "
                                   "`netstack bench compare A.json B.json` prints the ratio of each matching row "
                                   "of two such files.")
    p.set_defaults(func=run, bench_parser=p, bench_modules=benches)
    names = p.add_subparsers(dest="bench", metavar="BENCH")
    for name, module in benches.items():
        bp = names.add_parser(name, help=_summary(module), description=module.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(bp)


def run(args) -> int:
    modules = args.bench_modules
    if not args.bench:
        args.bench_parser.print_help(sys.stderr)
        return 2
    if getattr(args, "json", None) == "-":
        from netstack.bench import report

        with report.json_alone_on_stdout():          # `--json -`: stdout is the JSON alone
            return int(modules[args.bench].run(args) or 0)
    return int(modules[args.bench].run(args) or 0)
