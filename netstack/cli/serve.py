"""``netstack serve``: bring up the lab, run the stack until SIGINT/SIGTERM/SIGHUP, tear down.

Steps: validate the options (one-line errors, exit 2), set up the lab
namespace and TUN over netlink, wrap the link in the fault injector if
``--faults`` is given and in the capture wrapper (``netstack.link.capture``)
if ``--pcap`` or ``--trace`` is, start the stack, run the *service
installers*, open the control socket (:mod:`netstack.control`, which
``netstack ss`` and ``netstack stats`` ask), print the ready line (the
address and every service with its port) and tell systemd ``READY=1`` when
``$NOTIFY_SOCKET`` is set (:mod:`netstack.cli.sdnotify`), and serve.

SIGUSR1 prints the report (the counters and what the services add, e.g. the
connection table) to stderr; at exit the report goes to stderr too and, with
``--counters-json FILE``, the counters to FILE as JSON.  SIGINT, SIGTERM and
SIGHUP all end the server: teardown (control socket, services, stack, which
flushes and closes the pcap, lab) runs on every path.  SIGTERM first runs
the services' optional ``drain(args)`` hooks while the stack still runs
(SMTP's graceful shutdown, up to ``--smtp-drain-seconds``); SIGINT, SIGHUP
or a second SIGTERM stop at once.  Logs go
to stderr (``--log-level``, ``-v``, ``-q``); stdout carries the data: the
ready line and, with ``--trace``, the packet lines.

``--workers N`` (N > 1) runs N worker processes instead, one per queue of a
multi-queue TUN, each a stack built here (:func:`build_stack`) with every
service; this process supervises them (:mod:`netstack.cli.serve_workers`).

The stack's TCP is built from the ``--tcp-*`` options (``netstack.cli.tcp_options``).
The services are *installers*, modules of this package listed in
:data:`SERVICE_MODULES` (``serve_services``: echo/discard/chargen,
``serve_smtp``: SMTP).  Adding one: write such a module and list it.  It exposes

* ``add_arguments(parser)`` (optional): add its options to ``netstack serve``;
* ``validate_args(args)`` (optional): check its options before anything is set
  up; raises :class:`~netstack.cli.UsageError` (one line, exit status 2);
* ``install_from_args(stack, args)``: called in order, inside the running
  event loop, after the stack is up and before ``ready``; may be ``async``;
  may return what must be closed at teardown (called in reverse order): a
  callable (sync or async), an object with ``close()`` (and optionally
  ``wait_closed()``, like asyncio servers), or a list of those.  A
  :class:`~netstack.cli.UsageError` it raises ends ``serve`` with exit
  status 2 and that one line; any other exception with status 1;
* ``offered(args)`` (optional): ``[(name, port), ...]``, what it serves, for
  the ready line;
* ``report(stack)`` (optional): text appended to the SIGUSR1/exit report
  (e.g. the ``ss -tin`` style connection table).
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import ipaddress
import json
import logging
import os
import signal
import sys
import time

from netstack.cli import UsageError, sdnotify, serve_services, serve_smtp, serve_workers, tcp_options
from netstack.link.lab import DEFAULT_TUN_QUEUE_LEN

#: the service installers, in installation order
SERVICE_MODULES = [serve_services, serve_smtp]

log = logging.getLogger("netstack.serve")

#: --log-level's choices, quietest last
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: the signals that end the server (each tears down the same way)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _data_out(args):
    """Where the ready line and trace lines go: stdout, unless the pcap itself is written there."""
    return sys.stderr if args.pcap == "-" else sys.stdout


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return level


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the stack on a TUN device in a lab network namespace",
        description="Create the lab namespace and TUN device (kernel side gets --peer), run the stack on --addr "
                    "until SIGINT, SIGTERM or SIGHUP, then tear down.  Prints one line containing 'ready', with the "
                    "address and each service's port, once it answers (and sends READY=1 to $NOTIFY_SOCKET, "
                    "for systemd's Type=notify); `netstack ss` and `netstack stats` ask it over its control "
                    "socket; SIGUSR1 prints the counters and connection table to stderr.  Logs go to stderr, "
                    "data (the ready line, --trace lines) to stdout.")
    p.add_argument("--netns", default="netstack", help="lab namespace name (created if missing; default netstack)")
    p.add_argument("--ifname", default="nstk0", help="TUN device name (default nstk0)")
    p.add_argument("--addr", default="198.18.0.2", help="the stack's IPv4 address (default 198.18.0.2)")
    p.add_argument("--peer", default="198.18.0.1/24", help="kernel side address/prefix (default 198.18.0.1/24)")
    p.add_argument("--mtu", type=int, default=1500, help="link MTU (default 1500)")
    p.add_argument("--tun-queue-len", type=int, default=DEFAULT_TUN_QUEUE_LEN, metavar="PACKETS",
                   help="the TUN's txqueuelen: packets from the kernel waiting for the stack; a burst beyond it "
                        f"is dropped and counted (link.tun.in.drop.queue_full) (default {DEFAULT_TUN_QUEUE_LEN}: "
                        "holds the FINs and ACKs of 5,000 connections closed at once)")
    p.add_argument("--offload", action=argparse.BooleanOptionalAction, default=True,
                   help="open the TUN with the virtio-net header: TCP segmentation (TSO/GSO) and checksum "
                        "offload, 64 KB super-segments both ways (default on where the kernel offers it; "
                        "off: one packet per segment, every checksum computed here)")
    p.add_argument("--pcap", metavar="FILE", help="record every packet crossing the TUN, both directions "
                                                   "('-': to stdout, then the ready and trace lines go to stderr)")
    p.add_argument("--pcap-flush", choices=["buffered", "packet"], default="buffered",
                   help="buffered (default, fastest): the pcap is written in 64 KiB blocks and at exit; packet: "
                        "each packet reaches the file as it passes, like tcpdump -U (for watching a live capture)")
    p.add_argument("--trace", action="store_true", help="print each packet in the dissector's one-line format")
    p.add_argument("--state-log", metavar="FILE",
                   help="write every TCP state transition (time, 4-tuple, from, to, cause) and every congestion "
                        "or recovery event (fast retransmit, recovery exit, RTO, tail loss probe and the loss it repaired, undo; with cwnd "
                        "and ssthresh) as JSON lines; times are seconds since the epoch, like the pcap's")
    p.add_argument("--faults", metavar="SPEC",
                   help="impair traffic in both directions, e.g. loss=5%%,reorder=25%%,delay=5ms,seed=1 "
                        "(keys: loss duplicate reorder corrupt delay reorder_timeout seed directions)")
    p.add_argument("--counters-json", metavar="FILE", help="write the counters as JSON at exit")
    p.add_argument("--reasm-timeout", type=float, default=30.0, metavar="S",
                   help="fragment reassembly timeout in seconds (default 30)")
    p.add_argument("--reasm-max-datagrams", type=int, default=64, metavar="N",
                   help="datagrams held in reassembly at most (default 64)")
    p.add_argument("--reasm-max-bytes", type=int, default=4 * 1024 * 1024, metavar="B",
                   help="fragment bytes held in reassembly at most (default 4 MiB)")
    p.add_argument("--icmp-rate", type=float, default=100.0, metavar="PER_S",
                   help="ICMP error messages per second, sustained (default 100; burst 50)")
    p.add_argument("--ip-min-pmtu", type=int, default=552, metavar="BYTES",
                   help="path-MTU floor: an ICMP 'fragmentation needed' below it sets it, never less; a path "
                        "narrower than it gets datagrams without DF (default 552, as Linux's route/min_pmtu)")
    p.add_argument("--ip-pmtu-decrease-interval", type=float, default=1.0, metavar="S",
                   help="believe at most one path-MTU decrease per destination in S seconds; the others are "
                        "ignored and counted (default 1; 0: no limit)")
    p.add_argument("--workers", type=serve_workers.parse_workers, default=1, metavar="N",
                   help="worker processes, one per queue of a multi-queue TUN, each running a full stack on "
                        "--addr with every service; the kernel's flow hash picks a connection's worker "
                        "('auto': one per CPU; default 1: one process, no workers)")
    p.add_argument("--control-socket", metavar="PATH",
                   help="where `netstack ss`/`netstack stats` ask the stack (default /run/netstack/NETNS.sock; "
                        "mode 0600, root only)")
    g = p.add_argument_group("logging (to stderr)")
    g.add_argument("--log-level", type=_log_level, metavar="LEVEL",
                   help=f"one of {', '.join(LOG_LEVELS)} (case-insensitive; default WARNING)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="one level more verbose than the default for each -v (-v INFO, -vv DEBUG)")
    g.add_argument("-q", "--quiet", action="count", default=0,
                   help="one level quieter for each -q (-q ERROR, -qq CRITICAL)")
    tcp_options.add_arguments(p)
    for mod in SERVICE_MODULES:
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)
    p.set_defaults(func=run)


def log_level(args) -> int:
    """The logging level ``--log-level``, ``-v`` and ``-q`` ask for (default WARNING)."""
    if args.log_level is not None:
        if args.verbose or args.quiet:
            raise UsageError("--log-level and -v/-q: give one or the other")
        return getattr(logging, args.log_level)
    index = LOG_LEVELS.index("WARNING") - args.verbose + args.quiet
    return getattr(logging, LOG_LEVELS[min(max(index, 0), len(LOG_LEVELS) - 1)])


def _validate(args):
    from netstack.link.faults import FaultSpecError, parse_fault_spec
    from netstack.link.lab import LabError, parse_v4
    try:
        addr = parse_v4(args.addr, "--addr", ipaddress.ip_address)
        peer = parse_v4(args.peer, "--peer")
    except LabError as exc:
        raise UsageError(str(exc)) from None
    if "/" not in args.peer:
        peer = ipaddress.IPv4Interface(f"{peer.ip}/24")
    if peer.ip == addr:
        raise UsageError(f"--addr and --peer are both {addr}")
    if not 68 <= args.mtu <= 65535:
        raise UsageError(f"--mtu {args.mtu} out of range (68..65535)")
    if not 1 <= args.tun_queue_len <= 1_000_000:
        raise UsageError(f"--tun-queue-len {args.tun_queue_len} out of range (1..1000000)")
    faults = None
    if args.faults:
        try:
            faults = parse_fault_spec(args.faults)
        except FaultSpecError as exc:
            raise UsageError(f"--faults: {exc}") from None
    if args.state_log:
        where = os.path.dirname(os.path.abspath(args.state_log))
        if not os.path.isdir(where):
            raise UsageError(f"--state-log {args.state_log}: directory {where} does not exist")
        if not os.access(where, os.W_OK):
            raise UsageError(f"--state-log {args.state_log}: directory {where} is not writable")
    if args.reasm_timeout <= 0 or args.reasm_max_datagrams < 1 or args.reasm_max_bytes < 1:
        raise UsageError("--reasm-* values must be positive")
    if not 68 <= args.ip_min_pmtu <= 65535:
        raise UsageError(f"--ip-min-pmtu {args.ip_min_pmtu} out of range (68..65535)")
    if args.ip_pmtu_decrease_interval < 0:
        raise UsageError("--ip-pmtu-decrease-interval must not be negative")
    for mod in SERVICE_MODULES:
        if hasattr(mod, "validate_args"):
            mod.validate_args(args)
    if args.pcap_flush == "packet" and not args.pcap:
        raise UsageError("--pcap-flush packet needs --pcap FILE")
    serve_workers.validate_args(args)
    if not args.control_socket:
        from netstack.control import default_path
        try:
            args.control_socket = default_path(args.netns)
        except ValueError as exc:
            raise UsageError(f"--netns: {exc}") from None
    return str(addr), str(peer), faults


def run(args) -> int:
    logging.basicConfig(level=log_level(args), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    addr, peer, faults = _validate(args)
    from netstack.link.lab import Lab, LabError, check_privileges
    try:
        check_privileges()
        lab = Lab(netns=args.netns, ifname=args.ifname, kernel_addr=peer, stack_addr=addr, mtu=args.mtu,
                  tun_queue_len=args.tun_queue_len, offload=args.offload, queues=args.workers)
    except LabError as exc:
        raise UsageError(str(exc)) from None
    # Before the loop is up, SIGTERM and SIGHUP must still tear down (KeyboardInterrupt, like SIGINT)
    # and SIGUSR1 must not kill us; after the loop, teardown ignores them all (see _serve).
    old_handlers = {sig: signal.getsignal(sig) for sig in (*STOP_SIGNALS, signal.SIGUSR1)}
    _PENDING_STOP.clear()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        try:
            lab.up()
        except LabError as exc:
            raise UsageError(str(exc)) from None
        if args.workers > 1:
            return serve_workers.run(args, lab, addr, faults)
        try:
            return asyncio.run(_serve(args, lab, addr, faults))
        except KeyboardInterrupt:
            return 0
    finally:
        lab.down()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


async def _start_control(stack, args, faulty_link):
    """The control socket (netstack.control); a one-line error (exit 2) if it cannot be opened."""
    from netstack.control import ControlServer, ControlSocketBusy
    extra = None
    if faulty_link is not None:
        def extra():
            return {f"faults.{k}": v for k, v in faulty_link.stats.items()}
    try:
        return await ControlServer(stack, args.control_socket, extra_counters=extra).start()
    except ControlSocketBusy as exc:
        raise UsageError(f"--control-socket: {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"--control-socket {args.control_socket}: {exc.strerror or exc}") from None


def tun_line(device: str, stats: dict, error: str | None) -> str:
    """One line about the TUN ``device``, from the latest reading of its statistics."""
    if error:
        return f"tun: statistics unavailable ({error})"
    if not stats:
        return ""
    return (f"tun {device}: queue {stats.get('txqlen', 0)} packets; kernel to stack {stats.get('tx_packets', 0)} "
            f"packets, {stats.get('tx_dropped', 0)} dropped (queue full); stack to kernel {stats.get('rx_packets', 0)} "
            f"packets, {stats.get('rx_dropped', 0)} dropped")


#: stop signals that arrived before the loop's own handlers were in place (see stop_on_signals)
_PENDING_STOP: list = []


def _raise_interrupt(signum, frame):
    _PENDING_STOP.append(signum)      # kept: the exception below can land where Python ignores it
    raise KeyboardInterrupt


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value


def _closers(result) -> list:
    """Normalise what an installer returned into a list of zero-argument closers."""
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        out = []
        for item in result:
            out.extend(_closers(item))
        return out
    if callable(result):
        return [result]
    if hasattr(result, "close"):
        async def close(obj=result):
            await _maybe_await(obj.close())
            if hasattr(obj, "wait_closed"):
                await asyncio.wait_for(_maybe_await(obj.wait_closed()), 5)
        return [close]
    return []


def build_stack(args, tun_link, addr: str, faults, *, pcap=None, state_log_path=None, **stack_kw):
    """The stack ``serve`` runs on ``tun_link``: wrapped in the fault injector (``--faults``) and
    the capture (``pcap``: a path or binary stream; ``--trace``), TCP from the ``--tcp-*``
    options, the state log at ``state_log_path``; ``stack_kw`` go to :class:`Stack` as they are.
    Returns ``(stack, link, state_log)``: ``link`` is the fault injector when there is one."""
    from netstack.link.capture import CaptureLink
    from netstack.link.faults import FaultyLink
    from netstack.stack import Stack

    link = tun_link
    if faults is not None:
        link = FaultyLink(link, **faults)
    stack_link = link
    if pcap is not None or args.trace:    # what the stack sends and receives (inside the fault injector)
        stack_link = CaptureLink(link, pcap=pcap, trace=_data_out(args) if args.trace else None,
                                 pcap_flush=args.pcap_flush)
    stack = Stack(stack_link, addr, tcp=tcp_options.config_from_args(args, link.mtu),
                  reassembly_timeout=args.reasm_timeout, reassembly_max_datagrams=args.reasm_max_datagrams,
                  reassembly_max_bytes=args.reasm_max_bytes, icmp_error_rate=args.icmp_rate,
                  min_pmtu=args.ip_min_pmtu, pmtu_decrease_interval=args.ip_pmtu_decrease_interval, **stack_kw)
    state_log = None
    if state_log_path:
        from netstack.statelog import StateLogWriter
        try:
            state_log = StateLogWriter(state_log_path, time_offset=time.time() - stack.clock())
        except OSError as exc:
            raise UsageError(f"--state-log {state_log_path}: {exc.strerror or exc}") from None
        stack.tcp.on_transition = state_log
        stack.tcp.on_recovery = state_log.recovery
    return stack, link, state_log


def stop_on_signals(loop, stack, args, services) -> None:
    """SIGINT, SIGTERM and SIGHUP end ``stack.run()``: SIGTERM after the services' drain hooks
    (while the stack still runs), the others, or a second SIGTERM, at once."""
    draining: list = []

    def on_stop_signal(sig) -> None:
        log.info("%s: shutting down", signal.Signals(sig).name)
        if sig == signal.SIGTERM and not draining and not stack.closed:
            # graceful: each service's drain hook (e.g. SMTP lets messages in DATA finish) while the
            # stack still runs; a second signal stops at once
            draining.append(loop.create_task(drain_then_stop()))
            return
        stack.stop()

    async def drain_then_stop() -> None:
        try:
            for mod in services:
                fn = getattr(mod, "drain", None)
                if fn is not None:
                    try:
                        await fn(args)
                    except Exception:
                        log.exception("%s: drain failed", mod.__name__)
        finally:
            stack.stop()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_stop_signal, sig)
    if _PENDING_STOP:
        # A stop signal during set-up whose KeyboardInterrupt was swallowed (raised inside a
        # callback whose exceptions Python ignores, e.g. an at-fork handler of pyroute2's
        # forks): honour it now rather than serve on.
        loop.call_soon(on_stop_signal, _PENDING_STOP[-1])


async def install_services(stack, args, services) -> list | None:
    """Run every installer; the closers they return, or None when one failed (after printing
    why; ``serve`` then exits with status 1).  A UsageError goes up as it is."""
    closers: list = []
    for mod in services:
        try:
            result = await _maybe_await(mod.install_from_args(stack, args))
        except UsageError:
            raise
        except Exception as exc:
            log.debug("service %s failed", mod.__name__, exc_info=True)
            print(f"netstack serve: {mod.__name__}: cannot start: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            for closer in reversed(closers):
                try:
                    await _maybe_await(closer())
                except Exception:
                    log.exception("service teardown failed")
            return None
        closers.extend(_closers(result))
    return closers


async def run_closers(closers) -> None:
    """The installers' closers, in reverse order; a failing one is logged, the rest still run."""
    for closer in reversed(closers):
        try:
            await _maybe_await(closer())
        except Exception:
            log.exception("service teardown failed")


