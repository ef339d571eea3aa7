"""Argument types shared by the benchmarks (not a benchmark itself: the name starts with "_")."""
from __future__ import annotations

import argparse


def bounded(kind, lo, hi):
    """An argparse ``type`` accepting ``kind(text)`` within ``lo..hi`` (one-line errors otherwise)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range {lo:g}..{hi:g}")
        return value
    return parse
