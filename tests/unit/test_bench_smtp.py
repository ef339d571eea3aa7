"""``netstack bench smtp`` option checks that stop before any server starts."""
from __future__ import annotations

from netstack.cli import main


def test_bench_smtp_rejects_unknown_transport(capsys):
    assert main(["bench", "smtp", "--transports", "nope"]) == 2
    assert "unknown transport 'nope'" in capsys.readouterr().err
