"""``netstack bench smtp`` option checks that stop before any server starts."""
from __future__ import annotations

from netstack.cli import main


def test_bench_smtp_rejects_unknown_transport(capsys):
    assert main(["bench", "smtp", "--transports", "nope"]) == 2
    assert "unknown transport 'nope'" in capsys.readouterr().err


def test_bench_smtp_rejects_unknown_client(capsys):
    assert main(["bench", "smtp", "--client", "nope"]) == 2
    assert "unknown client 'nope'" in capsys.readouterr().err


def test_bench_smtp_smtp_source_cannot_use_the_memory_link(capsys, monkeypatch):
    from netstack.bench import smtp as bench_smtp

    monkeypatch.setattr(bench_smtp, "postfix_tools_missing", lambda: None)
    assert main(["bench", "smtp", "--client", "smtp-source", "--transports", "netstack-memory"]) == 2
    assert "in-memory link" in capsys.readouterr().err


def test_bench_smtp_rejects_unknown_connection_mode(capsys):
    assert main(["bench", "smtp", "--conn", "new,sometimes"]) == 2
    assert "unknown connection mode 'sometimes'" in capsys.readouterr().err
