"""`netstack bench checksum` and the shared bench helpers: structure and behaviour only, never timings."""
from __future__ import annotations

import io
import json
import sys
import textwrap

import pytest

import netstack.bench
from netstack.bench import report
from netstack.cli import bench as cli_bench
from netstack.cli import main

FAST = ["--repeat", "1", "--min-time", "0.0002"]
IMPLS = ["native", "pure", "scapy", "copy"]


def _run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def scapy_available():
    try:
        import scapy.utils  # noqa: F401
    except ImportError:
        return False
    return True


def test_table_json_and_progress(tmp_path, capsys, scapy_available):
    path = tmp_path / "checksum.json"
    status, out, err = _run(["bench", "checksum", *FAST, "--sizes", "20,1500,65536", "--json", str(path)], capsys)
    assert status == 0

    # stdout: the table with its columns, every implementation at every size, the targets
    header = next(line for line in out.splitlines() if line.startswith("size B"))
    for title in ("size B", "impl", "ns/call", "GB/s", "vs scapy", "vs copy"):
        assert title in header
    for size in (20, 1500, 65536):
        for impl in IMPLS:
            assert any(line.split()[:2] == [str(size), impl] for line in out.splitlines()), (size, impl)
    assert "targets:" in out
    for name in ("native 1500 B vs scapy", "native 64 KiB vs memory copy", "native 20 B vs a no-op cffi call"):
        assert name in out

    # stderr: progress, one step per size plus the call table, then "done"
    assert "bench checksum: [1/" in err
    assert "65536 B: " in err
    assert "done in" in err

    # JSON: the same table, plus environment, settings, calls, targets
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "checksum"
    assert [c["key"] for c in doc["columns"]] == ["size", "impl", "ns_per_call", "gb_per_s", "vs_scapy", "vs_copy"]
    assert {(r["size"], r["impl"]) for r in doc["rows"]} == {(s, i) for s in (20, 1500, 65536) for i in IMPLS}
    assert doc["settings"]["repeat"] == 1 and doc["settings"]["sizes"] == [20, 1500, 65536]
    assert doc["environment"]["checksum"]
    native = doc["environment"]["checksum"].startswith("native")
    assert doc["copy_method"].startswith("native memcpy" if native else "bytearray slice")
    rows = {(r["size"], r["impl"]): r for r in doc["rows"]}
    for (size, impl), row in rows.items():
        if impl == "native" and doc["environment"]["checksum"].startswith("pure"):
            continue
        if impl == "scapy" and not scapy_available:
            assert row["ns_per_call"] is None
            continue
        assert row["ns_per_call"] > 0
        assert len(row["runs_ns_per_call"]) == 1
        assert row["gb_per_s"] == pytest.approx(size / row["ns_per_call"])
        assert row["vs_copy"] == pytest.approx(rows[(size, "copy")]["ns_per_call"] / row["ns_per_call"])
        if scapy_available:
            assert row["vs_scapy"] == pytest.approx(rows[(size, "scapy")]["ns_per_call"] / row["ns_per_call"])
    assert rows[(1500, "copy")]["vs_copy"] == pytest.approx(1.0)
    assert [t["name"] for t in doc["targets"]] == [
        "native 1500 B vs scapy", "native 64 KiB vs memory copy", "native 20 B vs a no-op cffi call"]
    for t in doc["targets"]:
        assert t["met"] in (True, False, None)
    if doc["environment"]["checksum"].startswith("native"):
        assert doc["calls"][0]["call"].startswith("no-op cffi call")
        assert doc["calls"][0]["vs_noop"] == pytest.approx(1.0)
        assert any(c["call"] == "checksum(memoryview slice)" for c in doc["calls"])
        assert doc["targets"][2]["value"] == pytest.approx(
            next(c for c in doc["calls"] if c["call"] == "checksum(bytes)")["vs_noop"])


def test_default_sizes_are_the_issue_sizes():
    from netstack.bench import checksum as bench

    assert bench.SIZES == (20, 40, 64, 576, 1500, 9000, 65536)
    args = cli_bench_args(["bench", "checksum"])
    assert args.sizes == bench.SIZES
    assert report.timing_settings(args) == (report.DEFAULT_REPEAT, report.DEFAULT_MIN_TIME)
    quick = cli_bench_args(["bench", "checksum", "--quick"])
    assert report.timing_settings(quick) == (report.QUICK_REPEAT, report.QUICK_MIN_TIME)
    explicit = cli_bench_args(["bench", "checksum", "--quick", "--repeat", "9"])
    assert report.timing_settings(explicit) == (9, report.QUICK_MIN_TIME)


def cli_bench_args(argv):
    from netstack.cli import build_parser

    return build_parser().parse_args(argv)


def test_json_to_a_missing_directory_fails_before_measuring(tmp_path, capsys):
    target = tmp_path / "nope" / "x.json"
    status, out, err = _run(["bench", "checksum", *FAST, "--json", str(target)], capsys)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and str(target) in err
    assert not target.exists()


@pytest.mark.parametrize("sizes", ["abc", "", "-5", "20,x"])
def test_bad_sizes_are_a_usage_error(sizes, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "checksum", "--sizes", sizes])
    assert exc.value.code == 2


