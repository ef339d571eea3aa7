"""Running tcpdump, tshark and `netstack trace` side by side (system and integration tests)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from netstack.cli import main

from tests.support.nstest import in_ci

UTC = {**os.environ, "TZ": "UTC"}


def tool(name: str) -> str:
    """The path of an external tool; skip without it (fail with CI=true: scripts/setup.sh installs it)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if path is None:
        if in_ci():
            pytest.fail(f"CI=true and {name} is not installed (scripts/setup.sh installs it)", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def tcpdump():
    return tool("tcpdump")


@pytest.fixture(scope="module")
def tshark():
    return tool("tshark")


def run_tcpdump(tcpdump: str, *args) -> list[str]:
    """tcpdump's output lines (times in UTC, as ours)."""
    r = subprocess.run([tcpdump, *map(str, args)], capture_output=True, text=True, timeout=60, env=UTC)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def ours(capsys, *args) -> list[str]:
    """`netstack trace ARGS` in this process; its output lines."""
    status = main(["trace", *map(str, args)])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out.splitlines()
