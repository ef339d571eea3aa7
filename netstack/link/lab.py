"""The lab: a network namespace with the kernel on one end of our TUN.

``Lab`` sets up, over netlink with pyroute2 (never by running ``ip``):

1. the namespace (default ``netstack``), created only if it does not exist;
2. a TUN device opened by this process (in the caller's namespace, with no
   address there; with TSO/checksum offloads where the kernel offers them,
   ``offload=False`` for plain packets) and moved at once into the lab namespace;
3. inside the namespace: the device's MTU and transmit queue length
   (``tun_queue_len``, see below), the kernel side's address
   (default 198.18.0.1/24), IPv6 link-local generation off (so the kernel
   sends no router solicitations or MLD reports into the stack), the device
   and ``lo`` up; a host route to the stack's address when it lies outside the
   kernel's prefix.

The stack owns the other address (default 198.18.0.2): it is not configured
on any device, the stack answers for it.  ``down()`` (also on ``with`` exit,
exceptions included) removes exactly what ``up()`` created: closing the
non-persistent TUN deletes the device; the namespace is removed only if we
created it.

The TUN's queue: what the kernel sends to the stack waits in the device's
transmit queue (``txqueuelen``, 500 packets for a new TUN) until the stack
reads it; when the stack falls behind a burst, the kernel drops the excess
and counts it in the device's ``tx_dropped``.  The lab sets it to
``tun_queue_len``, by default :data:`DEFAULT_TUN_QUEUE_LEN` (10,000): closing
5,000 connections at once makes the kernel send about two packets each (its
FIN, the ACK of ours) within a few milliseconds, which a 500-packet queue
cannot hold; 10,000 holds that burst, costs only memory while it is in use
(a queued FIN or ACK is under 1 KB: about 10 MB if it ever fills with
small packets) and is the same order as ``netdev_max_backlog`` on a busy host.
:meth:`Lab.device_stats` reads the device's statistics over netlink and
:meth:`Lab.update_counters` adds their drops to the stack's counters:
``link.tun.in.drop.queue_full`` (the kernel's ``tx_dropped``: packets for
the stack lost because the queue was full) and ``link.tun.out.drop``
(``rx_dropped``: packets the stack wrote that the kernel dropped).

Several queues (``queues=N``, N > 1): the TUN is opened with
``IFF_MULTI_QUEUE`` and N times, all before it moves into the namespace
(a queue can only be attached where the device was created);
:attr:`Lab.links` holds one :class:`~netstack.link.tun.TunLink` per queue and
:attr:`Lab.link` is the first.  A multi-process server hands each queue to
one process and then drops its own copies with :meth:`Lab.release_queues`: the
device lives while any process holds a queue, and goes when the last one
closes (or dies).

Safety: no address is ever put on a device in the caller's namespace.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import subprocess

from typing import TYPE_CHECKING

if TYPE_CHECKING:                       # pytun is imported only when a lab comes up
    from netstack.link.tun import TunLink

__all__ = ["Lab", "LabError", "have_net_admin", "check_privileges", "missing_dependencies", "parse_v4",
           "DEFAULT_TUN_QUEUE_LEN"]

log = logging.getLogger("netstack.link.lab")

CAP_NET_ADMIN = 12
TUN_PATH = "/dev/net/tun"
#: the TUN's txqueuelen (see the module doc for why)
DEFAULT_TUN_QUEUE_LEN = 10_000
#: device statistics (IFLA_STATS64) -> the stack counter their increments go to
_DROP_COUNTERS = {"tx_dropped": "link.tun.in.drop.queue_full", "rx_dropped": "link.tun.out.drop"}


class LabError(Exception):
    """The lab cannot be set up; ``str()`` is one line for the user."""


def have_net_admin() -> bool:
    """True when this process holds CAP_NET_ADMIN in its effective set."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def missing_dependencies() -> list[str]:
    """The Python distributions the lab needs and this installation lacks: python-pytun
    (the TUN device) and pyroute2 (netlink).  netstack installs both on Linux only, so
    that ``trace``, the dissector and the in-memory stack work everywhere."""
    import importlib.util
    import sys

    missing = []
    for module, dist in (("pytun", "python-pytun"), ("pyroute2", "pyroute2")):
        if sys.modules.get(module, False) is None:
            missing.append(dist)
            continue
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(dist)
        except (ImportError, ValueError):
            missing.append(dist)
    return missing


