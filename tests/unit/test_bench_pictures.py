"""`netstack bench pictures`: its structure (rows, ratios, targets, JSON), never its timings."""
import json

from netstack.cli import main


def test_rows_ratios_targets_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "pictures", "--packets", "300", "--repeat", "2", "--warmup", "1", "--quiet",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "300-packet capture" in text and "report of 10,000 packets" in text
    doc = json.loads(out.read_text())
    steps = [r["step"] for r in doc["rows"]]
    assert steps == ["trace (reference)", "read and analyse", "ladder (text)", "stream graphs", "report"]
    assert doc["rows"][0]["x_trace"] == 1.0
    assert all(r["seconds"] > 0 and r["packets_per_s"] > 0 for r in doc["rows"])
    assert doc["settings"]["packets"] == 300
    assert [t["name"] for t in doc["targets"]] == ["report of 10,000 packets"]
    # the same shape as the other benchmarks: runs after the warm-up, their spread, what compare reads
    assert doc["settings"]["warmup"] == 1 and doc["settings"]["repeat"] == 2
    assert all(len(r["runs"]) == 2 and r["spread"]["n"] == 2 for r in doc["rows"])
    assert doc["key"] == ["step"] and doc["figure"] == {"key": "seconds", "better": "lower"}
    assert "runs min max" in text and "after 1 warm-up" in text
    assert main(["bench", "compare", str(out), str(out)]) == 0
    assert "report" in capsys.readouterr().out


def test_bad_options(capsys):
    assert main(["bench", "pictures", "--packets", "5"]) == 2
    assert "--packets must be at least 10" in capsys.readouterr().err
