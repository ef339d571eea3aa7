"""`netstack bench tun|smtp --workers`: the pure parts (worker counts, rows and ratios per round)."""
from __future__ import annotations

import argparse
import os

import pytest

from netstack.bench.workers import parse_counts, table_rows

pytestmark = pytest.mark.unit


def test_worker_counts():
    assert parse_counts("1,2") == (1, 2)
    assert parse_counts("auto") == (len(os.sched_getaffinity(0)),)
    for bad in ("0", "65", "x", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_counts(bad)


def test_ratios_are_taken_round_by_round_against_the_first_count():
    runs = {1: [{"mb_per_s": 100.0, "share": []}, {"mb_per_s": 50.0, "share": []}],   # round 2 was disturbed
            2: [{"mb_per_s": 180.0, "share": [3, 5]}, {"mb_per_s": 90.0, "share": [4, 4]}]}
    rows = table_rows((1, 2), runs, "mb_per_s")
    assert rows[0]["ratio"] == 1.0 and rows[0]["share"] == "-"
    assert rows[1]["ratios"] == [1.8, 1.8] and rows[1]["ratio"] == 1.8          # not 135 / 75
    assert rows[1]["mb_per_s"] == 135.0 and rows[1]["ratio_range"] == "1.80..1.80"
    assert rows[1]["share"] == "4/4" and rows[1]["spread"]["n"] == 2
