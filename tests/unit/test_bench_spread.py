"""Benchmarks report their spread (pyperf's rule: warn above 10% of the median), take --warmup,
version their JSON, and `netstack bench compare` prints the ratio of each matching row."""
from __future__ import annotations

import json

import pytest

from netstack.bench import report
from netstack.bench.compare import compare, key_and_figure
from netstack.cli import main


def test_spread_of_runs():
    sp = report.spread_of([100.0, 104.0, 96.0, 102.0, None, 98.0])
    assert (sp.n, sp.median, sp.min, sp.max) == (5, 100.0, 96.0, 104.0)
    assert (sp.q1, sp.q3) == (98.0, 102.0)
    assert sp.rel_range == pytest.approx(0.08) and sp.rel_iqr == pytest.approx(0.04)
    assert not sp.unstable
    assert report.spread_of([100.0, 111.0, 100.0]).unstable               # 11% > 10%
    assert not report.spread_of([100.0, 110.0, 100.0]).unstable           # exactly 10%: not above
    assert not report.spread_of([5.0]).unstable and report.spread_of([]) is None


def test_spread_column_and_warnings():
    rows = [{"name": "steady", "ns": 100.0, "runs": [99.0, 100.0, 101.0]},
            {"name": "noisy", "ns": 100.0, "runs": [80.0, 100.0, 130.0]},
            {"name": "dicts", "ns": 1.0, "runs": [{"x": 10.0}, {"x": 10.5}, {"x": None}]}]
    report.add_spread(rows[:2], "runs")
    report.add_spread(rows[2:], "runs", "x")
    assert rows[2]["spread"]["n"] == 2 and rows[2]["spread"]["median"] == 10.25
    table = report.format_table([report.Column("name", "name", "{}", "<"), report.SPREAD], rows)
    lines = table.splitlines()
    assert lines[0].split() == ["name", "runs", "min", "max"]
    assert lines[2].endswith("-1.0% +1.0%") and lines[3].endswith("-20.0% +30.0% !")
    (warning,) = report.spread_warnings(rows, lambda r: r["name"])
    assert warning.startswith("WARNING: noisy: its 3 runs spread over 50.0% of the median (> 10%")


def test_warmup_runs_are_done_and_discarded(monkeypatch):
    calls = []
    monkeypatch.setattr(report, "_calibrate", lambda timer, min_time: 5)
    fn = lambda: calls.append(1)                                   # noqa: E731
    t = report.time_call(fn, repeat=3, warmup=2)
    assert len(calls) == (2 + 3) * 5 and len(t.runs) == 3 and t.number == 5
    calls.clear()
    report.time_call(fn, repeat=3)
    assert len(calls) == 3 * 5
    with pytest.raises(ValueError):
        report.time_call(fn, warmup=-1)


def test_json_has_schema_version_key_figure_warnings(tmp_path):
    path = tmp_path / "r.json"
    cols = [report.Column("k", "K"), report.Column("ns", "ns"), report.SPREAD]
    report.write_json(str(path), "demo", cols, [{"k": 1, "ns": 2.0}], key=["k"], figure=("ns", "lower"),
                      warnings=["WARNING: x"])
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == report.SCHEMA_VERSION == 2
    assert doc["key"] == ["k"] and doc["figure"] == {"key": "ns", "better": "lower"}
    assert doc["warnings"] == ["WARNING: x"] and doc["columns"] == [{"key": "k", "title": "K"}, {"key": "ns", "title": "ns"}]


def test_checksum_bench_reports_spread_warmup_and_warnings(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "UNSTABLE", -1.0)                # every row with 2+ runs counts as unstable
    path = tmp_path / "c.json"
    status = main(["bench", "checksum", "--repeat", "2", "--warmup", "0", "--min-time", "0.0002", "--sizes", "20",
                   "--no-scapy", "--quiet", "--json", str(path)])
    out = capsys.readouterr().out
    assert status == 0
    header = next(l for l in out.splitlines() if l.startswith("size B"))
    assert header.rstrip().endswith("runs min max") and "after 0 warm-up" in out
    assert "WARNING: native 20 B: its 2 runs spread over" in out
    doc = json.loads(path.read_text())
    assert doc["settings"]["warmup"] == 0 and doc["key"] == ["size", "impl"]
    native = next(r for r in doc["rows"] if r["impl"] == "native")
    assert native["spread"]["n"] == 2 and native["spread"]["median"] == pytest.approx(native["ns_per_call"])
    assert any(w.startswith("WARNING: native 20 B") for w in doc["warnings"])


@pytest.mark.parametrize("argv", [["bench", "checksum", "--warmup", "-1"], ["bench", "segments", "--warmup", "x"]])
def test_bad_warmup_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "--warmup" in capsys.readouterr().err


# -- bench compare -----------------------------------------------------------------------------------

