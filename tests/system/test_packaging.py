"""Packaging: `pip install` from a fresh copy of the repository prints no warning that comes
from our metadata, and the installed metadata says what pyproject.toml promises.

The copy holds only what a clone holds (git's tracked and unignored files); it is installed
with `pip install -v` (verbose, so the build backend's own warnings are in the log) into a
new virtual environment.  Lines caused by this machine rather than by us (pip's index
locations, byte-compiling switched off by the environment) are set aside by exact pattern;
anything else that says warning or deprecated fails the test, with the lines.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netstack

ROOT = Path(__file__).resolve().parents[2]
# Lines about the machine, not about our metadata.
ENVIRONMENT = [
    re.compile(r"Location '[^']*' is ignored: it is neither a file nor a directory"),
    re.compile(r"byte-compiling is disabled, skipping"),
    re.compile(r"Running pip as the 'root' user"),
    re.compile(r"A new release of pip is available"),
]
WARNING = re.compile(r"(?i)warn|deprecat")


def fresh_copy(dest: Path) -> Path:
    """The files a clone would hold: tracked and untracked-but-not-ignored (no .venv, no build output)."""
    if shutil.which("git") and (ROOT / ".git").exists():
        files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                               capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
        for name in filter(None, files):
            src = ROOT / name
            if src.is_file() and not name.startswith(".venv/") and ".egg-info/" not in name:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.so"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, pip's log) after `pip install -v` of a fresh copy into a new venv."""
    base = tmp_path_factory.mktemp("pkg")
    src = fresh_copy(base / "src")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    r = subprocess.run([str(python), "-m", "pip", "install", "-v", "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=480, cwd=base)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    return python, log


def test_pip_install_prints_no_warning_from_our_metadata(installed):
    _, log = installed
    assert "Successfully installed" in log and "netstack" in log
    warnings = [line.strip() for line in log.splitlines()
                if WARNING.search(line) and not any(p.search(line) for p in ENVIRONMENT)]
    assert warnings == [], "\n".join(warnings)


def test_installed_metadata(installed):
    python, _ = installed
    probe = r"""
import json, importlib.metadata as m
d = m.distribution("netstack")
md = d.metadata
files = [str(f) for f in d.files]
print(json.dumps({"version": d.version, "license": md.get("License-Expression"), "license_text": md.get("License"),
                  "classifiers": md.get_all("Classifier"), "requires": md.get_all("Requires-Dist"),
                  "license_files": md.get_all("License-File"), "files": files}))
"""
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                         cwd="/").stdout
    meta = json.loads(out)
    assert meta["version"] == netstack.__version__                  # one source: netstack/__init__.py
    assert meta["license"] == "MIT" and meta["license_text"] is None
    assert meta["license_files"] == ["LICENSE"] and any(f.endswith("LICENSE") for f in meta["files"])
    for c in ("Operating System :: POSIX :: Linux", "Topic :: System :: Networking",
              "Intended Audience :: Education", "Topic :: Communications :: Email", "Typing :: Typed"):
        assert c in meta["classifiers"]
    assert not any(c.startswith("License ::") for c in meta["classifiers"])   # PEP 639: the expression only
    requires = {re.split(r"[<>=;\s]", r, 1)[0]: r for r in meta["requires"]}
    for dist in ("python-pytun", "pyroute2"):
        assert re.search(r"""sys_platform\s*==\s*["']linux["']""", requires[dist]), requires[dist]
    assert "extra" not in requires["cffi"] and "sys_platform" not in requires["cffi"]
    assert "netstack/py.typed" in meta["files"] and "smtp/py.typed" in meta["files"]


def test_the_installed_command_runs(installed):
    python, _ = installed
    r = subprocess.run([str(python), "-m", "netstack", "info"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and f"netstack      {netstack.__version__}" in r.stdout.replace("\t", " ")
