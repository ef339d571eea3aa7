"""`netstack bench conns` with its lab: the connection rate against the kernel's own echo."""
from __future__ import annotations

import json

import pytest

from netstack.cli import main
from tests.support.nstest import require_tun

pytestmark = pytest.mark.integration


def test_connection_rate_row_against_the_kernel(tmp_path):
    require_tun()
    out = tmp_path / "c.json"
    assert main(["bench", "conns", "--seconds", "0.5", "--repeat", "1", "--idle", "100", "--quiet",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    rate = rows[0]
    assert rate["unit"] == "conn/s" and rate["value"] > 10 and rate["reference"] > 10
    assert rate["ratio"] == pytest.approx(rate["value"] / rate["reference"])
