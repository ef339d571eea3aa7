"""The lab: a network namespace with the kernel on one end of our TUN.

``Lab`` sets up, over netlink with pyroute2 (never by running ``ip``):

1. the namespace (default ``netstack``), created only if it does not exist;
2. a TUN device opened by this process (in the caller's namespace, with no
   address there; with TSO/checksum offloads where the kernel offers them,
   ``offload=False`` for plain packets) and moved at once into the lab namespace;
3. inside the namespace: the device's MTU, the kernel side's address
   (default 198.18.0.1/24), IPv6 link-local generation off (so the kernel
   sends no router solicitations or MLD reports into the stack), the device
   and ``lo`` up; a host route to the stack's address when it lies outside the
   kernel's prefix.

The stack owns the other address (default 198.18.0.2): it is not configured
on any device, the stack answers for it.  ``down()`` (also on ``with`` exit,
exceptions included) removes exactly what ``up()`` created: closing the
non-persistent TUN deletes the device; the namespace is removed only if we
created it.

Safety: no address is ever put on a device in the caller's namespace.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import subprocess

from netstack.link.tun import TunError, TunLink

__all__ = ["Lab", "LabError", "have_net_admin", "check_privileges", "missing_dependencies", "parse_v4"]

log = logging.getLogger("netstack.link.lab")

CAP_NET_ADMIN = 12
TUN_PATH = "/dev/net/tun"


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
                 stack_addr: str = "198.18.0.2", mtu: int = 1500, offload: bool = True) -> None:
        """``offload``: open the TUN with the virtio-net header and TSO/checksum offloads
        where the kernel offers them (:class:`~netstack.link.tun.TunLink`; a clean
        fallback otherwise); :attr:`offload` says what is active once up."""
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
        if self.stack_ip == self.kernel_if.ip:
            raise LabError(f"stack address {self.stack_ip} equals the peer address")
        self.mtu = mtu
        self.want_offload = offload
        self.kernel_addr = str(self.kernel_if.ip)
        self.stack_addr = str(self.stack_ip)
        self.prefixlen = self.kernel_if.network.prefixlen
        self.created_netns = False
        self._link: TunLink | None = None
        self._owner_pid = os.getpid()

    # -- set-up / teardown --------------------------------------------------------------------
    @property
    def link(self) -> TunLink:
        if self._link is None:
            raise LabError("lab is not up")
        return self._link

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

        check_privileges()
        self._owner_pid = os.getpid()
        try:
            if self.netns not in pr_netns.listnetns():
                pr_netns.create(self.netns)
                self.created_netns = True
                log.info("created namespace %s", self.netns)
            else:
                with NetNS(self.netns) as ns:
                    if ns.link_lookup(ifname=self.ifname):
                        raise LabError(f"device name {self.ifname!r} is already in use in namespace {self.netns!r}")
            try:
                self._link = TunLink(self.ifname, self.mtu, offload=self.want_offload)
            except TunError as exc:
                raise LabError(exc.strerror or str(exc)) from None
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.ifname)
                if not idx:
                    raise LabError(f"TUN device {self.ifname!r} vanished before it could be moved")
                ipr.link("set", index=idx[0], net_ns_fd=self.netns)
            with NetNS(self.netns) as ns:
                idx = ns.link_lookup(ifname=self.ifname)[0]
                ns.link("set", index=idx, mtu=self.mtu)
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
        if self._link is not None:
            self._link.close()          # non-persistent TUN: the kernel deletes the device
            self._link = None
        if self.created_netns:
            from pyroute2 import netns as pr_netns
            try:
                log.info("removing namespace %s", self.netns)
                pr_netns.remove(self.netns)
            except Exception as exc:
                log.warning("cannot remove namespace %s: %s", self.netns, exc)
            self.created_netns = False

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- running things inside -----------------------------------------------------------------
    def run(self, argv, *, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """``subprocess.run`` inside the namespace (bounded by ``timeout``)."""
        return subprocess.run(self.exec_prefix + list(argv), timeout=timeout, **kw)

    def popen(self, argv, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.exec_prefix + list(argv), **kw)

    def __repr__(self) -> str:
        return (f"Lab(netns={self.netns!r}, ifname={self.ifname!r}, kernel={self.kernel_addr}/{self.prefixlen}, "
                f"stack={self.stack_addr}, mtu={self.mtu}, offload={self.want_offload})")
