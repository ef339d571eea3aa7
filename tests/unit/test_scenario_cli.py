"""`netstack scenario list | run NAME [-o DIR]`."""
import json
import xml.etree.ElementTree as ET

import pytest

from netstack import scenarios
from netstack.cli import main
from netstack.statelog import read_state_log


def test_list_names_every_scenario_with_its_lesson(capsys):
    assert main(["scenario", "list"]) == 0
    out = capsys.readouterr().out
    for name in scenarios.names():
        assert name in out and scenarios.get(name).lesson in out


def test_run_prints_segments_transitions_and_the_lesson(capsys):
    assert main(["scenario", "run", "handshake"]) == 0
    out = capsys.readouterr().out
    assert "A: CLOSED -> SYN-SENT (user open)" in out
    assert "B: LISTEN -> SYN-RECEIVED (received [S])" in out
    assert "A> IP (ttl 64" in out and "Flags [S.]" in out
    assert "[ok] three segments open the connection: SYN, SYN-ACK, ACK" in out and "FAILED" not in out


def test_run_marks_the_lost_segments(capsys):
    assert main(["scenario", "run", "rto-backoff"]) == 0
    out = capsys.readouterr().out
    assert out.count("LOST on the wire") == 4
    assert "A: rto #1, rto now 2s: cwnd 9880 -> 988" in out and "A: rto #4, rto now 16s" in out


def test_run_explain(capsys):
    assert main(["scenario", "run", "rst-closed-port", "-V"]) == 0
    out = capsys.readouterr().out
    assert "destination port 81" in out and "flags 0x014" in out


def test_run_writes_the_capture_state_log_and_pictures(tmp_path, capsys):
    d = tmp_path / "out"
    assert main(["scenario", "run", "fast-retransmit", "-o", str(d)]) == 0
    names = sorted(p.name for p in d.iterdir())
    assert names == ["capture.pcap", "ladder.svg", "ladder.txt", "report.html", "seq.png", "states-A.svg",
                     "states-B.svg", "states.jsonl"]
    assert (d / "seq.png").read_bytes()[:4] == b"\x89PNG"
    ET.parse(d / "ladder.svg")
    ET.parse(d / "states-A.svg")
    assert "RETRANSMISSION" in (d / "ladder.txt").read_text()
    recs = read_state_log(str(d / "states.jsonl"))
    assert {r.local for r in recs} == {"198.18.0.1:40000", "198.18.0.2:8000"}
    assert "scenario fast-retransmit" in (d / "report.html").read_text()
    # the congestion and recovery events are in the same log, in time order, and in the report
    lines = [json.loads(line) for line in (d / "states.jsonl").read_text().splitlines()]
    assert [r["time"] for r in lines] == sorted(r["time"] for r in lines)
    assert [r["event"] for r in lines if "event" in r] == ["fast-retransmit", "recovery-exit"]
    page = (d / "report.html").read_text()
    assert "Congestion and recovery" in page and "<td>fast-retransmit</td>" in page


def test_a_failed_lesson_exits_1(monkeypatch, capsys):
    s = scenarios.get("handshake")
    bad = scenarios.Scenario("broken", "Broken", "nothing", lambda o: (s.body(o), o.check("false", False)))
    monkeypatch.setitem(scenarios.SCENARIOS, "broken", bad)
    assert main(["scenario", "run", "broken"]) == 1
    assert "[FAILED] false" in capsys.readouterr().out


def test_unknown_scenario_and_unwritable_dir(tmp_path, capsys):
    assert main(["scenario", "run", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no scenario 'nope' (known: handshake" in err
    (tmp_path / "file").write_text("x")
    assert main(["scenario", "run", "handshake", "-o", str(tmp_path / "file" / "d")]) == 2
    assert "Not a directory" in capsys.readouterr().err


def test_several_connections_get_one_ladder_each(tmp_path, capsys):
    d = tmp_path / "n"
    assert main(["scenario", "run", "nagle", "-o", str(d)]) == 0
    assert (d / "ladder.svg").exists() and (d / "ladder-2.svg").exists() and (d / "seq-2.png").exists()


def test_seed_article_replay_reads_like_the_article(capsys):
    assert main(["scenario", "run", "seed-article", "-V"]) == 0
    out = capsys.readouterr().out
    assert "0x0000:  4500 0056" in out                        # the article's first line: 86 bytes
    assert "HELO web34213.mail.mud.yahoo.com" in out and "MAIL FROM:<xxxxxxxxxxxxx@yahoo.com>" in out
    assert "kind 8: Timestamps" in out


def test_syn_flood_prints_the_forged_sources_apart(capsys):
    assert main(["scenario", "run", "syn-flood"]) == 0
    out = capsys.readouterr().out
    forged = [line for line in out.splitlines() if " X> " in line]
    assert len(forged) == 12 and all("203.0.113." in line and "Flags [S]" in line for line in forged)
    assert "A> IP" in out and "198.18.0.1.40000 > 198.18.0.2.8000: Flags [S]" in out
    assert "B: LISTEN -> SYN-RECEIVED (received [.])" in out          # the cookie's ACK opens it
    assert "[ok] the cookie (SYN-ACK seq) decodes to 536" in out and "FAILED" not in out
