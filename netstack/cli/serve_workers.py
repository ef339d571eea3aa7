"""``netstack serve --workers N``: one worker process per queue of a multi-queue TUN.

One Python process is one core.  With ``--workers N`` (N > 1; ``auto``: one
per CPU) ``serve`` opens the lab's TUN with ``IFF_MULTI_QUEUE`` and N queues
(:class:`netstack.link.lab.Lab` ``queues=N``), forks N workers, gives each
one queue's fd and drops its own copies.  Each worker runs a full
:class:`~netstack.stack.Stack` on the same address with every service
(echo, discard, chargen, SMTP): the same installers as a single ``serve``.
The parent becomes the *supervisor*: it runs no stack; it owns the lab, the
control socket and the signals, and reports for all.

**Which worker.**  The kernel picks the queue of every packet it sends into
the TUN (``tun_select_queue``): by default the queue that last wrote a packet
of that flow (the driver's flow table, keyed by the symmetric flow hash), else
the flow hash over the queues.  A connection the kernel opens therefore lives
wholly in the worker its SYN reached: the SYN-ACK goes out on that worker's
queue, which pins the flow there.  Nothing is shared on the per-packet path.

**Packets on the wrong queue** (the kernel moves flows when the set of queues
changes; a flow table entry ages out after a few seconds of silence from our
side and the hash may then pick another queue): a worker's TCP is built with
``shared_flows`` and answers such a segment, one no connection or listener of
its own takes and not a bare SYN, with nothing: it is dropped and counted as
``tcp.in.drop.other_worker``, instead of the RST a lone stack sends
(RFC 9293 §3.10.7.1), which would kill the connection in the worker that owns
it.  We do not hand packets over between workers: that would put a shared
path under every packet for a case the kernel avoids while the queues stay as
they are, and ``serve`` never changes them (a worker that dies stops the whole
service).  The price: a stray segment for a connection nobody has (e.g. after
a restart) gets no RST from a multi-worker stack; the peer times out instead.

**Shared state.**  One random secret behind the ISNs and the SYN cookies of
every worker (RFC 6528, RFC 4987 §3.6), chosen by the supervisor before the
fork, and one "a SYN cookie went out at" instant in shared memory
(:class:`SharedCookieClock`): an ACK that returns a cookie is checked and
accepted by whichever worker it reaches.

**Limits are per worker.**  Each worker's TCP and SMTP keep their own limits
(``--smtp-max-connections``, ``--smtp-max-per-ip``, the ``--tcp-*`` limits,
backlogs, reassembly): N workers admit up to N times as much, and a
per-address limit is not shared between them.

**Counters and reports.**  Each worker talks to the supervisor over a Unix
socket pair, one JSON object per line.  The supervisor answers the control
socket (``netstack ss``, ``netstack stats``), SIGUSR1 and the exit report
(and ``--counters-json``) with the workers' counters summed, the TUN's
statistics added once, and one connection table with a ``Worker`` column
(:func:`netstack.sockets.table.merge_snapshots`).  The pcap and the state log
are one file per worker: ``NAME.w0.pcap``, ``NAME.w1.pcap``, ... (the index
before the extension; :func:`worker_path`).  ``--pcap -`` takes one process
and is refused with workers; ``--trace`` lines come from all workers.

**Lifecycle.**  SIGINT, SIGTERM and SIGHUP to the supervisor are passed on to
every worker (SIGTERM: each drains its SMTP sessions first); when all have
exited the supervisor tears the lab down, once.  A worker that exits on its
own (a crash, a SIGKILL) is reported with its exit status, the others are
stopped at once, and ``serve`` exits with status 1 (2 if a worker refused
its options).  A worker whose supervisor goes away stops too (its end of the
socket pair reads EOF).  A worker that does not exit within its grace period
is killed by its PID.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import time

from netstack.cli import UsageError, sdnotify
from netstack.control import CounterDeltas, stats_reply

log = logging.getLogger("netstack.serve.workers")

#: --workers at most
MAX_WORKERS = 64
#: seconds a worker may take to exit after SIGINT (beyond --smtp-drain-seconds after SIGTERM)
STOP_GRACE = 10.0
#: seconds the workers have to become ready
READY_TIMEOUT = 60.0
#: seconds a worker has to answer a supervisor's request
ASK_TIMEOUT = 10.0
#: the signals that stop the service (as netstack.cli.serve's)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_workers(text: str) -> int:
    """``--workers``: a count 1..MAX_WORKERS, or ``auto`` for :func:`cpu_count`."""
    if text.strip().lower() == "auto":
        return min(cpu_count(), MAX_WORKERS)
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r} (a count, or auto)") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers out of range (1..{MAX_WORKERS}): {n}")
    return n


def validate_args(args) -> None:
    """Options that make no sense with several workers: one line, exit status 2."""
    if args.workers > 1 and args.pcap == "-":
        raise UsageError("--pcap - (to stdout) takes one process; with --workers give a file name "
                         "(one file per worker: NAME.w0.pcap, ...)")


def worker_path(path: str, index: int) -> str:
    """The per-worker file for ``path``: ``cap.pcap`` -> ``cap.w1.pcap``, ``log`` -> ``log.w1``."""
    head, tail = os.path.split(path)
    stem, dot, ext = tail.rpartition(".")
    if not dot or not stem:
        return os.path.join(head, f"{tail}.w{index}")
    return os.path.join(head, f"{stem}.w{index}.{ext}")


class SharedCookieClock:
    """When a SYN cookie last went out, in shared memory: an anonymous shared mapping made before
    the workers are forked, so each sees the others' marks (a
    :class:`~netstack.tcp.syncookies.CookieClock`).  The times are ``time.monotonic()``, one
    clock for every process on the host.  A racing write can lose a mark by microseconds; the
    cookie's own age check (two 64-second ticks) makes that harmless."""

    _FMT = struct.Struct("=d")

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, self._FMT.size)          # MAP_SHARED | MAP_ANONYMOUS
        self._FMT.pack_into(self._mem, 0, -1.0)

    def mark(self, now: float) -> None:
        if now > self._FMT.unpack_from(self._mem, 0)[0]:
            self._FMT.pack_into(self._mem, 0, now)

    def last(self) -> float | None:
        value = self._FMT.unpack_from(self._mem, 0)[0]
        return None if value < 0 else value


