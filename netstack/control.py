"""The control socket of a running stack: where ``netstack ss`` and ``netstack stats`` ask.

A thin asyncio driver beside the stack, in the stack's own loop: it reads the
stack's state (:func:`netstack.sockets.table.snapshot`, the counters, the
gauges of :mod:`netstack.mib`) and never changes it.  No sans-I/O core knows it
exists.

**Where.**  A Unix stream socket, by default ``/run/netstack/<netns>.sock``
(:func:`default_path`), created with mode 0600 (the umask is set around
``bind()``, so it is never reachable by others, even for an instant) and owned
by whoever runs the stack, root for ``netstack serve``: nobody else may
connect.  A stale socket left by a killed server is replaced; one that a
running server still answers is not (:class:`ControlSocketBusy`).  The file
is removed at :meth:`ControlServer.close`.

**Protocol.**  One request per line, a JSON object with an ``"op"``; one reply
per line, a JSON object with ``"ok"``.  The connection stays open for more
requests until the client closes it or is idle for :data:`IDLE_TIMEOUT`
seconds.

===============================  ==================================================================
request                          reply
===============================  ==================================================================
``{"op": "ss"}``                 ``{"ok": true, "ss": <snapshot>}`` (netstack.sockets.table)
``{"op": "stats"}``              ``{"ok": true, "counters": {...}, "mib": {...}, "gauges": {...},
                                 "unmapped": {...}, "interval": null, ...}``
``{"op": "stats",                the counters' change since the previous delta request on this
"delta": true}``                 stack (since start for the first), like nstat; ``interval``: the
                                 seconds it covers
``{"op": "ping"}``               ``{"ok": true, "pid": ..., "addr": ..., "uptime": ...}``
anything else                    ``{"ok": false, "error": "<one line>"}``; the stack keeps running
===============================  ==================================================================

A request line longer than :data:`MAX_REQUEST` bytes gets the error reply and
the connection is closed; at most :data:`MAX_CLIENTS` clients at once.
"""
from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import os
import socket
import stat
import time
from typing import Callable

from netstack import mib
from netstack.sockets.table import snapshot

__all__ = ["ControlServer", "ControlSocketBusy", "CounterDeltas", "stats_reply", "default_path", "RUN_DIR", "MAX_REQUEST", "IDLE_TIMEOUT"]

log = logging.getLogger("netstack.control")

#: where the control sockets live, one per lab namespace
RUN_DIR = "/run/netstack"
#: the longest request line accepted, in bytes
MAX_REQUEST = 4096
#: seconds a client may stay silent before it is disconnected
IDLE_TIMEOUT = 30.0
#: clients served at once
MAX_CLIENTS = 16


class ControlSocketBusy(OSError):
    """Another running stack answers on that control socket."""


def default_path(netns: str) -> str:
    """``/run/netstack/<netns>.sock``; ValueError for a name that is not one path component."""
    if not netns or "/" in netns or netns in (".", "..") or "\0" in netns:
        raise ValueError(f"not a namespace name: {netns!r}")
    return os.path.join(RUN_DIR, f"{netns}.sock")


