"""``netstack serve --workers N`` under load: aggregate goodput and SMTP messages/s per worker count.

``netstack bench tun --workers 1,2 [--flows 8] [--seconds 5] [--repeat 3]``
``netstack bench smtp --workers 1,2 [--clients 8] [--messages 1500] [--repeat 3]``

Each measurement starts the real thing, ``python -m netstack serve --workers
N`` (its own lab: a namespace and a multi-queue TUN named ``nsw<pid>x<n>``,
a control socket and a Maildir under ``--tmpfs-dir`` made for it), puts the
load on it from the kernel side of the lab, stops it with SIGTERM and reads
its exit report.  The worker counts run interleaved within each round, their
order alternating from round to round, so that load from elsewhere on a
shared machine hits them alike; figures are medians over ``--repeat``
rounds with their spread, and the ratio of each count to the first is taken
round by round (the median of those ratios, and its spread, is reported).
``others' CPU`` is the share of the machine's CPU that other processes used
during a measurement (median over the rounds): on a shared machine a worker
count that met a busy moment is visible as such.  Before each measurement the
benchmark waits up to ``--quiet-wait`` seconds (default 20; 0: not at all) for
the machine to be less than 15% busy, and starts anyway when it is not.

``tun``: ``--flows`` kernel TCP connections (one client process in the
namespace, one thread per connection, ``sendfile()`` from a file on tmpfs so
that the sender copies nothing from user space) send to the discard service as
fast as they can for ``--seconds`` after one second of warm-up.  Goodput is the bytes
the stack acknowledged within that window (bytes written minus the socket's
unacknowledged queue, ``TIOCOUTQ``) over its length, summed over the flows;
no flow's tail or start-up is in it, so a worker with fewer flows than another
still counts as busy.  The per-worker column is the TCP segments each worker
received (its share of the traffic, from the exit report): the kernel's flow
hash decides it, so with 8 flows on 2 queues the split is rarely even, and about
one round in 128 puts all 8 on one queue (one worker idle, a ratio near 1): that
is how hash steering behaves with few flows, and why the ratio's range is shown.

``smtp``: Postfix's ``smtp-source`` in the namespace, ``--clients`` sessions at
once, a new connection per message, ``--messages`` of ``--size`` bytes, to the
stack's SMTP service delivering into a Maildir on tmpfs (``--tmpfs-dir``,
default /dev/shm); timed from start to exit of smtp-source; every message
must be in the Maildir.

Needs root (or CAP_NET_ADMIN), /dev/net/tun and, for smtp, smtp-source
(``postfix``, installed by scripts/setup.sh).  Every server is stopped by its
PID and removes its lab itself; a namespace of ours left behind (a server that
could not be stopped) is removed here.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from netstack.bench import report
from netstack.bench.report import BenchError

#: --workers' default
DEFAULT_WORKERS = (1, 2)
DEFAULT_FLOWS = 8
DEFAULT_SECONDS = 5.0
WARMUP_SECONDS = 1.0
DEFAULT_MESSAGES = 1500
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
TARGET_TUN = 1.6            # 2 workers over 1, aggregate goodput of 8 flows
TARGET_SMTP = 1.5           # 2 workers over 1, smtp-source messages/s



def _columns(figure: str, title: str, fmt: str, share: str) -> list:
    return [report.Column("workers", "workers", "{}"), report.Column(figure, title, fmt),
            report.Column("ratio", "vs 1st", "{:.2f}x"), report.Column("ratio_range", "ratio min..max", "{}"),
            report.Column("share", f"{share} per worker (last run)", "{}", "<"),
            report.Column("others", "others' CPU", "{:.0%}"), report.SPREAD]


TUN_COLUMNS = _columns("mb_per_s", "MB/s", "{:.1f}", "segments")
SMTP_COLUMNS = _columns("msgs_per_s", "msgs/s", "{:.0f}", "connections")

_CLIENT = r"""
import fcntl, json, os, socket, sys, tempfile, termios, threading, time
flows, seconds, warm = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
# the bytes come from a file on tmpfs by sendfile(): no copy from user space, so the sender costs the
# machine as little CPU as it can and the stack's workers get the cores
SPAN = 8 << 20
src = tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
src.write(bytes(SPAN))
src.flush()
socks = [socket.create_connection(("198.18.0.2", 9), timeout=30) for _ in range(flows)]
for s in socks:
    s.settimeout(None)                 # blocking: no polling, little CPU here