class Shared:
    """What every worker gets from the supervisor: the ISN/SYN-cookie secret and the cookie clock."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret if secret is not None else os.urandom(16)
        self.cookie_clock = SharedCookieClock()

    def stack_options(self) -> dict:
        """The keyword arguments that make a worker's Stack one of several on the address."""
        return {"isn_secret": self.secret, "cookie_clock": self.cookie_clock, "shared_flows": True}


# -- pure aggregation ------------------------------------------------------------------------------------
def merge_counters(snapshots) -> dict[str, int]:
    """The workers' counter snapshots summed, by name (sorted)."""
    total: dict[str, int] = {}
    for snap in snapshots:
        for name, value in snap.items():
            total[name] = total.get(name, 0) + value
    return dict(sorted(total.items()))


def describe_exit(status: int) -> str:
    """A worker's ``waitpid`` status in words: ``exit status 1``, ``killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status}"


def exit_code(statuses: list[int], crashed: bool) -> int:
    """``serve``'s exit status from its workers': 2 if one refused its options (exit 2), 1 if one
    crashed or failed, else 0."""
    codes = [os.WEXITSTATUS(s) if os.WIFEXITED(s) else 1 for s in statuses]
    if 2 in codes:
        return 2
    if crashed or any(codes):
        return 1
    return 0


# -- the channel: JSON lines over a socket pair ------------------------------------------------------------
def _send(writer, obj: dict) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")


async def _lines(reader):
    while True:
        try:
            line = await reader.readline()
        except (ConnectionError, OSError, ValueError):
            return
        if not line:
            return
        try:
            yield json.loads(line)
        except ValueError:
            log.warning("malformed message between supervisor and worker: %r", line[:80])


# -- the worker --------------------------------------------------------------------------------------------
def _worker_counters(stack, faulty) -> dict[str, int]:
    snap = stack.counters.snapshot()
    if faulty is not None:
        snap.update({f"faults.{k}": v for k, v in faulty.stats.items()})
    return snap


def _report_data(stack, services) -> dict:
    """What each service adds to the report, per worker: ``report_data(stack)`` (merged by the
    supervisor with ``merge_report``) or else its ``report(stack)`` text."""
    out = {}
    for mod in services:
        try:
            if hasattr(mod, "report_data"):
                out[mod.__name__] = {"data": mod.report_data(stack)}
            elif hasattr(mod, "report"):
                out[mod.__name__] = {"text": mod.report(stack)}
        except Exception as exc:
            out[mod.__name__] = {"text": f"({mod.__name__}: report failed: {exc})"}
    return out


def _answer(request: dict, stack, faulty, services) -> dict:
    from netstack import mib
    from netstack.sockets.table import snapshot
    op = request.get("op")
    if op == "ss":
        return {"ss": snapshot(stack)}
    if op == "stats":
        return {"counters": _worker_counters(stack, faulty), "gauges": mib.gauges(stack)}
    if op == "report":
        return {"counters": _worker_counters(stack, faulty), "reports": _report_data(stack, services)}
    return {"error": f"unknown op {op!r}"}


async def _worker(args, index: int, link, chan: socket.socket, shared: Shared, addr: str, faults) -> int:
    from netstack.cli import serve
    loop = asyncio.get_running_loop()
    stack, faulty, state_log = serve.build_stack(
        args, link, addr, faults, pcap=worker_path(args.pcap, index) if args.pcap else None,
        state_log_path=worker_path(args.state_log, index) if args.state_log else None, **shared.stack_options())
    faulty = faulty if faults is not None else None
    services = serve.SERVICE_MODULES
    serve.stop_on_signals(loop, stack, args, services)
    reader, writer = await asyncio.open_unix_connection(sock=chan)
    closers: list = []

    async def serve_supervisor() -> None:
        async for request in _lines(reader):
            try:
                reply = _answer(request, stack, faulty, services)
            except Exception as exc:             # a bug in a reader must not take the worker down
                log.exception("request %r failed", request.get("op"))
                reply = {"error": f"internal error: {type(exc).__name__}: {exc}"}
            _send(writer, {"id": request.get("id"), **reply})
        log.info("the supervisor is gone: stopping")
        stack.stop()                             # EOF: the supervisor is gone

    talk = None
    try:
        stack.start()
        installed = await serve.install_services(stack, args, services)
        if installed is None:
            return 1
        closers.extend(installed)
        talk = loop.create_task(serve_supervisor())
        _send(writer, {"ready": True, "pid": os.getpid(), "offload": bool(getattr(link, "offload", False))})
        await stack.run()
    finally:
        await serve.run_closers(closers)
        stack.close()
        if state_log is not None:
            state_log.close()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        final = {"counters": _worker_counters(stack, faulty), "reports": _report_data(stack, services),
                 "reasm_peak": stack.ip.reassembler.peak_bytes_held, "reasm_max": stack.ip.reassembler.max_bytes}
        try:
            _send(writer, {"final": final})
            await asyncio.wait_for(writer.drain(), 5)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        if talk is not None:
            talk.cancel()
        writer.close()
    return 0


def _worker_main(args, lab, index: int, chan: socket.socket, shared: Shared, addr: str, faults) -> int:
    """In the forked child: keep one queue, run the worker's stack; the exit status."""
    link = lab.links[index]
    for other in lab.links:
        if other is not link:
            other.close()                        # the child's copies of the other queues' fds
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(name)s[w{index}] %(levelname)s %(message)s"))
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)   # the supervisor reports for all
    try:
        return asyncio.run(_worker(args, index, link, chan, shared, addr, faults))
    except UsageError as exc:
        print(f"netstack serve: worker {index}: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        link.close()


def _spawn(args, lab, index: int, shared: Shared, addr: str, faults, keep: list,
           sigmask) -> tuple[int, socket.socket]:
    """Fork worker ``index``; in the parent its PID and the supervisor's end of its socket pair."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:                                 # the worker: never returns
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)
            parent_end.close()
            for sock in keep:                    # the other workers' channels, inherited
                sock.close()
            code = _worker_main(args, lab, index, child_end, shared, addr, faults)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    child_end.close()
    return pid, parent_end


# -- the supervisor ----------------------------------------------------------------------------------------
class WorkerHandle:
    """The supervisor's view of one worker: its PID, channel, readiness, last words, exit status."""

    def __init__(self, index: int, pid: int, sock: socket.socket) -> None:
        self.index = index
        self.pid = pid
        self.sock = sock
        self.reader = self.writer = None
        self.ready: asyncio.Future | None = None
        self.final: dict | None = None
        self.status: int | None = None
        self.exited: asyncio.Future | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.exited = loop.create_future()
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self.sock)

    async def listen(self) -> None:
        """Read the worker's messages until EOF: replies, ``ready``, ``final``."""
        async for msg in _lines(self.reader):
            if "ready" in msg:
                if not self.ready.done():
                    self.ready.set_result(msg)
            elif "final" in msg:
                self.final = msg["final"]
            else:
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"worker {self.index} is gone"))
        self._pending.clear()

    async def ask(self, op: str) -> dict:
        if self.status is not None:
            raise ConnectionError(f"worker {self.index} has exited")
        n = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[n] = fut
        _send(self.writer, {"id": n, "op": op})
        try:
            return await asyncio.wait_for(fut, ASK_TIMEOUT)
        finally:
            self._pending.pop(n, None)

    def signal(self, sig) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, sig)           # our own child, by PID
            except ProcessLookupError:
                pass

    async def reap(self) -> int:
        """Wait for the worker's exit (in a thread: waitpid on its PID alone)."""
        loop = asyncio.get_running_loop()
        _, status = await loop.run_in_executor(None, os.waitpid, self.pid, 0)
        self.status = status
        if not self.exited.done():
            self.exited.set_result(status)
        return status


