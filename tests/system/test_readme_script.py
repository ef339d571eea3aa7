"""The README's first example, saved as a file and run with `python3 script.py` exactly
as a reader would (the unit tier execs it in-process; this is the real interpreter run)."""
from __future__ import annotations

import subprocess
import sys

from tests.support.labkit import REPO, _env
from tests.support.readme import needs_root, python_blocks


def test_first_example_runs_as_a_script(tmp_path):
    first = python_blocks()[0]
    assert not needs_root(first) and "asyncio.run(main())" in first
    script = tmp_path / "first_steps.py"
    script.write_text(first)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       env=_env(), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "b'HELLO, TCP\\n'\n" and r.stderr == ""