written = [0] * flows
stop = threading.Event()
def run(i):
    s, fd = socks[i], src.fileno()
    while not stop.is_set():
        try:
            written[i] += os.sendfile(s.fileno(), fd, written[i] % SPAN, SPAN - written[i] % SPAN)
        except OSError:
            return                     # shut down by the main thread
def acked():
    out = []
    for i, s in enumerate(socks):
        q = bytearray(4)
        fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, q)
        out.append(written[i] - int.from_bytes(q, sys.byteorder))
    return out
threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(flows)]
[t.start() for t in threads]
time.sleep(warm)
t1, a1 = time.perf_counter(), acked()
time.sleep(seconds)
t2, a2 = time.perf_counter(), acked()
stop.set()
for s in socks:
    s.shutdown(socket.SHUT_WR)         # ends a send blocked on a full window
[t.join(5) for t in threads]
for s in socks:
    s.close()
print(json.dumps({"bytes": sum(a2) - sum(a1), "seconds": t2 - t1, "per_flow": [y - x for x, y in zip(a1, a2)]}))
"""


_names = itertools.count()


def _unique() -> str:
    return f"nsw{os.getpid()}x{next(_names)}"


def _env() -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    return env


class Server:
    """``netstack serve --workers N`` in a lab of its own, as a child process (stopped by its PID)."""

    def __init__(self, workers: int, tmp: str, *, offload: bool, extra=()) -> None:
        self.name = _unique()
        self.workers = workers
        self.maildir = os.path.join(tmp, f"{self.name}.mail")
        self.argv = [sys.executable, "-m", "netstack", "serve", "--netns", self.name, "--ifname", self.name,
                     "--workers", str(workers), "--control-socket", os.path.join(tmp, f"{self.name}.sock"),
                     "--maildir", self.maildir, "--log-level", "ERROR", "--smtp-drain-seconds", "1",
                     *(() if offload else ("--no-offload",)), *extra]
        self.proc: subprocess.Popen | None = None
        self.stderr = ""

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_env())
        deadline = time.monotonic() + READY_TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or "ready" in line:
                break
        if "ready" not in line:
            self.stop()
            raise BenchError(f"serve --workers {self.workers} did not start: {self.stderr.strip()[-400:]}")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)        # our own child, by PID
        try:
            _, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
        self.stderr = err or ""
        self.proc = None
        if os.path.exists(f"/run/netns/{self.name}"):     # only if the server could not remove it
            from pyroute2 import netns
            try:
                netns.remove(self.name)
            except Exception:
                pass

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def per_worker(self, what: str) -> list[int]:
        """From the exit report's ``workers:`` line: ``what`` ("segments in", "passive opens") per worker."""
        line = next((ln for ln in self.stderr.splitlines() if ln.startswith("workers:")), "")
        return [int(n) for n in re.findall(rf"(\d+) {what}", line)]


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _ours_seconds() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _with_others(measure):
    """Run ``measure()`` (a dict) and add ``others``: the share of the machine's CPU that processes
    other than ours (the server, its workers, the client) used meanwhile, 0..1 (kernel softirq
    work counts as theirs)."""
    t0, busy0, ours0 = time.monotonic(), _busy_seconds(), _ours_seconds()
    result = measure()
    wall, busy, ours = time.monotonic() - t0, _busy_seconds() - busy0, _ours_seconds() - ours0
    result["others"] = max(0.0, busy - ours) / (wall * len(os.sched_getaffinity(0)))
    return result


def tun_once(workers: int, tmp: str, *, flows: int, seconds: float, offload: bool) -> dict:
    with Server(workers, tmp, offload=offload) as srv:
        r = subprocess.run([*srv.exec_prefix(), sys.executable, "-c", _CLIENT, str(flows), str(seconds),
                            str(WARMUP_SECONDS)], capture_output=True, text=True, env=_env(),
                           timeout=seconds + WARMUP_SECONDS + 60)
    if r.returncode != 0:
        raise BenchError(f"the kernel client failed: {r.stderr.strip()[-400:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"mb_per_s": out["bytes"] / out["seconds"] / 1e6, "share": srv.per_worker("segments in"),
            "per_flow": out["per_flow"]}