def merged_report_text(parts: list[dict], services) -> list[str]:
    """The services' parts of the report, merged over the workers (see :func:`_report_data`)."""
    out = []
    for mod in services:
        entries = [(i, p.get(mod.__name__)) for i, p in enumerate(parts) if p.get(mod.__name__)]
        if not entries:
            continue
        if hasattr(mod, "merge_report") and all("data" in e for _, e in entries):
            try:
                text = mod.merge_report([e["data"] for _, e in entries])
            except Exception as exc:
                text = f"({mod.__name__}: report failed: {exc})"
            if text:
                out.append(text)
        else:
            out.extend(f"worker {i}: {e['text']}" for i, e in entries if e.get("text"))
    return out


class Aggregate:
    """The control socket's answers (the protocol of :mod:`netstack.control`) for all workers:
    counters and gauges summed, the TUN's drop counters added once, one table with the worker
    of each row."""

    def __init__(self, workers: list[WorkerHandle], addr: str, extra_counters) -> None:
        self.workers = workers
        self.addr = addr
        self.extra_counters = extra_counters
        self.started_at = time.monotonic()
        self._deltas = CounterDeltas(self.started_at)

    def identity(self) -> dict:
        return {"pid": os.getpid(), "addr": self.addr, "uptime": round(time.monotonic() - self.started_at, 3),
                "workers": [{"index": w.index, "pid": w.pid} for w in self.workers]}

    async def gather(self, op: str) -> list[dict]:
        return list(await asyncio.gather(*(w.ask(op) for w in self.workers)))

    async def handle(self, line: bytes) -> dict:
        from netstack.sockets.table import merge_snapshots
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"malformed request: not JSON ({exc})"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "malformed request: not a JSON object"}
        op = request.get("op")
        try:
            if op == "ping":
                return {"ok": True, **self.identity()}
            if op == "ss":
                replies = await self.gather("ss")
                return {"ok": True, "ss": merge_snapshots([r["ss"] for r in replies])}
            if op == "stats":
                delta = request.get("delta", False)
                if not isinstance(delta, bool):
                    return {"ok": False, "error": "malformed request: 'delta' must be true or false"}
                replies = await self.gather("stats")
                counters = merge_counters([r["counters"] for r in replies] + [self.extra_counters()])
                gauges = {k: sum(r["gauges"].get(k, 0) for r in replies) for k in replies[0]["gauges"]}
                return stats_reply(self.identity(), counters, gauges, self._deltas if delta else None)
        except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
            return {"ok": False, "error": f"a worker did not answer: {exc}"}
        return {"ok": False, "error": f"unknown op {op!r} (known: ss, stats, ping)"}