def check_privileges(tun_path: str | None = None) -> None:
    """Raise LabError when the lab cannot possibly be set up here: not Linux, python-pytun or
    pyroute2 missing, no CAP_NET_ADMIN, no /dev/net/tun."""
    import sys

    tun_path = tun_path or TUN_PATH
    if not sys.platform.startswith("linux"):
        raise LabError(f"the TUN lab needs Linux (this is {sys.platform}); trace, the dissector and the "
                       "in-memory stack work here")
    missing = missing_dependencies()
    if missing:
        raise LabError(f"the TUN lab needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                       f"not installed: pip install {' '.join(missing)}")
    if not have_net_admin():
        raise LabError("needs root or CAP_NET_ADMIN (run with sudo)")
    if not os.path.exists(tun_path):
        raise LabError(f"{tun_path} is missing (modprobe tun)")


def parse_v4(text: str, what: str, parse=ipaddress.ip_interface):
    """``parse(text)`` (ip_interface or ip_address), refusing anything but IPv4 with a LabError."""
    try:
        value = parse(text)
    except ValueError:
        raise LabError(f"{what} {text!r} is not an IPv4 address") from None
    if value.version != 4:
        raise LabError(f"{what} {text!r} is not an IPv4 address")
    return value


class Lab:
    """A lab namespace with a TUN device; a context manager (see module doc)."""

    def __init__(self, netns: str = "netstack", ifname: str = "nstk0", kernel_addr: str = "198.18.0.1/24",
                 stack_addr: str = "198.18.0.2", mtu: int = 1500,
                 tun_queue_len: int = DEFAULT_TUN_QUEUE_LEN, offload: bool = True, queues: int = 1) -> None:
        """``offload``: open the TUN with the virtio-net header and TSO/checksum offloads
        where the kernel offers them (:class:`~netstack.link.tun.TunLink`; a clean
        fallback otherwise); :attr:`offload` says what is active once up.  ``queues``:
        more than 1 opens a multi-queue TUN with that many queues (see the module doc)."""
        self.netns = netns
        self.ifname = ifname
        self.kernel_if = parse_v4(kernel_addr, "peer address")
        self.stack_ip = parse_v4(stack_addr, "stack address", ipaddress.ip_address)
        if not netns or "/" in netns or netns in (".", ".."):
            raise LabError(f"bad namespace name {netns!r}")
        if not ifname or len(ifname) > 15 or "/" in ifname or " " in ifname:
            raise LabError(f"bad interface name {ifname!r} (1..15 characters, no '/' or spaces)")
        if not 68 <= mtu <= 65535:
            raise LabError(f"MTU {mtu} out of range (68..65535)")
        if not 1 <= tun_queue_len <= 1_000_000:
            raise LabError(f"TUN queue length {tun_queue_len} out of range (1..1000000)")
        if not 1 <= queues <= 256:
            raise LabError(f"TUN queues {queues} out of range (1..256)")
        self.queues = queues
        if self.stack_ip == self.kernel_if.ip:
            raise LabError(f"stack address {self.stack_ip} equals the peer address")
        self.mtu = mtu
        self.tun_queue_len = tun_queue_len
        self._stats_ns = None
        self._stats_pool = None
        self._ifindex: int | None = None
        self._last_stats: dict[str, int] = {}
        self.want_offload = offload
        self.kernel_addr = str(self.kernel_if.ip)
        self.stack_addr = str(self.stack_ip)
        self.prefixlen = self.kernel_if.network.prefixlen
        self.created_netns = False
        self._link: TunLink | None = None
        self._links: list[TunLink] = []
        self._owner_pid = os.getpid()

    # -- set-up / teardown --------------------------------------------------------------------
    @property
    def link(self) -> TunLink:
        if self._link is None:
            raise LabError("lab is not up")
        return self._link

    @property
    def links(self) -> list[TunLink]:
        """One link per queue (one for a single-queue lab); empty when down."""
        return list(self._links)

    def release_queues(self) -> None:
        """Close this process's fds of every queue (after handing them to the processes that
        serve them): the device stays while they hold theirs.  The lab stays up otherwise
        (its statistics, :meth:`down`)."""
        for link in self._links:
            link.close()

    @property
    def offload(self) -> bool:
        """True when the lab's TUN runs with offloads (virtio-net header, TSO, checksum)."""
        return self._link is not None and self._link.offload

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix an argv with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.netns]

    def up(self) -> "Lab":
        from pyroute2 import IPRoute, NetNS, netns as pr_netns

        from netstack.link.tun import TunError, TunLink

        check_privileges()
        self._owner_pid = os.getpid()
        try:
            if self.netns not in pr_netns.listnetns():
                # Ours from before the call: a signal (or any error) that lands inside create(),
                # once the namespace exists but before create() returns, must still let down()
                # remove it.  The name was free just now, so whatever holds it later is ours.
                self.created_netns = True
                pr_netns.create(self.netns)
                log.info("created namespace %s", self.netns)
            else:
                with NetNS(self.netns) as ns:
                    if ns.link_lookup(ifname=self.ifname):
                        raise LabError(f"device name {self.ifname!r} is already in use in namespace {self.netns!r}")
            try:
                multi = self.queues > 1
                self._link = TunLink(self.ifname, self.mtu, offload=self.want_offload, multi_queue=multi)
                self._links = [self._link]
                for q in range(1, self.queues):     # attach the other queues (same flags, no EXCL)
                    self._links.append(TunLink(self.ifname, self.mtu, offload=self._link.offload,
                                               exclusive=False, multi_queue=True, queue=q))
            except TunError as exc:
                raise LabError(exc.strerror or str(exc)) from None
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.ifname)
                if not idx:
                    raise LabError(f"TUN device {self.ifname!r} vanished before it could be moved")
                ipr.link("set", index=idx[0], net_ns_fd=self.netns)
            with NetNS(self.netns) as ns:
                idx = ns.link_lookup(ifname=self.ifname)[0]
                ns.link("set", index=idx, mtu=self.mtu, txqlen=self.tun_queue_len)
                self._ifindex = idx
                try:  # no IPv6 link-local address: no RS/MLD/DAD noise into the stack
                    ns.link("set", index=idx, IFLA_AF_SPEC={
                        "attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", 1]]}]]})
                except Exception as exc:  # e.g. IPv6 disabled in the kernel: harmless
                    log.debug("cannot turn off IPv6 address generation: %s", exc)
                ns.addr("add", index=idx, address=self.kernel_addr, prefixlen=self.prefixlen)
                ns.link("set", index=idx, state="up")
                lo = ns.link_lookup(ifname="lo")
                if lo:
                    ns.link("set", index=lo[0], state="up")
                if self.stack_ip not in self.kernel_if.network:
                    ns.route("add", dst=self.stack_addr, dst_len=32, oif=idx)
        except LabError:
            self.down()
            raise
        except Exception as exc:
            self.down()
            code = getattr(exc, "code", None) or getattr(exc, "errno", None)
            if code in (errno.EPERM, errno.EACCES):
                raise LabError("needs root or CAP_NET_ADMIN (run with sudo)") from None
            raise LabError(f"lab set-up failed: {type(exc).__name__}: {exc}") from exc
        log.info("lab up: netns %s, dev %s, kernel %s/%d, stack %s, mtu %d, offloads %s", self.netns, self.ifname,
                 self.kernel_addr, self.prefixlen, self.stack_addr, self.mtu, "on" if self.offload else "off")
        return self

    def down(self) -> None:
        """Remove what ``up()`` created; safe to call twice or after a failed ``up()``.

        Only in the process that ran ``up()``: pyroute2 forks helper processes
        during set-up, and a child unwinding through our ``finally`` blocks must
        not tear down the parent's lab.
        """
        if os.getpid() != self._owner_pid:
            return
        if self._stats_pool is not None:
            try:
                self._stats_pool.submit(self._close_stats_ns).result(timeout=5)
            except Exception as exc:
                log.debug("closing the statistics netlink socket: %s", exc)
            self._stats_pool.shutdown(wait=False)
            self._stats_pool = None
        for link in self._links:
            link.close()                # non-persistent TUN: the kernel deletes the device with its last queue
        self._links = []
        if self._link is not None:
            self._link.close()
            self._link = None
        if self.created_netns:
            from pyroute2 import netns as pr_netns
            try:
                if self.netns in pr_netns.listnetns():     # (create() may have failed before making it)
                    log.info("removing namespace %s", self.netns)
                    pr_netns.remove(self.netns)
            except Exception as exc:
                log.warning("cannot remove namespace %s: %s", self.netns, exc)
            self.created_netns = False

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- the device's statistics ----------------------------------------------------------------
    def device_stats(self, timeout: float = 5.0) -> dict[str, int]:
        """The TUN's statistics as the kernel keeps them (IFLA_STATS64 over netlink, in the lab
        namespace): ``tx_packets``/``tx_dropped`` are packets the kernel sent toward the stack,
        ``rx_*`` what the stack wrote; ``txqlen``.  Empty when the lab is down.  Blocks (at most
        ``timeout`` seconds); inside an event loop use :meth:`device_stats_future`."""
        fut = self.device_stats_future()
        return fut.result(timeout=timeout) if fut is not None else {}

    def device_stats_future(self):
        """:meth:`device_stats` without blocking: a ``concurrent.futures.Future``, or None when the
        lab is down.  pyroute2's synchronous API runs an event loop of its own, so the netlink
        socket lives in one worker thread of the lab's; the stack's loop never waits for it."""
        if self._link is None or self._ifindex is None:
            return None
        if self._stats_pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._stats_pool = ThreadPoolExecutor(1, thread_name_prefix="lab-stats")
        return self._stats_pool.submit(self._read_stats)

    def _close_stats_ns(self) -> None:
        if self._stats_ns is not None:
            ns, self._stats_ns = self._stats_ns, None
            ns.close()

    def _read_stats(self) -> dict[str, int]:
        if self._stats_ns is None:
            # Enter the lab namespace with this worker thread alone (setns(2) moves only the
            # calling thread) and open the netlink socket there.  pyroute2's NetNS would fork a
            # helper and later stop it with SIGTERM, which the forked child reports through
            # asyncio's inherited signal wake-up fd: the stack would take it for its own SIGTERM.
            from pyroute2 import IPRoute
            from pyroute2.netns import setns
            setns(self.netns, flags=0, fork=False)
            self._stats_ns = IPRoute()
        links = self._stats_ns.get_links(self._ifindex)
        if not links:
            return {}
        stats = links[0].get_attr("IFLA_STATS64") or links[0].get_attr("IFLA_STATS") or {}
        out = {k: int(v) for k, v in dict(stats).items() if isinstance(v, int)}
        out["txqlen"] = int(links[0].get_attr("IFLA_TXQLEN") or 0)
        return out

    def update_counters(self, counters, stats: dict[str, int] | None = None) -> dict[str, int]:
        """Add the device's drops since the last reading to ``counters`` (``link.tun.in.drop.queue_full``,
        ``link.tun.out.drop``; see the module doc): of ``stats`` (a :meth:`device_stats` result), or
        of a reading made now (blocking).  Returns the statistics used."""
        if stats is None:
            stats = self.device_stats()
        for key, name in _DROP_COUNTERS.items():
            if key in stats:
                delta = stats[key] - self._last_stats.get(key, 0)
                if delta > 0:
                    counters.inc(name, delta)
                else:
                    counters.inc(name, 0)       # shown, as 0, from the first reading on
        self._last_stats = stats
        return stats

    # -- running things inside -----------------------------------------------------------------
    def run(self, argv, *, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` inside the namespace (bounded by ``timeout``)."""
        return subprocess.run(self.exec_prefix + list(argv), timeout=timeout, **kw)

    def popen(self, argv, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.exec_prefix + list(argv), **kw)

    def __repr__(self) -> str:
        return (f"Lab(netns={self.netns!r}, ifname={self.ifname!r}, kernel={self.kernel_addr}/{self.prefixlen}, "
                f"stack={self.stack_addr}, mtu={self.mtu}, offload={self.want_offload}"
                + (f", queues={self.queues})" if self.queues > 1 else ")"))