def _doc(rows, *, benchmark="checksum", schema=2):
    doc = {"benchmark": benchmark, "environment": {"python": "CPython 3.11", "cpu": "x", "checksum": "native"},
           "columns": [{"key": "size", "title": "size B"}, {"key": "impl", "title": "impl"},
                       {"key": "ns_per_call", "title": "ns/call"}, {"key": "gb_per_s", "title": "GB/s"}],
           "rows": rows}
    if schema == 2:
        doc.update(schema_version=2, key=["size", "impl"], figure={"key": "ns_per_call", "better": "lower"})
    return doc


def _row(size, impl, ns, runs=None):
    row = {"size": size, "impl": impl, "ns_per_call": ns, "gb_per_s": size / ns}
    if runs:
        row["runs_ns_per_call"] = runs
        report.add_spread([row], "runs_ns_per_call")
    return row


A = _doc([_row(20, "native", 100.0, [99.0, 100.0, 101.0]), _row(1500, "native", 400.0, [390.0, 400.0, 410.0]),
          _row(1500, "pure", 8000.0), _row(9000, "native", 2000.0)])
B = _doc([_row(20, "native", 125.0, [124.0, 125.0, 126.0]), _row(1500, "native", 405.0, [395.0, 405.0, 415.0]),
          _row(1500, "pure", 4000.0), _row(65536, "native", 9000.0)])


def test_compare_rows_ratio_direction_noise_and_leftovers():
    r = compare(A, B)
    by = {(x["size"], x["impl"]): x for x in r["rows"]}
    assert by[(20, "native")]["ratio"] == pytest.approx(1.25) and by[(20, "native")]["change"] == "1.25x slower"
    assert not by[(20, "native")]["noise"]
    assert by[(1500, "native")]["noise"]                          # the runs overlap: not a real change
    assert by[(1500, "pure")]["change"] == "2.00x faster"
    assert r["only_a"] == [{"size": 9000, "impl": "native"}] and r["only_b"] == [{"size": 65536, "impl": "native"}]
    assert r["geomean"] == pytest.approx((0.8 * (400 / 405) * 2.0) ** (1 / 3))


def test_compare_other_figure_and_old_schema():
    r = compare(A, B, figure="gb_per_s")                          # higher is better for a rate
    by = {(x["size"], x["impl"]): x for x in r["rows"]}
    assert by[(1500, "pure")]["change"] == "2.00x faster" and by[(20, "native")]["ratio"] == pytest.approx(0.8)
    old = _doc(A["rows"], schema=1)
    assert key_and_figure(old) == (["size", "impl"], "ns_per_call", True)


def test_compare_command(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(A))
    b.write_text(json.dumps(B))
    assert main(["bench", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "checksum: ns/call (lower is better), B against A" in out
    line = next(l for l in out.splitlines() if l.split()[:2] == ["20", "native"])
    assert line.split()[2:6] == ["100", "125", "1.250", "1.25x"] and "slower" in line
    assert "within noise" in next(l for l in out.splitlines() if l.split()[:2] == ["1500", "native"])
    assert "only in A: 9000 native" in out and "only in B: 65536 native" in out
    assert "geometric mean:" in out


def test_compare_errors_are_one_line_exit_2(tmp_path, capsys):
    a, b, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    a.write_text(json.dumps(A))
    b.write_text(json.dumps(_doc(B["rows"], benchmark="segments")))
    bad.write_text("{not json")
    for argv, message in (([a, b], "different benchmarks: 'checksum' and 'segments'"),
                          ([a, bad], f"{bad}: not JSON: line 1"),
                          ([a, tmp_path / "missing.json"], "No such file"),
                          ([a, a], None)):
        status = main(["bench", "compare", *map(str, argv)])
        out, err = capsys.readouterr()
        if message is None:
            assert status == 0 and "same" in out
        else:
            assert status == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_json_dash_keeps_stdout_for_the_json_alone(capsys):
    """`-` means stdout: the table goes to stderr, for every benchmark (segments prints with print())."""
    assert main(["bench", "segments", "--count", "50", "--repeat", "2", "--warmup", "0", "--quiet",
                 "--json", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["benchmark"] == "segments" and doc["schema_version"] == 2
    assert "ns/segment" in err and all(r["spread"]["n"] == 2 for r in doc["rows"])


def test_guarded_runs_a_measurement_and_turns_failures_into_one_line_and_a_status(capsys):
    from netstack.bench import report
    assert report.guarded("bench x", lambda: 42) == (42, None)

    def fails():
        raise report.BenchError("the lab did not come up")

    def interrupted():
        raise KeyboardInterrupt

    assert report.guarded("bench x", fails) == (None, 1)
    assert capsys.readouterr().err == "netstack bench x: the lab did not come up\n"
    assert report.guarded("bench x", interrupted, interrupted="interrupted (lab removed)") == (None, 130)
    assert capsys.readouterr().err == "netstack bench x: interrupted (lab removed)\n"
    from netstack.bench import conns, tun, workers
    assert tun.BenchError is workers.BenchError is conns.BenchError is report.BenchError