async def _supervise(args, lab, addr: str, handles: list[WorkerHandle]) -> int:
    from netstack.cli import serve
    from netstack.control import ControlServer, ControlSocketBusy
    from netstack.counters import Counters

    loop = asyncio.get_running_loop()
    services = serve.SERVICE_MODULES
    tun_counters = Counters()                    # the TUN's drops, read from the device: counted once
    state = {"stopping": None, "crashed": None, "tun_stats": {}, "tun_error": None, "last_reading": None}
    for h in handles:
        await h.connect()
    listeners = [loop.create_task(h.listen()) for h in handles]
    reapers = [loop.create_task(h.reap()) for h in handles]
    stopped = loop.create_future()

    def stop_all(sig) -> None:
        log.info("%s: stopping every worker", signal.Signals(sig).name)
        if state["stopping"] is None:
            state["stopping"] = sig
            # the TUN's last statistics while the workers still hold it (it goes with the last of them)
            state["last_reading"] = loop.create_task(read_then_signal(sig))
        else:
            for h in handles:                    # a second SIGTERM stops them at once, as in one process
                h.signal(sig)
        if not stopped.done():
            stopped.set_result(None)

    async def read_then_signal(sig) -> None:
        try:
            await asyncio.wait_for(read_tun(), 2.0)
        except asyncio.TimeoutError:
            pass
        finally:
            for h in handles:
                h.signal(sig)

    def on_exit(h: WorkerHandle, fut) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        if state["stopping"] is None:            # nobody asked it to go: a crash
            state["crashed"] = h
            print(f"netstack serve: worker {h.index} (pid {h.pid}) ended on its own: {describe_exit(h.status)}; "
                  f"stopping every worker", file=sys.stderr, flush=True)
            stop_all(signal.SIGINT)

    for h in handles:
        h.exited.add_done_callback(lambda fut, h=h: on_exit(h, fut))
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop_all, sig)

    def tun_line() -> str:
        return serve.tun_line(f"{lab.ifname} ({len(handles)} queues)", state["tun_stats"], state["tun_error"])

    async def read_tun() -> None:
        try:
            fut = lab.device_stats_future()
            if fut is not None:
                stats = await asyncio.wrap_future(fut)
                state["tun_stats"] = lab.update_counters(tun_counters, stats)
                state["tun_error"] = None
        except Exception as exc:
            state["tun_error"] = f"{type(exc).__name__}: {exc}"

    async def refresh_tun() -> None:
        while True:
            await read_tun()
            await asyncio.sleep(1.0)

    def report(counters: dict, parts: list[dict], per_worker: list[dict], note: str = "") -> str:
        from netstack.counters import Counters as C
        merged = C()
        for k, v in counters.items():
            merged.inc(k, v)
        out = [merged.format()]
        line = tun_line()
        if line:
            out.append(line)
        out.append(f"workers: {len(handles)} (" + "; ".join(
            f"{h.index}: pid {h.pid}, {c.get('tcp.passive_opens', 0)} passive opens, {c.get('tcp.in_segs', 0)} "
            f"segments in" for h, c in zip(handles, per_worker)) + ")" + (f"; {note}" if note else ""))
        out.extend(merged_report_text(parts, services))
        return "\n".join(out)

    async def on_usr1() -> None:
        try:
            replies = await asyncio.gather(*(h.ask("report") for h in handles))
        except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
            print(f"netstack serve: report: a worker did not answer: {exc}", file=sys.stderr, flush=True)
            return
        counters = merge_counters([r["counters"] for r in replies] + [tun_counters.snapshot()])
        print(report(counters, [r["reports"] for r in replies], [r["counters"] for r in replies]),
              file=sys.stderr, flush=True)

    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(on_usr1()))
    control = None
    refresher = None
    ready = False
    try:
        waiting = asyncio.gather(*(h.ready for h in handles))
        done, _ = await asyncio.wait([waiting, stopped], timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            if not stopped.done():
                print(f"netstack serve: the workers were not ready within {READY_TIMEOUT:.0f} s; stopping",
                      file=sys.stderr, flush=True)
                state["crashed"] = state["crashed"] or True
                stop_all(signal.SIGINT)
        else:
            refresher = loop.create_task(refresh_tun())
            agg = Aggregate(handles, addr, tun_counters.snapshot)
            try:
                control = await ControlServer(None, args.control_socket, handler=agg.handle).start()
            except ControlSocketBusy as exc:
                raise UsageError(f"--control-socket: {exc.strerror}") from None
            except OSError as exc:
                raise UsageError(f"--control-socket {args.control_socket}: {exc.strerror or exc}") from None
            offered = [f"{name} {port}" for mod in services if hasattr(mod, "offered") for name, port in mod.offered(args)]
            print(f"netstack serve: ready: {addr} in netns {lab.netns} on {lab.ifname} "
                  f"(peer {lab.kernel_addr}/{lab.prefixlen}, mtu {lab.mtu}, offloads {'on' if lab.offload else 'off'}, "
                  f"pid {os.getpid()}, {len(handles)} workers: pids {' '.join(str(h.pid) for h in handles)}); "
                  f"services: {', '.join(offered) or 'none'}; control socket {args.control_socket}",
                  file=sys.stderr if args.pcap == "-" else sys.stdout, flush=True)
            ready = True
            sdnotify.notify(READY=1, MAINPID=os.getpid(),
                            STATUS=f"serving {addr} in netns {lab.netns} with {len(handles)} workers: "
                                   f"{', '.join(offered) or 'no services'}")
            await stopped
    finally:
        if ready:
            sdnotify.notify(STOPPING=1)
        if control is not None:
            control.close()
        grace = STOP_GRACE + (getattr(args, "smtp_drain_seconds", 0) or 0)
        if state["stopping"] is None:
            stop_all(signal.SIGINT)
        await asyncio.wait([state["last_reading"]], timeout=5)
        done, pending = await asyncio.wait(reapers, timeout=grace)
        if pending:
            for h in handles:
                if h.status is None:
                    print(f"netstack serve: worker {h.index} (pid {h.pid}) did not stop within {grace:.0f} s: "
                          f"killing it", file=sys.stderr, flush=True)
                    h.signal(signal.SIGKILL)
            await asyncio.wait(reapers, timeout=10)
        await asyncio.wait(listeners, timeout=5)
        for h in handles:
            if h.writer is not None:
                h.writer.close()
        if refresher is not None:
            refresher.cancel()
        for sig in (*STOP_SIGNALS, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)   # a second signal must not cut the teardown short
        finals = [h.final or {} for h in handles]
        missing = [h.index for h in handles if h.final is None]
        counters = merge_counters([f.get("counters", {}) for f in finals] + [tun_counters.snapshot()])
        note = f"no final counters from worker(s) {', '.join(map(str, missing))}" if missing else ""
        print(report(counters, [f.get("reports", {}) for f in finals], [f.get("counters", {}) for f in finals], note),
              file=sys.stderr, flush=True)
        if args.counters_json:
            snap = dict(counters)
            snap["ip.reasm.peak_bytes_held"] = sum(f.get("reasm_peak", 0) for f in finals)
            snap["ip.reasm.max_bytes"] = sum(f.get("reasm_max", 0) for f in finals)
            snap["serve.workers"] = len(handles)
            try:
                with open(args.counters_json, "w") as f:
                    json.dump(snap, f, indent=2, sort_keys=True)
            except OSError as exc:
                print(f"netstack serve: cannot write {args.counters_json}: {exc}", file=sys.stderr)
    statuses = [h.status if h.status is not None else 1 << 8 for h in handles]
    for h in handles:
        if h.status is not None and h is not state["crashed"] and (not os.WIFEXITED(h.status) or os.WEXITSTATUS(h.status)):
            print(f"netstack serve: worker {h.index} (pid {h.pid}) {describe_exit(h.status)}", file=sys.stderr)
    return exit_code(statuses, state["crashed"] is not None)


def run(args, lab, addr: str, faults) -> int:
    """``serve`` with ``args.workers`` workers on the up ``lab`` (``queues=args.workers``); the exit
    status.  The caller tears the lab down afterwards."""
    shared = Shared()
    keep: list[socket.socket] = []
    handles: list[WorkerHandle] = []
    # no stop signal between a fork and its handle: one arriving meanwhile waits until all are known
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for index in range(args.workers):
            pid, sock = _spawn(args, lab, index, shared, addr, faults, keep, old_mask)
            keep.append(sock)
            handles.append(WorkerHandle(index, pid, sock))
    except BaseException:
        for h in handles:                        # a half-started service: stop what runs
            h.signal(signal.SIGKILL)
            os.waitpid(h.pid, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        raise
    finally:
        lab.release_queues()                     # the workers hold the queues now
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)     # a pending stop signal arrives here
        return asyncio.run(_supervise(args, lab, addr, handles))
    except KeyboardInterrupt:                    # before the loop took the signals
        for h in handles:
            h.signal(signal.SIGINT)
        for h in handles:
            try:
                os.waitpid(h.pid, 0)
            except ChildProcessError:
                pass
        return 0
