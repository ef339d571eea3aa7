"""The checksum in other processes: the C self-test built and run under sanitizers, and which
implementation a fresh interpreter picks (environment variables, a missing extension,
`netstack info`, `netstack bench checksum` on the pure twin).

The implementations themselves are tested in-process in tests/unit/test_checksum.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from netstack import checksum

FAST = ["--repeat", "1", "--min-time", "0.0002"]     # as in tests/unit/test_bench_checksum.py


def _native_available() -> bool:
    return checksum.IMPLEMENTATION == "native"


# --- the C code under AddressSanitizer / UBSan ---------------------------------------------

NATIVE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "native")


def test_c_selftest_under_sanitizers(tmp_path):
    """native/checksum_selftest.c: every length/offset with exact-size heap buffers; an overread aborts."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not os.path.exists(os.path.join(NATIVE_DIR, "checksum_selftest.c")):
        pytest.skip("no C compiler")
    exe = str(tmp_path / "selftest")
    sources = [os.path.join(NATIVE_DIR, "checksum_selftest.c"), os.path.join(NATIVE_DIR, "checksum.c")]
    base = [cc, "-std=c99", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-I", NATIVE_DIR, *sources, "-o", exe]
    sanitized = subprocess.run(base[:1] + ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"] + base[1:],
                               capture_output=True, text=True, timeout=120)
    if sanitized.returncode != 0:
        # No sanitizer runtime (libasan) here: still build warning-free and run plain.
        plain = subprocess.run(base, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0, plain.stderr
    run = subprocess.run([exe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "scalar ok" in run.stdout and "incremental ok" in run.stdout


# --- which implementation is active --------------------------------------------------------

_PROBE = ("import sys\n"
          "{prelude}\n"
          "from netstack import checksum as c\n"
          "print(c.IMPLEMENTATION)\n"
          "print(c.describe())\n"
          "print(c.checksum(b'\\xff' * 1500), c.checksum(b'\\0' * 1500))\n")


def _probe(prelude="", **env):
    full_env = {k: v for k, v in os.environ.items() if k != "NETSTACK_PURE_CHECKSUM"}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE.format(prelude=prelude)], env=full_env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return out.splitlines()


def test_env_var_forces_pure_twin():
    impl, words, answers = _probe(NETSTACK_PURE_CHECKSUM="1")
    assert impl == "pure"
    assert words.startswith("pure-Python twin") and "NETSTACK_PURE_CHECKSUM" in words
    assert answers == "0 65535"


def test_pure_twin_used_when_native_module_absent():
    # A None entry in sys.modules makes `from netstack import _checksum` raise ImportError,
    # exactly as when the extension was never compiled.
    impl, words, answers = _probe("sys.modules['netstack._checksum'] = None")
    assert impl == "pure"
    assert "not built" in words
    assert answers == "0 65535"


def test_native_active_by_default():
    if not _native_available():
        pytest.skip(checksum.describe())
    impl, words, _ = _probe()
    assert impl == "native"
    assert words.startswith("native (cffi, ")


def test_netstack_info_shows_the_active_implementation():
    env = {k: v for k, v in os.environ.items() if k != "NETSTACK_PURE_CHECKSUM"}
    forced = subprocess.run([sys.executable, "-m", "netstack", "info"], capture_output=True, text=True,
                            timeout=60, check=True, env={**env, "NETSTACK_PURE_CHECKSUM": "1"}).stdout
    assert "pure-Python twin" in forced
    if _native_available():
        normal = subprocess.run([sys.executable, "-m", "netstack", "info"], capture_output=True, text=True,
                                timeout=60, check=True, env=env).stdout
        assert "native (cffi" in normal


def test_env_var_picks_a_native_kernel():
    if not _native_available():
        pytest.skip(checksum.describe())
    _, words, answers = _probe(NETSTACK_CHECKSUM_PATH="scalar")
    assert "scalar" in words
    assert answers == "0 65535"
    with pytest.raises(ValueError):
        checksum.select_native_path("no-such-kernel")


# --- the benchmark without the native module -------------------------------------------


def test_runs_on_the_pure_twin(tmp_path):
    """Without the native module the bench still runs: native rows empty, copy by bytearray slice."""
    path = tmp_path / "pure.json"
    env = {**os.environ, "NETSTACK_PURE_CHECKSUM": "1"}
    proc = subprocess.run([sys.executable, "-m", "netstack", "bench", "checksum", *FAST, "--sizes", "64",
                           "--no-scapy", "--json", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(path.read_text())
    assert doc["environment"]["checksum"].startswith("pure-Python twin")
    rows = {r["impl"]: r for r in doc["rows"]}
    assert rows["native"]["ns_per_call"] is None
    assert rows["pure"]["ns_per_call"] > 0 and rows["copy"]["ns_per_call"] > 0
    assert "bytearray slice" in doc["copy_method"]
    assert doc["calls"] == []
    assert all(t["met"] is None for t in doc["targets"])