async def _serve(args, lab, addr: str, faults) -> int:
    loop = asyncio.get_running_loop()
    # `--pcap -`: the capture is the data on stdout (tcpdump -w -); the ready and trace lines go to stderr
    pcap = (sys.stdout.buffer if args.pcap == "-" else args.pcap) if args.pcap else None
    stack, link, state_log = build_stack(args, lab.link, addr, faults, pcap=pcap, state_log_path=args.state_log)
    closers = []
    services = SERVICE_MODULES

    tun = {"stats": {}, "error": None, "reading": None}

    def take_reading(fut) -> None:       # in the loop: the TUN's drops into the counters (link.tun.*)
        tun["reading"] = None
        try:
            tun["stats"] = lab.update_counters(stack.counters, fut.result())
            tun["error"] = None
        except Exception as exc:         # the report must not fail because netlink did
            log.debug("cannot read the TUN's statistics", exc_info=True)
            tun["error"] = f"{type(exc).__name__}: {exc}"

    def refresh_tun_stats() -> None:     # every second, never blocking the loop
        nonlocal refresh
        if tun["reading"] is None and not stack.closed:
            fut = lab.device_stats_future()
            if fut is not None:
                tun["reading"] = fut
                fut.add_done_callback(lambda f: loop.call_soon_threadsafe(take_reading, f))
        refresh = loop.call_later(1.0, refresh_tun_stats)

    def final_tun_stats() -> None:       # at exit: one last reading (bounded wait)
        try:
            tun["stats"] = lab.update_counters(stack.counters, lab.device_stats(timeout=3.0))
        except Exception as exc:
            tun["error"] = f"{type(exc).__name__}: {exc}"

    def report() -> str:
        parts = [stack.counters.format()]
        line = tun_line(lab.ifname, tun["stats"], tun["error"])
        if line:
            parts.append(line)
        if faults is not None:
            parts.append("faults:\n" + "\n".join(f"    {v:>6} {k}" for k, v in sorted(link.stats.items())))
        for mod in services:
            fn = getattr(mod, "report", None)
            if fn is not None:
                try:
                    text = fn(stack)
                except Exception as exc:
                    text = f"({mod.__name__}: report failed: {exc})"
                if text:
                    parts.append(text)
        return "\n".join(parts)

    def on_usr1() -> None:
        print(report(), file=sys.stderr, flush=True)

    refresh = loop.call_soon(refresh_tun_stats)

    stop_on_signals(loop, stack, args, services)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    ready = False
    try:
        stack.start()
        installed = await install_services(stack, args, services)
        if installed is None:
            return 1
        closers.extend(installed)
        control = await _start_control(stack, args, link if faults is not None else None)
        closers.extend(_closers(control))
        offered = [f"{name} {port}" for mod in services if hasattr(mod, "offered") for name, port in mod.offered(args)]
        print(f"netstack serve: ready: {addr} in netns {lab.netns} on {lab.ifname} "
              f"(peer {lab.kernel_addr}/{lab.prefixlen}, mtu {lab.mtu}, offloads {'on' if lab.offload else 'off'}, "
              f"pid {os.getpid()}); "
              f"services: {', '.join(offered) or 'none'}; control socket {args.control_socket}",
              file=_data_out(args), flush=True)
        ready = True
        sdnotify.notify(READY=1, MAINPID=os.getpid(),
                        STATUS=f"serving {addr} in netns {lab.netns}: {', '.join(offered) or 'no services'}")
        await stack.run()
    finally:
        refresh.cancel()
        if ready:
            sdnotify.notify(STOPPING=1)
        await run_closers(closers)
        stack.close()
        if state_log is not None:
            state_log.close()
        for sig in (*STOP_SIGNALS, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)       # a second signal must not cut the teardown short
        final_tun_stats()
        print(report(), file=sys.stderr, flush=True)
        if args.counters_json:
            snap = stack.counters.snapshot()
            snap["ip.reasm.peak_bytes_held"] = stack.ip.reassembler.peak_bytes_held
            snap["ip.reasm.max_bytes"] = stack.ip.reassembler.max_bytes
            if faults is not None:
                snap.update({f"faults.{k}": v for k, v in link.stats.items()})
            try:
                with open(args.counters_json, "w") as f:
                    json.dump(snap, f, indent=2, sort_keys=True)
            except OSError as exc:
                print(f"netstack serve: cannot write {args.counters_json}: {exc}", file=sys.stderr)
    return 0
