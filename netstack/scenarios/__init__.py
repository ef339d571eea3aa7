"""Classroom scenarios: two sans-I/O TCPs on a fake clock, each showing one lesson.

:func:`names` lists them, :func:`run` plays one on a fresh
:class:`~netstack.scenarios.testbed.Testbed` and returns a :class:`Outcome`:
the testbed (capture, state log, segments), the facts the lesson rests on,
and the checks that state it (each a sentence and whether it held).  The
``netstack scenario`` command prints the trace and writes the pictures; the
test suite asserts every check.
"""
from __future__ import annotations

from .catalog import SCENARIOS, Outcome, Scenario

__all__ = ["SCENARIOS", "Scenario", "Outcome", "names", "get", "run"]


def names() -> list[str]:
    """Scenario names, in teaching order."""
    return list(SCENARIOS)


def get(name: str) -> Scenario:
    """The scenario called ``name``; KeyError with the known names if there is none."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r} (known: {', '.join(SCENARIOS)})") from None


def run(name: str) -> Outcome:
    """Play scenario ``name`` and return its outcome."""
    return get(name).play()