class ControlServer:
    """Answer ``ss``/``stats``/``ping`` requests about ``stack`` on the Unix socket ``path``.

    ``extra_counters``: a callable returning more counters to report with the
    stack's own (``netstack serve`` adds the fault injector's ``faults.*``).
    ``handler``: answer with this instead of :meth:`handle` (a request line in,
    the reply out; may be a coroutine function): ``netstack serve --workers``
    answers for several stacks in other processes, with ``stack`` None.
    """

    def __init__(self, stack, path: str, *, extra_counters: Callable[[], dict[str, int]] | None = None,
                 handler: Callable | None = None) -> None:
        self.stack = stack
        self._handler = handler if handler is not None else self.handle
        self.path = path
        self.extra_counters = extra_counters
        self.started_at = time.monotonic()
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._clients = 0
        self._writers: set = set()
        self._deltas = CounterDeltas(self.started_at)

    # -- the requests (pure: a line in, a reply out) ---------------------------------------------
    def handle(self, line: bytes) -> dict:
        """The reply to one request line; never raises."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(f"malformed request: not JSON ({exc})")
        if not isinstance(request, dict):
            return _error("malformed request: not a JSON object")
        op = request.get("op")
        try:
            if op == "ss":
                return {"ok": True, "ss": snapshot(self.stack)}
            if op == "stats":
                delta = request.get("delta", False)
                if not isinstance(delta, bool):
                    return _error("malformed request: 'delta' must be true or false")
                return self._stats(delta)
            if op == "ping":
                return {"ok": True, **self._identity()}
        except Exception as exc:           # a bug in a reader must not take the stack down
            log.exception("control request %r failed", op)
            return _error(f"internal error: {type(exc).__name__}: {exc}")
        return _error(f"unknown op {op!r} (known: ss, stats, ping)")

    def _identity(self) -> dict:
        from netstack.wire.ipv4 import int2ip
        return {"pid": os.getpid(), "addr": int2ip(self.stack.addr),
                "uptime": round(time.monotonic() - self.started_at, 3)}

    def _stats(self, delta: bool) -> dict:
        counters = self.stack.counters.snapshot()
        if self.extra_counters is not None:
            counters.update(self.extra_counters())
        return stats_reply(self._identity(), counters, mib.gauges(self.stack), self._deltas if delta else None)

    # -- the socket ---------------------------------------------------------------------------------
    async def start(self) -> "ControlServer":
        """Create the socket (mode 0600) and start serving; ControlSocketBusy if a running
        server answers there, OSError if it cannot be made."""
        directory = os.path.dirname(self.path) or "."
        os.makedirs(directory, mode=0o755, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(MAX_CLIENTS)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._client, sock=sock, limit=MAX_REQUEST)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        log.info("control socket %s", self.path)
        return self

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)                # left behind by a server that is gone
            return
        except OSError:
            pass
        finally:
            probe.close()
        raise ControlSocketBusy(errno.EADDRINUSE, f"{self.path} is in use by a running netstack")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        self._writers.add(writer)
        try:
            if self._clients > MAX_CLIENTS:
                await _reply(writer, _error("busy: too many control clients"))
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except asyncio.TimeoutError:
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    await _reply(writer, _error(f"malformed request: longer than {MAX_REQUEST} bytes"))
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                reply = self._handler(line)
                if inspect.isawaitable(reply):
                    reply = await reply
                await _reply(writer, reply)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients -= 1
            self._writers.discard(writer)
            writer.close()

    def close(self) -> None:
        """Stop answering and remove the socket file (only if it is still ours)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._unlink()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    def _unlink(self) -> None:
        if self._inode is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._inode = None


class CounterDeltas:
    """What a ``delta`` stats request reports: the counters' change since the previous one
    (since ``start``, a ``time.monotonic()`` instant, for the first), as nstat does."""

    def __init__(self, start: float) -> None:
        self._base: dict[str, int] = {}
        self._at = start

    def take(self, counters: dict[str, int]) -> tuple[dict[str, int], float]:
        """(the change of each counter, the seconds it covers); the next delta starts now."""
        now = time.monotonic()
        base, self._base = self._base, dict(counters)
        interval, self._at = now - self._at, now
        return {k: v - base.get(k, 0) for k, v in counters.items()}, interval


def stats_reply(identity: dict, counters: dict[str, int], gauges: dict[str, int],
                deltas: CounterDeltas | None) -> dict:
    """The reply to ``{"op": "stats"}``: ``counters`` as they are (``deltas`` None) or as their change
    since the previous delta request, under the MIB names and their own (see the module doc)."""
    interval = None
    if deltas is not None:
        counters, interval = deltas.take(counters)
    return {"ok": True, **identity, "delta": deltas is not None, "interval": interval,
            "mib": mib.mib_values(counters), "gauges": gauges,
            "unmapped": mib.unmapped(counters), "counters": dict(sorted(counters.items()))}


def _error(message: str) -> dict:
    return {"ok": False, "error": message}


async def _reply(writer: asyncio.StreamWriter, obj: dict) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()
