"""Socket options shared by the blocking facade and the asyncio transport's socket.

One table says which ``(level, optname)`` pairs netstack understands and how
each is validated, the way Linux validates them:

=================================  =============================================
``IPPROTO_TCP, TCP_NODELAY``       0/1: Nagle off/on (``Connection.set_nodelay``)
``SOL_SOCKET, SO_KEEPALIVE``       0/1: keep-alive probes (RFC 1122 §4.2.3.6)
``IPPROTO_TCP, TCP_KEEPIDLE``      1..32767 s of silence before the first probe
``IPPROTO_TCP, TCP_KEEPINTVL``     1..32767 s between probes
``IPPROTO_TCP, TCP_KEEPCNT``       1..127 unanswered probes before ETIMEDOUT
``IPPROTO_TCP, TCP_CONGESTION``    bytes or str: ``b"cubic"`` (RFC 9438) or ``b"newreno"``
                                   (``b"reno"`` too); ``getsockopt`` gives the name as bytes
``SOL_SOCKET, SO_RCVBUF``          bytes, 1..2**31-1: the receive buffer, fixed (autotuning
                                   stops for the connection, as on Linux; never below what
                                   the window already promised: ``Connection.set_rcvbuf``);
                                   ``getsockopt`` gives the size in force (not doubled as
                                   Linux reports it: netstack counts payload bytes only)
``SOL_SOCKET, SO_REUSEADDR``       0/1: accepted and remembered, no effect
``SOL_SOCKET, SO_TYPE``            read-only: ``SOCK_STREAM``
=================================  =============================================

An option outside the table raises ``OSError(ENOPROTOOPT)``, a value out of
range (or an unknown congestion control, as Linux says ``ENOENT``) ``OSError(EINVAL)``
/ ``OSError(ENOENT)``.  :class:`SocketOptions` keeps the values set on a
socket before its connection exists and applies them once it does;
:func:`apply` and :meth:`SocketOptions.apply` act on a
:class:`~netstack.tcp.Connection` and must run in the stack's loop thread.
"""
from __future__ import annotations

import errno
import socket as _socket
import sys

__all__ = ["SocketOptions", "parse", "apply", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_CONGESTION"]

SOL_SOCKET = _socket.SOL_SOCKET
IPPROTO_TCP = _socket.IPPROTO_TCP
TCP_NODELAY = _socket.TCP_NODELAY
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_RCVBUF = _socket.SO_RCVBUF
SO_TYPE = _socket.SO_TYPE
# Linux's numbers, for platforms whose socket module lacks them.
TCP_KEEPIDLE = getattr(_socket, "TCP_KEEPIDLE", 4)
TCP_KEEPINTVL = getattr(_socket, "TCP_KEEPINTVL", 5)
TCP_KEEPCNT = getattr(_socket, "TCP_KEEPCNT", 6)
TCP_CONGESTION = getattr(_socket, "TCP_CONGESTION", 13)

#: (level, optname) -> option name.
_NAMES = {
    (IPPROTO_TCP, TCP_NODELAY): "nodelay",
    (SOL_SOCKET, SO_KEEPALIVE): "keepalive",
    (IPPROTO_TCP, TCP_KEEPIDLE): "keepidle",
    (IPPROTO_TCP, TCP_KEEPINTVL): "keepintvl",
    (IPPROTO_TCP, TCP_KEEPCNT): "keepcnt",
    (SOL_SOCKET, SO_REUSEADDR): "reuseaddr",
    (IPPROTO_TCP, TCP_CONGESTION): "congestion",
    (SOL_SOCKET, SO_RCVBUF): "rcvbuf",
}
#: Integer options and their ranges (Linux: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT);
#: the others are booleans.
_RANGES = {"keepidle": (1, 32767), "keepintvl": (1, 32767), "keepcnt": (1, 127), "rcvbuf": (1, 2**31 - 1)}
#: The Connection attribute behind each TCP option.
_ATTRS = {"congestion": "congestion", "nodelay": "nodelay", "keepalive": "keepalive", "keepidle": "keepalive_idle",
          "keepintvl": "keepalive_interval", "keepcnt": "keepalive_count", "rcvbuf": "rcvbuf"}
#: The TCPConfig field giving each option's value before a connection exists.
_CONFIG = {"congestion": "congestion", "nodelay": "nodelay", "keepalive": "keepalive", "keepidle": "keepalive_idle",
           "keepintvl": "keepalive_interval", "keepcnt": "keepalive_probes", "rcvbuf": "rcvbuf"}


def _no_option() -> OSError:
    return OSError(errno.ENOPROTOOPT, "Protocol not available")


def _as_int(value) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return int.from_bytes(bytes(value), sys.byteorder, signed=True)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return int(value.__index__())
        except AttributeError:
            raise TypeError(f"an integer is required, not {type(value).__name__}") from None
    return value


def _congestion_name(value) -> str:
    """TCP_CONGESTION's value: a name as bytes (NUL-padded, as C passes it) or str."""
    from netstack.tcp.congestion import ALGORITHMS
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"TCP_CONGESTION takes a name (bytes), not {type(value).__name__}")
    if text == "reno":
        text = "newreno"
    if text not in ALGORITHMS:
        raise OSError(errno.ENOENT, f"No such file or directory (congestion control {text!r}; "
                                    f"known: {', '.join(ALGORITHMS)})")
    return text


