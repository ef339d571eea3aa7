"""Integration helpers: constants, namespace checks, and `netstack serve` as a subprocess (ServeProcess).

Imported by tests/integration/conftest.py (the fixtures) and by the tests themselves:
``from tests.support.labkit import STACK_ADDR, ServeProcess``.

Every name is unique per process and call (nstest.unique_lab_name()),
because several developers run the suite on one machine at the same time.
Teardown runs on every path and only ever touches what these fixtures
created: the subprocess by its own PID, and the namespace by its unique name
(removed here only if the server died without removing it itself).
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.nstest import unique_lab_name

REPO = Path(__file__).resolve().parents[2]
STACK_ADDR = "198.18.0.2"
PEER_ADDR = "198.18.0.1"
# Run by path inside the lab namespace (`ServeProcess.run([sys.executable, NETNS_SEND])`): stdlib only.
NETNS_SEND = Path(__file__).with_name("_netns_send.py")
READY_TIMEOUT = 20.0
#: the TUN mode of every lab the fixtures make: offloads on (the default) unless NETSTACK_OFFLOAD=0;
#: CI runs the TCP and SMTP integration tests in both modes (scripts/test.sh)
OFFLOAD = os.environ.get("NETSTACK_OFFLOAD", "1").strip().lower() not in ("0", "off", "no", "false")
STOP_TIMEOUT = 15.0


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("NOTIFY_SOCKET", None)        # a test run under systemd must not notify it for our servers
    return env


def serve_cmd(*args, timeout=30, prefix=()):
    """Run `python -m netstack serve ARGS` to completion (for the ways it refuses to start)."""
    return subprocess.run([*prefix, sys.executable, "-m", "netstack", "serve", *args], capture_output=True,
                          text=True, timeout=timeout, env=_env(), cwd=str(REPO))


def assert_one_line_error(r, pattern):
    """Exit status 2 and one stderr line, `netstack serve: ...`, matching ``pattern``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert lines[0].startswith("netstack serve: ")


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}") or os.path.exists(f"/var/run/netns/{name}")


def link_exists_in_root(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def remove_netns_we_created(name: str) -> None:
    """Last-resort cleanup for a namespace with our unique name (e.g. the server was SIGKILLed)."""
    if netns_exists(name):
        from pyroute2 import netns
        try:
            netns.remove(name)
        except Exception:
            pass


class ServeProcess:
    """`python -m netstack serve` in a unique namespace; see the `serve` fixture."""

    def __init__(self, tmp_path: Path, extra_args=(), *, name: str | None = None, env: dict | None = None) -> None:
        self.name = name or unique_lab_name()
        self.netns = self.ifname = self.name
        self.pcap = tmp_path / f"{self.name}.pcap"
        self.counters_path = tmp_path / f"{self.name}.counters.json"
        self.maildir = tmp_path / f"{self.name}.mail"          # never the machine's /var/lib/netstack/mail
        self.argv = [sys.executable, "-m", "netstack", "serve", "--netns", self.netns, "--ifname", self.ifname,
                     "--addr", STACK_ADDR, "--peer", f"{PEER_ADDR}/24", "--pcap", str(self.pcap),
                     "--counters-json", str(self.counters_path), "--maildir", str(self.maildir), *extra_args]
        if not OFFLOAD and not any(a in ("--offload", "--no-offload") for a in extra_args):
            self.argv.append("--no-offload")
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._err_lines: list[str] = []
        self._q: queue.Queue = queue.Queue()
        self.stderr = ""
        self.returncode: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT) -> "ServeProcess":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**_env(), **self.extra_env}, cwd=str(REPO))
        self._threads = [threading.Thread(target=self._pump, daemon=True),
                         threading.Thread(target=self._pump_err, daemon=True)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            if "ready" in line:
                if not netns_exists(self.netns):
                    self.stop()
                    raise AssertionError(f"netns {self.netns} missing after ready\nstderr: {self.stderr}")
                return self
        self.stop()
        raise AssertionError(f"netstack serve did not become ready (rc {self.returncode}):\n"
                             f"stdout: {''.join(self.lines)}\nstderr: {self.stderr}")

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def _pump_err(self) -> None:          # never let a full stderr pipe block the server
        for line in self.proc.stderr:
            self._err_lines.append(line)

    def send_signal(self, sig) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)          # our own child, by PID

    def stop(self, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the server, wait (bounded), collect output; SIGKILL only as a last resort."""
        if self.proc is None:
            return -1
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()                    # our own child, by PID; last resort
            self.proc.wait(timeout=5)
        self.returncode = self.proc.returncode
        for t in self._threads:                 # the pipes reach EOF once the server is gone
            t.join(timeout=5)
        self.stderr = "".join(self._err_lines)
        return self.returncode

    @property
    def stdout(self) -> str:
        return "".join(self.lines)

    @property
    def stderr_so_far(self) -> str:
        """What the server wrote to stderr until now (reports and logs), while it runs."""
        return "".join(self._err_lines)

    def wait_stderr(self, text: str, *, since: int = 0, timeout: float = 10.0) -> str:
        """Wait (bounded) until ``text`` appears in stderr after character ``since``; return that part."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            part = self.stderr_so_far[since:]
            if text in part:
                return part
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on stderr within {timeout} s:\n{self.stderr_so_far}")

    def netstack(self, *argv, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``python -m netstack ARGV`` (outside the namespace, like an operator would)."""
        return subprocess.run([sys.executable, "-m", "netstack", *argv], capture_output=True, text=True,
                              timeout=timeout, env=_env(), cwd=str(REPO))

    def counters(self) -> dict:
        """The counters the server wrote at exit (call after stop())."""
        return json.loads(self.counters_path.read_text())

    # -- helpers -----------------------------------------------------------------------------------
    def run(self, argv, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run a command inside the lab namespace (bounded)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], timeout=timeout, **kw)

    def python(self, code: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
        """Run Python code inside the namespace (the kernel's view of the lab)."""
        return self.run([sys.executable, "-c", code], timeout=timeout, input=stdin, env=_env())

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0
