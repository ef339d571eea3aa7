"""The README's root-free Python examples run exactly as written: as a script, in a
Jupyter-style cell (top-level ``await`` inside an already running loop), and the
blocking sockets.  A block this file does not know fails the test, so a new example
cannot go untested; the lab example is run by tests/integration/test_readme_lab_example.py."""
from __future__ import annotations

import ast
import asyncio
import inspect

import pytest

from tests.support.readme import needs_root, python_blocks

pytestmark = pytest.mark.timeout(60)


def _blocks():
    return [b for b in python_blocks() if not needs_root(b)]


def _script_block():
    found = [b for b in _blocks() if "asyncio.run(main())" in b]
    assert len(found) == 1
    return found[0]


def test_every_root_free_block_is_covered():
    blocks = _blocks()
    known = {_script_block(), "await main()\n"} | {b for b in blocks if ".socket()" in b}
    assert blocks and set(blocks) <= known, [b for b in blocks if b not in known]
    assert blocks[0] == _script_block()                 # the README opens with the in-memory example


def test_script_example_runs_as_a_script(capsys):
    exec(compile(_script_block(), "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "b'HELLO, TCP\\n'\n"


def test_jupyter_cell_example_runs_inside_a_running_loop(capsys):
    """As in Jupyter: the definitions cell, then ``await main()`` compiled with top-level
    await and run on the loop that is already running (IPython's autoawait does this)."""
    script = _script_block()
    assert script.rstrip().endswith("asyncio.run(main())")
    definitions = script.rstrip()[: -len("asyncio.run(main())")]
    cell = [b for b in _blocks() if "await main()" in b and "asyncio.run" not in b]
    assert cell == ["await main()\n"]
    ns = {"__name__": "__main__"}

    async def notebook():
        exec(compile(definitions, "README.md", "exec"), ns)
        code = compile(cell[0], "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, ns)
        assert inspect.isawaitable(result)
        await result

    asyncio.run(notebook())
    assert capsys.readouterr().out == "b'HELLO, TCP\\n'\n"


def test_blocking_example_runs_as_written(capsys):
    from netstack.sockets.blocking import background
    blocks = [b for b in _blocks() if ".socket()" in b]
    assert len(blocks) == 1
    ns = {"__name__": "__main__"}
    try:
        exec(compile(blocks[0], "README.md", "exec"), ns)
    finally:
        for name in ("client", "server"):
            if name in ns:
                background(ns[name]).stop()
    out = capsys.readouterr().out
    assert out.startswith("b'hello' from ('10.0.0.1', "), out