def parse(level: int, optname: int, value) -> tuple[str, int | str]:
    """Validate a ``setsockopt`` call: ``(option name, value)``.

    ``value`` is an int or a bytes-like (a C int, as ``socket.setsockopt``
    passes it).  Raises ``OSError(ENOPROTOOPT)`` for an unknown option,
    ``OSError(EINVAL)`` for an out-of-range value."""
    name = _NAMES.get((level, optname))
    if name is None:
        raise _no_option()
    if name == "congestion":
        return name, _congestion_name(value)
    n = _as_int(value)
    bounds = _RANGES.get(name)
    if bounds is None:
        return name, int(n != 0)
    if not bounds[0] <= n <= bounds[1]:
        raise OSError(errno.EINVAL, f"Invalid argument ({name} must be {bounds[0]}..{bounds[1]}, not {n})")
    return name, n


def apply(conn, values: dict) -> None:
    """Set the options in ``values`` (``{name: int}`` from :func:`parse`) on ``conn``."""
    if "nodelay" in values:
        conn.set_nodelay(bool(values["nodelay"]))
    if "congestion" in values:
        conn.set_congestion(values["congestion"])
    if "rcvbuf" in values:
        conn.set_rcvbuf(values["rcvbuf"])
    keep = {k: values[k] for k in ("keepalive", "keepidle", "keepintvl", "keepcnt") if k in values}
    if keep:
        conn.set_keepalive(bool(keep.get("keepalive", conn.keepalive)), idle=keep.get("keepidle"),
                           interval=keep.get("keepintvl"), count=keep.get("keepcnt"))


def _option(level: int, optname: int) -> str:
    if (level, optname) == (SOL_SOCKET, SO_TYPE):
        return "type"
    name = _NAMES.get((level, optname))
    if name is None:
        raise _no_option()
    return name


class SocketOptions:
    """The options set on a socket, kept until (and after) it has a connection.

    ``values`` holds only what was set; :meth:`get` falls back on ``defaults``
    (an object with :class:`~netstack.tcp.TCPConfig`'s keep-alive fields)."""

    def __init__(self, values: dict | None = None) -> None:
        self.values: dict[str, int] = dict(values or {})

    def set(self, level: int, optname: int, value) -> dict:
        """Validate and remember one option; returns ``{name: value}`` to :func:`apply`."""
        name, n = parse(level, optname, value)
        self.values[name] = n
        return {name: n}

    def get(self, level: int, optname: int, conn=None, defaults=None, buflen: int = 0):
        """``getsockopt``: the value in force on ``conn`` if there is one, else
        the value set, else the default from ``defaults`` (a TCPConfig).
        Seconds are whole, as Linux reports them.  TCP_CONGESTION gives the
        name as bytes (NUL-padded to ``buflen`` if one is given, as Linux)."""
        name = _option(level, optname)
        if name == "type":
            return _socket.SOCK_STREAM
        if name == "congestion":
            from netstack.tcp.congestion import DEFAULT
            if conn is not None:
                text = conn.congestion
            else:
                text = self.values.get(name) or getattr(defaults, "congestion", None) or DEFAULT
            raw = text.encode()
            return raw.ljust(buflen, b"\0")[:buflen] if buflen else raw
        if conn is not None and name in _ATTRS:
            return int(getattr(conn, _ATTRS[name]))
        if name in self.values:
            return self.values[name]
        field = _CONFIG.get(name)
        if field is None or defaults is None:
            return 0
        return int(getattr(defaults, field))

    def apply(self, conn) -> None:
        """Set every option given so far on ``conn`` (loop thread)."""
        apply(conn, self.values)

    def copy(self) -> "SocketOptions":
        return SocketOptions(self.values)
