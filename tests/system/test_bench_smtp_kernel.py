"""Structure of ``netstack bench smtp`` (never its timings): it runs servers on kernel sockets
(our SMTP and aiosmtpd on 127.0.0.1), so it is a system test; the pure option check is in
tests/unit/test_bench_smtp.py."""
from __future__ import annotations

import json

from netstack.cli import main


def test_bench_smtp_quick_json(tmp_path, capsys):
    out = tmp_path / "smtp.json"
    rc = main(["bench", "smtp", "--quick", "--quiet", "--messages", "6", "--clients", "1,2", "--sinks",
               "memory,maildir-tmpfs", "--tmpfs-dir", str(tmp_path), "--json", str(out), "--transports", "kernel"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "vs aiosmtpd" in text and "ours" in text and "aiosmtpd" in text
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "smtp"
    rows = doc["rows"]
    assert len(rows) == 2 * 2 * (2 + 3)        # clients x conn modes x servers (memory: 2; maildir: +aiosmtpd-mailbox)
    for r in rows:
        assert r["msgs_per_s"] > 0 and r["conn"] in ("new", "reuse")
        if r["server"] == "aiosmtpd":
            assert r["vs_aiosmtpd"] == 1.0
        if r["server"] == "aiosmtpd-mailbox":
            assert r["vs_mailbox"] == 1.0 and r["sink"].startswith("maildir-tmpfs")
    assert list(tmp_path.glob("nsbench-smtp-*")) == []     # sinks cleaned up


def test_default_compares_ours_on_netstack_with_ours_on_kernel_and_aiosmtpd(tmp_path, capsys, monkeypatch):
    """Without --transports the table has our SMTP on netstack beside kernel streams and aiosmtpd
    (over the in-memory link here, as a non-root user would get; over the TUN lab as root)."""
    from netstack.bench import smtp as bench_smtp

    monkeypatch.setattr(bench_smtp.os, "geteuid", lambda: 1000)
    out = tmp_path / "smtp.json"
    rc = main(["bench", "smtp", "--quick", "--quiet", "--messages", "4", "--clients", "1", "--sinks", "memory",
               "--json", str(out)])
    assert rc == 0
    assert "in-memory link" in capsys.readouterr().err
    rows = json.loads(out.read_text())["rows"]
    assert {(r["server"], r["transport"]) for r in rows} == {("ours", "kernel"), ("ours", "netstack-memory"),
                                                            ("aiosmtpd", "kernel")}
    monkeypatch.setattr(bench_smtp.os, "geteuid", lambda: 0)
    monkeypatch.setattr(bench_smtp.os.path, "exists", lambda p: p == "/dev/net/tun")
    assert bench_smtp._default_netstack_transport() == "netstack-tun"


def test_bench_smtp_with_smtp_source_and_smtp_sink_reference(tmp_path, capsys):
    """Postfix's smtp-source drives every server; smtp-sink is a reference row in each cell; the
    idle-sessions line reports bytes per session."""
    out = tmp_path / "smtp.json"
    rc = main(["bench", "smtp", "--quick", "--quiet", "--messages", "6", "--clients", "1,2", "--sinks",
               "maildir-tmpfs", "--tmpfs-dir", str(tmp_path), "--json", str(out), "--transports", "kernel",
               "--client", "python,smtp-source", "--idle-sessions", "20"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "vs smtp-sink" in text and "idle sessions: 20 held open on kernel:" in text
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    src = [r for r in rows if r["client"] == "smtp-source"]
    assert len(src) == 2 * 2 * 4 and len(rows) - len(src) == 2 * 2 * 3   # smtp-source adds smtp-sink
    for r in src:
        assert r["msgs_per_s"] > 0 and r["vs_sink"] > 0
        if r["server"] == "smtp-sink":
            assert r["vs_sink"] == 1.0 and r["sink"] == "none (discards)"
    assert doc["idle_sessions"]["kernel"]["sessions"] == 20 and doc["idle_sessions"]["kernel"]["bytes_per_session"] > 0
    assert list(tmp_path.glob("nsbench-smtp-*")) == []


def test_bench_smtp_one_connection_mode_and_the_loop_cpu_per_message(tmp_path, capsys):
    """``--conn new`` keeps to that mode; every in-process server's row carries the event-loop
    thread's CPU time per message, smtp-sink's (another process) none."""
    out = tmp_path / "smtp.json"
    rc = main(["bench", "smtp", "--quick", "--quiet", "--messages", "6", "--clients", "2", "--sinks", "maildir-tmpfs",
               "--tmpfs-dir", str(tmp_path), "--json", str(out), "--transports", "kernel", "--conn", "new",
               "--client", "smtp-source", "--idle-sessions", "0"])
    assert rc == 0
    assert "loop CPU/msg" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert {r["conn"] for r in rows} == {"new"} and len(rows) == 4
    for r in rows:
        if r["server"] == "smtp-sink":
            assert r["loop_cpu_us"] is None
        else:
            assert r["loop_cpu_us"] > 0