def test_unknown_kernel_is_a_usage_error(capsys):
    status, _, err = _run(["bench", "checksum", *FAST, "--kernel", "no-such-kernel", "--no-scapy"], capsys)
    assert status == 2 and "--kernel" in err


def test_no_scapy_leaves_the_column_empty(capsys):
    status, out, err = _run(["bench", "checksum", *FAST, "--sizes", "40", "--no-scapy", "--quiet", "--json", "-"],
                            capsys)
    assert status == 0
    doc = json.loads(out)                 # --json -: stdout is the JSON alone, the table went to stderr
    assert "vs scapy" in err
    scapy_row = next(r for r in doc["rows"] if r["impl"] == "scapy")
    assert scapy_row["ns_per_call"] is None and scapy_row["vs_scapy"] is None
    assert all(r["vs_scapy"] is None for r in doc["rows"])
    assert doc["scapy"].startswith("left out")


# --- shared helpers (netstack.bench.report) ---------------------------------------------------


def test_median_and_ratio():
    assert report.median([5, 1, 3]) == 3
    assert report.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError):
        report.median([])
    assert report.ratio(300, 100) == 3
    assert report.ratio(None, 100) is None and report.ratio(100, None) is None and report.ratio(1, 0) is None


def test_time_calls_interleaves_and_reports_medians():
    order = []
    calls = {"a": (order.append, ("a",)), "b": (order.append, ("b",))}
    timings = report.time_calls(calls, repeat=3, min_time=0.0001)
    assert set(timings) == {"a", "b"}
    for t in timings.values():
        assert len(t.runs) == 3 and t.number >= 1
        assert t.ns == report.median(t.runs)
        assert t.gbps(1000) == pytest.approx(1000 / t.ns)
    # after calibration the timed runs alternate a-block, b-block, a-block...
    na, nb = timings["a"].number, timings["b"].number
    tail = order[-3 * (na + nb):]
    assert tail == (["a"] * na + ["b"] * nb) * 3
    with pytest.raises(ValueError):
        report.time_call(len, ("x",), repeat=0)


def test_format_table_aligns_and_shows_missing_as_dash():
    cols = [report.Column("name", "name", "{}", "<"), report.Column("v", "value", "{:.1f}")]
    text = report.format_table(cols, [{"name": "a", "v": 1.25}, {"name": "longer", "v": None}])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "value"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["a", "1.2"]
    assert lines[3].split() == ["longer", "-"]
    assert len({len(line) for line in lines[:3]}) == 1       # aligned


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = report.Progress(2, "bench x", stream=stream)
    progress.step("first")
    progress.step("second")
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["bench x: [1/2] first", "bench x: [2/2] second"]
    assert lines[2].startswith("bench x: done in")
    quiet = io.StringIO()
    q = report.Progress(1, "bench x", stream=quiet, quiet=True)
    q.step("first")
    q.finish()
    assert quiet.getvalue() == ""


def test_write_json_round_trip(tmp_path):
    path = tmp_path / "r.json"
    cols = [report.Column("k", "K")]
    report.write_json(str(path), "demo", cols, [{"k": 1}],
                      targets=[report.Target("t", ">= 1", 2.0, True, "fine")])
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "demo" and doc["rows"] == [{"k": 1}]
    assert doc["columns"] == [{"key": "k", "title": "K"}]
    assert doc["targets"][0]["met"] is True
    assert set(doc["environment"]) >= {"python", "cpu", "checksum", "netstack"}


# --- the registry: a module in netstack/bench/ becomes a subcommand -------------------------------


@pytest.fixture
def extra_bench_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(netstack.bench, "__path__", [*netstack.bench.__path__, str(tmp_path)])
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("netstack.bench.zz")]:
        del sys.modules[name]


def test_registry_discovers_new_benchmarks(extra_bench_dir, capsys):
    (extra_bench_dir / "zzdemo.py").write_text(textwrap.dedent('''
        """A demo benchmark for the registry test.

        More text.
        """
        def add_arguments(parser):
            parser.add_argument("--flag", type=int, default=1)

        def run(args):
            print("demo ran with", args.flag)
            return 7
    '''))
    (extra_bench_dir / "zzhelper.py").write_text("def something():\n    return 1\n")
    (extra_bench_dir / "zzbroken.py").write_text("raise ImportError('half-built')\n"
                                                  "def add_arguments(p): pass\ndef run(a): return 0\n")
    found = cli_bench.discover()
    assert list(found)[0] == "checksum"
    assert "zzdemo" in found and "zzhelper" not in found and "report" not in found
    assert "zzbroken" in found

    status, out, _ = _run(["bench", "zzdemo", "--flag", "3"], capsys)
    assert (status, out) == (7, "demo ran with 3\n")

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = capsys.readouterr().out
    assert "zzdemo" in help_text and "A demo benchmark for the registry test" in help_text

    status, _, err = _run(["bench", "zzbroken"], capsys)
    assert status == 1 and "half-built" in err
    status, _, _ = _run(["bench"], capsys)      # no benchmark named: usage, status 2
    assert status == 2