def smtp_once(workers: int, tmp: str, *, clients: int, messages: int, size: int, offload: bool) -> dict:
    from netstack.bench.smtp import SMTP_SOURCE
    with Server(workers, tmp, offload=offload, extra=("--no-services",)) as srv:
        cmd = [*srv.exec_prefix(), SMTP_SOURCE, "-s", str(clients), "-m", str(messages), "-l", str(size),
               "-M", "bench.client", "-f", "bench@remote.test", "-t", "bob@[198.18.0.2]", "198.18.0.2:25"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - t0
    delivered = sum(len(files) for where, _, files in os.walk(srv.maildir) if os.path.basename(where) == "new")
    shutil.rmtree(srv.maildir, ignore_errors=True)
    if r.returncode != 0 or "fatal:" in r.stderr or "warning:" in r.stderr:
        raise BenchError(f"smtp-source failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-300:]}")
    if delivered != messages:
        raise BenchError(f"{delivered} of {messages} messages in the Maildir with {workers} workers")
    return {"msgs_per_s": messages / elapsed, "share": srv.per_worker("passive opens")}


#: before a measurement: the machine counts as quiet below this share of busy CPU
QUIET_BUSY = 0.15


def wait_for_quiet(budget: float, *, sample: float = 0.5) -> float:
    """Wait (at most ``budget`` seconds) until the machine's CPU is less than :data:`QUIET_BUSY`
    busy over ``sample`` seconds; the busy share last seen.  On a shared machine this keeps a
    measurement from starting in the middle of somebody else's burst; it never waits longer."""
    cpus = len(os.sched_getaffinity(0))
    deadline = time.monotonic() + budget
    while True:
        b0, t0 = _busy_seconds(), time.monotonic()
        time.sleep(sample)
        busy = (_busy_seconds() - b0) / ((time.monotonic() - t0) * cpus)
        if busy < QUIET_BUSY or time.monotonic() >= deadline:
            return busy


def _rounds(counts, repeat: int, one, progress, quiet_wait: float = 0.0) -> dict[int, list[dict]]:
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    for r in range(repeat):
        order = list(counts) if r % 2 == 0 else list(reversed(counts))
        for n in order:
            progress.step(f"round {r + 1}/{repeat}: {n} worker(s)")
            if quiet_wait:
                wait_for_quiet(quiet_wait)
            runs[n].append(_with_others(lambda: one(n)))
    return runs


def table_rows(counts, runs: dict[int, list[dict]], figure: str) -> list[dict]:
    """One row per worker count: the median of ``figure`` over its runs, and its ratio to the first
    count taken round by round (the median of the rounds' ratios, and their range)."""
    first = counts[0]
    rows = []
    for n in counts:
        values = [run[figure] for run in runs[n]]
        ratios = [run[figure] / ref[figure] for run, ref in zip(runs[n], runs[first]) if ref[figure]]
        rows.append({"workers": n, figure: statistics.median(values), "runs": values,
                     "ratio": statistics.median(ratios) if ratios else None, "ratios": ratios,
                     "ratio_range": f"{min(ratios):.2f}..{max(ratios):.2f}" if ratios else None,
                     "share": "/".join(str(s) for s in runs[n][-1]["share"]) or "-",
                     "others": statistics.median(run.get("others", 0.0) for run in runs[n])})
    report.add_spread(rows, "runs")
    return rows


def _print(title: str, columns, rows, figure: str, target: float, what: str, args, settings: dict,
           name: str) -> int:
    env = report.environment()
    print(f"{title}; {env['python']}; {env['cpu']}; {env['cpus']} CPUs")
    print(report.format_table(columns, rows))
    warnings = report.spread_warnings(rows, lambda r: f"{r['workers']} worker(s)")
    if warnings:
        print("\n".join(warnings))
    by = {r["workers"]: r for r in rows}
    targets = []
    if 1 in by and 2 in by:
        value = by[2]["ratio"] if rows[0]["workers"] == 1 else by[2][figure] / by[1][figure]
        targets.append(report.Target(f"2 workers / 1 worker, {what}", f">= {target:.1f}x", value,
                                     value is not None and value >= target,
                                     f"{value:.2f}x (rounds {by[2]['ratio_range']})"))
        print("targets:")
        print(report.format_targets(targets))
    if args.json:
        try:
            report.write_json(args.json, name, columns, rows, settings=settings, targets=targets,
                              key=("workers",), figure=(figure, "higher"), warnings=warnings)
        except OSError as exc:
            print(f"netstack bench: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0


def _offload(args) -> bool:
    if getattr(args, "offload", None) is not None:
        return args.offload
    from netstack.link.tun import offload_support
    return offload_support()[0]


def _check(tool_needed: bool) -> str | None:
    from netstack.link.lab import LabError, check_privileges
    try:
        check_privileges()
    except LabError as exc:
        return str(exc)
    if tool_needed:
        from netstack.bench.smtp import postfix_tools_missing
        return postfix_tools_missing()
    return None


def run_tun(args) -> int:
    """``netstack bench tun --workers LIST``."""
    problem = _check(False) or report.check_writable(args.json)
    if problem:
        print(f"netstack bench tun: {problem}", file=sys.stderr)
        return 2
    counts, flows, seconds = args.workers, args.flows, args.seconds
    repeat = args.repeat or (1 if args.quick else 3)
    offload = _offload(args)
    progress = report.Progress(len(counts) * repeat, "bench tun --workers", quiet=args.quiet)
    with tempfile.TemporaryDirectory(prefix="nsbench-") as tmp:
        runs, failed = report.guarded("bench tun", lambda: _rounds(
            counts, repeat, lambda n: tun_once(n, tmp, flows=flows, seconds=seconds, offload=offload),
            progress, args.quiet_wait))
    if failed is not None:
        return failed
    progress.finish()
    rows = table_rows(counts, runs, "mb_per_s")
    title = (f"serve --workers: {flows} kernel -> stack flows to discard, {seconds:g} s each after "
             f"{WARMUP_SECONDS:g} s warm-up, offloads {'on' if offload else 'off'}, median of {repeat} interleaved "
             f"rounds")
    return _print(title, TUN_COLUMNS, rows, "mb_per_s", TARGET_TUN, f"aggregate goodput of {flows} flows", args,
                  {"workers": counts, "flows": flows, "seconds": seconds, "repeat": repeat, "offload": offload,
                   "runs": runs}, "tun-workers")


def run_smtp(args) -> int:
    """``netstack bench smtp --workers LIST``."""
    problem = _check(True) or report.check_writable(args.json)
    if problem:
        print(f"netstack bench smtp: {problem}", file=sys.stderr)
        return 2
    counts = args.workers
    clients = args.clients[-1]
    messages = args.messages or (300 if args.quick else DEFAULT_MESSAGES)
    repeat = args.repeat or (1 if args.quick else 3)
    offload = _offload(args)
    progress = report.Progress(len(counts) * repeat, "bench smtp --workers", quiet=args.quiet)
    tmp = tempfile.mkdtemp(prefix="nsbench-", dir=args.tmpfs_dir)
    try:
        runs, failed = report.guarded("bench smtp", lambda: _rounds(
            counts, repeat, lambda n: smtp_once(n, tmp, clients=clients, messages=messages, size=args.size,
                                                offload=offload), progress, args.quiet_wait))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed is not None:
        return failed
    progress.finish()
    rows = table_rows(counts, runs, "msgs_per_s")
    title = (f"serve --workers: smtp-source, {clients} sessions, a new connection per message, {messages} messages "
             f"of {args.size} B into a Maildir on {args.tmpfs_dir}, median of {repeat} interleaved rounds")
    return _print(title, SMTP_COLUMNS, rows, "msgs_per_s", TARGET_SMTP, "smtp-source messages/s", args,
                  {"workers": counts, "clients": clients, "messages": messages, "size": args.size,
                   "repeat": repeat, "runs": runs}, "smtp-workers")


def parse_counts(text: str) -> tuple[int, ...]:
    """``--workers 1,2``: worker counts, each 1..64 (``auto``: the CPUs this process may use)."""
    import argparse
    counts = []
    for t in (t.strip().lower() for t in text.split(",")):
        if t == "auto":
            counts.append(len(os.sched_getaffinity(0)))
            continue
        try:
            n = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a worker count: {t!r}") from None
        if not 1 <= n <= 64:
            raise argparse.ArgumentTypeError(f"worker count out of range (1..64): {n}")
        counts.append(n)
    return tuple(counts)


def add_quiet_wait_argument(parser) -> None:
    parser.add_argument("--quiet-wait", type=float, default=20.0, metavar="S",
                        help="with --workers: before each measurement wait up to S seconds for the machine to be "
                             "less than 15%% busy (default 20; 0: do not wait)")
