"""The TUN driver: raw IPv4 packets to and from the Linux kernel.

Opened with python-pytun as ``IFF_TUN | IFF_NO_PI`` (no 4-byte packet-info
prefix: each read returns exactly one IPv4 packet) and ``IFF_TUN_EXCL`` (fail
with EBUSY rather than attach to somebody else's device of the same name).
The fd is non-blocking; :meth:`TunLink.recv_batch` reads packets with
``os.readv`` straight into a ring of preallocated bytearrays until the kernel
queue is empty or the batch is full, and hands out memoryviews of them: no
allocation per packet beyond the view itself.

The device is not persistent: closing the fd makes the kernel delete it, in
whatever namespace it lives, even when the process dies by SIGKILL.
"""
from __future__ import annotations

import errno
import os

try:
    import pytun
except ImportError:             # not Linux, or installed without it: TunLink says what it needs
    pytun = None

from netstack.link.base import Link, PacketMeta

__all__ = ["TunLink", "TunError", "IFF_TUN_EXCL", "MISSING_PYTUN"]

IFF_TUN_EXCL = getattr(pytun, "IFF_TUN_EXCL", 0x8000)
MISSING_PYTUN = ("the TUN device needs Linux and python-pytun, which is not installed "
                 "(pip install python-pytun; netstack installs it on Linux only)")
#: one read never returns more than this (max IPv4 datagram; room for GSO later)
READ_BUFFER_SIZE = 65536 + 64


class TunError(OSError):
    """The TUN device could not be created (the message says why, in one line)."""


class TunLink(Link):
    """A Linux TUN device as a :class:`Link`.

    ``TunLink(name, mtu)`` creates (or fails for an existing) device ``name``.
    The MTU given here is what the stack uses; the lab sets the device's MTU
    over netlink.
    """

    def __init__(self, name: str, mtu: int = 1500, *, batch: int = 64, exclusive: bool = True) -> None:
        if pytun is None:
            raise TunError(errno.ENOSYS, MISSING_PYTUN)
        if not name or len(name) > 15:
            raise TunError(errno.EINVAL, f"bad interface name {name!r} (1..15 characters)")
        flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (IFF_TUN_EXCL if exclusive else 0)
        try:
            self._dev = pytun.TunTapDevice(name=name, flags=flags)
        except pytun.Error as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            text = str(exc.args[1] if len(exc.args) > 1 else exc)
            if code in (errno.EBUSY, errno.EEXIST) or "busy" in text.lower():
                raise TunError(errno.EBUSY, f"device name {name!r} is already in use") from None
            if code in (errno.EPERM, errno.EACCES):
                raise TunError(errno.EPERM, "creating a TUN device needs root or CAP_NET_ADMIN") from None
            if code == errno.ENOENT or "No such file" in text:
                raise TunError(errno.ENOENT, "/dev/net/tun is missing (load the tun module)") from None
            if code == errno.EINVAL:
                raise TunError(errno.EINVAL, f"device name {name!r} is in use by a non-TUN device") from None
            raise TunError(code or errno.EIO, f"cannot create TUN device {name!r}: {text}") from None
        self.ifname = self._dev.name
        self.name = f"tun:{self.ifname}"
        self.mtu = mtu
        self._fd = self._dev.fileno()
        os.set_blocking(self._fd, False)
        self._bufs = [bytearray(READ_BUFFER_SIZE) for _ in range(batch)]
        self._views = [memoryview(b) for b in self._bufs]
        self._iov = [[b] for b in self._bufs]          # one reusable iovec list per buffer
        self._loop = None
        self.closed = False
        self.rx_packets = 0
        self.tx_packets = 0
        self.tx_errors = 0
        self.rx_batches = 0

    def fileno(self) -> int:
        return self._fd

    def send(self, data, meta: PacketMeta | None = None) -> None:
        try:
            os.write(self._fd, data)
            self.tx_packets += 1
        except (BlockingIOError, InterruptedError):
            self.tx_errors += 1            # kernel queue full: the packet is lost, as on a wire
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.ENOBUFS):
                self.tx_errors += 1        # device down / bad packet: counted, never fatal
            else:
                raise

    def recv_batch(self, max_packets: int = 64):
        fd = self._fd
        readv = os.readv
        iov = self._iov
        views = self._views
        out = []
        n_max = min(max_packets, len(iov))
        for i in range(n_max):
            try:
                n = readv(fd, iov[i])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EBADFD, errno.EIO):   # device gone
                    break
                raise
            out.append((views[i][:n], None))
        if out:
            self.rx_packets += len(out)
            self.rx_batches += 1
        return out

    def attach(self, loop, on_readable) -> None:
        self._loop = loop
        loop.add_reader(self._fd, on_readable)

    def detach(self) -> None:
        if self._loop is not None:
            try:
                self._loop.remove_reader(self._fd)
            except Exception:  # loop already closed
                pass
            self._loop = None

    def close(self) -> None:
        if self.closed:
            return
        self.detach()
        self.closed = True
        try:
            self._dev.close()
        except Exception:
            pass
