"""Standard exceptions for the socket layer.

The socket API raises exactly what Python's own sockets raise, so code written
for the kernel's sockets catches the same classes (RFC 9293 §3.10 names the
user-visible errors; these are their Python spellings):

- ``ConnectionRefusedError`` (ECONNREFUSED): a RST answered our SYN (§3.10.7.3).
- ``ConnectionResetError`` (ECONNRESET): the peer reset an open connection (§3.10.7.4).
- ``TimeoutError`` (ETIMEDOUT): retransmissions exhausted (RFC 6298 / RFC 1122 R2),
  or a blocking call's ``settimeout`` elapsed.
- ``BrokenPipeError`` (EPIPE): writing after ``shutdown(SHUT_WR)`` or after the
  connection ended.
- ``OSError(EADDRINUSE)``: a listener already holds the port.
"""
from __future__ import annotations

import errno
import os

from netstack.tcp.events import ConnEvent

__all__ = ["refused", "reset", "timed_out", "broken_pipe", "addr_in_use", "not_connected",
           "error_for_event", "connection_error", "with_errno"]


def _err(cls, code: int, extra: str = ""):
    msg = os.strerror(code)
    if extra:
        msg = f"{msg}: {extra}"
    return cls(code, msg)


def refused(extra: str = "") -> ConnectionRefusedError:
    return _err(ConnectionRefusedError, errno.ECONNREFUSED, extra)


def reset(extra: str = "") -> ConnectionResetError:
    return _err(ConnectionResetError, errno.ECONNRESET, extra)


def timed_out(extra: str = "") -> TimeoutError:
    return _err(TimeoutError, errno.ETIMEDOUT, extra)


def broken_pipe(extra: str = "") -> BrokenPipeError:
    return _err(BrokenPipeError, errno.EPIPE, extra)


def addr_in_use(extra: str = "") -> OSError:
    return _err(OSError, errno.EADDRINUSE, extra)


def not_connected(extra: str = "") -> OSError:
    return _err(OSError, errno.ENOTCONN, extra)


_BY_EVENT = {
    ConnEvent.REFUSED: refused,
    ConnEvent.RESET: reset,
    ConnEvent.TIMEOUT: timed_out,
}


def error_for_event(event: ConnEvent) -> OSError | None:
    """The exception a connection-ending event stands for (None for a clean end)."""
    make = _BY_EVENT.get(event)
    return make() if make else None


_ERRNO_OF = (
    (ConnectionRefusedError, errno.ECONNREFUSED),
    (ConnectionResetError, errno.ECONNRESET),
    (ConnectionAbortedError, errno.ECONNABORTED),
    (BrokenPipeError, errno.EPIPE),
    (TimeoutError, errno.ETIMEDOUT),
)


def with_errno(exc: BaseException) -> BaseException:
    """``exc`` with its ``errno`` filled in (as the kernel's sockets would), if it lacks one."""
    if isinstance(exc, OSError) and exc.errno is None:
        for cls, code in _ERRNO_OF:
            if isinstance(exc, cls):
                detail = str(exc)
                new = _err(type(exc), code, detail if detail != os.strerror(code) else "")
                new.__cause__ = exc.__cause__
                return new
    return exc


def connection_error(conn, event: ConnEvent | None = None) -> BaseException | None:
    """The error that ended ``conn``: its own ``error`` attribute if the TCP layer
    set one (with ``errno`` filled in), else the standard exception for ``event``."""
    exc = getattr(conn, "error", None)
    if isinstance(exc, BaseException):
        return with_errno(exc)
    if event is not None:
        return error_for_event(event)
    return None
