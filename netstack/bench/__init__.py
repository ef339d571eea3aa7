"""Benchmarks run by ``netstack bench NAME`` (one module per benchmark).

A benchmark is a module ``netstack/bench/<name>.py`` that exposes
``add_arguments(parser)`` and ``run(args) -> int`` and whose docstring's
first line is its one-line help; ``netstack.cli.bench`` finds it by itself
(see there).  ``netstack.bench.report`` holds the shared timing, table, JSON
and progress helpers.
"""
