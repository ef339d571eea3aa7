"""`netstack bench conns`: the idle-connection memory figure (in memory, no root)."""
from __future__ import annotations

import json

from netstack.bench import conns
from netstack.cli import main


def test_idle_memory_opens_every_connection_and_reports_bytes_per_end():
    res = conns.idle_memory(200)
    assert 500 < res["per_connection"] < 100_000          # a TCB with its parts, not zero, not buffers
    assert res["reference"] > 0


def test_no_rate_run_prints_the_memory_row_and_json(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["bench", "conns", "--no-rate", "--idle", "100", "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "idle established connection (100 open)" in text
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["unit"] == "bytes" and rows[0]["value"] > 0


def test_idle_beyond_the_port_range_is_a_usage_error(capsys):
    assert main(["bench", "conns", "--no-rate", "--idle", "20000"]) == 2
    assert "at most 16000" in capsys.readouterr().err
