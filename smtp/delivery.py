"""Local delivery: one Maildir per recipient, durable before the 250.

Maildir (the qmail/Courier layout: tmp/, new/, cur/) under a base directory.
For every accepted message:

1. each distinct recipient mailbox gets a copy written to ``tmp/`` (O_EXCL),
   flushed and fsync()ed;
2. only when every copy is in ``tmp/`` are they renamed into ``new/`` and
   each ``new/`` directory is fsync()ed;
3. only then does ``deliver`` return, and only then does the server send 250.

``deliver`` blocks: the server runs it in a small pool of worker threads,
never in the event loop.  The directory fsyncs of step 2 are *group
commits* (:class:`GroupSync`): an fsync of ``new/`` makes durable every
rename made in it before the fsync started, so a delivery whose rename is
covered by an fsync already started waits for the next one and shares it
with every other delivery renamed meanwhile.  A copy's ``deliver`` still
returns only once an fsync that began after its rename has returned.

Any error removes what was written (tmp files, and copies already renamed
into ``new/``) and raises DeliveryError, which the server answers with
451 4.3.0: never a partial file in ``new/``, never a 250 for a copy that is
not on disk.  A process killed before step 2 leaves at most a stale file in
``tmp/`` (Maildir readers ignore tmp/).

Each copy starts with ``Return-Path:`` and a ``Received:`` trace header
(RFC 5321 §4.4) followed by the message exactly as received (CRLF line ends
kept), so the body after the trace headers is byte-for-byte what was sent.

Mailbox names come from the local part only: case-folded, every character
outside ``[a-z0-9_+-.]`` (and a leading dot) written as ``=XX`` hex of its
UTF-8 bytes.  No "/" or leading "." can survive, so there is no path
traversal and no dot file, and distinct names never collide.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import threading
import time
from email.utils import formatdate

from .session import Envelope, split_address

log = logging.getLogger("smtp.delivery")

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_+-.")


class DeliveryError(OSError):
    """A copy could not be made durable; nothing was left in new/."""


def mailbox_name(local_part: str) -> str:
    """A safe directory name for a local part (see the module docstring)."""
    out = []
    for i, ch in enumerate(local_part.casefold()):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    name = "".join(out)
    if not name:
        raise ValueError("empty local part")
    return name


_HEADER_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]\u0080-\U0010ffff]")


def _clean(text: str) -> str:
    return _HEADER_SAFE.sub("?", text)


def trace_headers(envelope: Envelope, queue_id: str, hostname: str, *, when: float | None = None,
                  software: str = "netstack") -> bytes:
    """``Return-Path:`` and ``Received:`` (RFC 5321 §4.4; "with" per RFC 3848/6531)."""
    peer_ip = envelope.peer[0] if envelope.peer else "unknown"
    lines = [f"Return-Path: <{envelope.mail_from}>"]
    lines.append(f"Received: from {_clean(envelope.helo) or 'unknown'} ([{_clean(str(peer_ip))}])")
    with_part = f"\tby {_clean(hostname)} ({software}) with {envelope.protocol}"
    if envelope.tls:
        version, cipher = envelope.tls
        with_part += f" (version={_clean(version)} cipher={_clean(cipher)})"
    lines.append(with_part)
    tail = f"\tid {queue_id}"
    if len(envelope.rcpt_tos) == 1:
        tail += f"\r\n\tfor <{envelope.rcpt_tos[0]}>"
    tail += f"; {formatdate(when, localtime=True)}"
    lines.append(tail)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class GroupSync:
    """Group commit of one directory's fsync, shared by threads (see the module docstring).

    ``sync()`` is called after a rename into the directory and returns once an
    fsync that *started after that call* has returned, so the rename is
    durable.  While one fsync runs, later callers wait; when it ends, one of
    them runs the next fsync for all of them.  A failed fsync raises in the
    thread that ran it; the threads it would have covered run their own.
    ``fsyncs`` counts the fsyncs run, ``requests`` the calls.
    """

    def __init__(self, path: str, fsync_dir=None):
        self.path = path
        self._fsync_dir = fsync_dir or _fsync_dir
        self._cond = threading.Condition()
        self._ticket = 0          # calls so far (each after its rename)
        self._covered = 0         # every call up to this ticket has a completed fsync behind it
        self._running = False
        self.fsyncs = 0
        self.requests = 0

    def sync(self) -> None:
        with self._cond:
            self._ticket += 1
            self.requests += 1
            mine = self._ticket
            while True:
                if self._covered >= mine:
                    return
                if not self._running:
                    self._running = True
                    target = self._ticket      # every rename ticketed so far happened before this fsync
                    break
                self._cond.wait()
        ok = False
        try:
            self._fsync_dir(self.path)
            ok = True
        finally:
            with self._cond:
                self._running = False
                self.fsyncs += 1
                if ok and target > self._covered:
                    self._covered = target
                self._cond.notify_all()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirDelivery:
    """Deliver to ``base_dir/<mailbox_name(local part)>/{tmp,new,cur}``; blocking and thread-safe
    (run it in worker threads: concurrent deliveries share their directory fsyncs)."""

    blocking = True

    def __init__(self, base_dir: str, *, hostname: str = "localhost", fsync: bool = True,
                 software: str = "netstack"):
        self.base_dir = os.path.abspath(base_dir)
        self.hostname = hostname
        self.software = software
        self.fsync = fsync
        self._ready: set[str] = set()
        self._groups: dict[str, GroupSync] = {}
        self._groups_lock = threading.Lock()
        self._seq = itertools.count()
        self._host_tag = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    # -------------------------------------------------------------- public

    def deliver(self, envelope: Envelope, queue_id: str) -> list[str]:
        """Write every recipient's copy durably; returns the paths in new/. Raises DeliveryError."""
        blob = trace_headers(envelope, queue_id, self.hostname, software=self.software) + envelope.content
        boxes: list[str] = []
        for rcpt in envelope.rcpt_tos:
            box = mailbox_name(split_address(rcpt)[0])
            if box not in boxes:          # same mailbox twice in one transaction: one copy
                boxes.append(box)
        try:
            try:
                return self._deliver_copies(boxes, blob)
            except FileNotFoundError:     # a Maildir removed while we run: recreate it, once
                self._ready.clear()
                return self._deliver_copies(boxes, blob)
        except OSError as exc:
            self._ready.clear()
            log.error("delivery %s failed: %s", queue_id, exc)
            raise DeliveryError(exc.errno, f"delivery failed: {exc}") from exc

    def _deliver_copies(self, boxes: list[str], blob: bytes) -> list[str]:
        """All copies into tmp/ (fsync each), then all renames into new/, then fsync each new/."""
        tmp_paths: list[tuple[str, str, str]] = []
        done: list[str] = []
        try:
            for box in boxes:
                maildir = self._ensure_maildir(box)
                name = self._unique_name()
                tmp = os.path.join(maildir, "tmp", name)
                tmp_paths.append((tmp, os.path.join(maildir, "new", name), maildir))
                self._write_tmp(tmp, blob)
            for tmp, new, maildir in tmp_paths:
                os.rename(tmp, new)
                done.append(new)
            for _, _, maildir in tmp_paths:
                self._commit_new(os.path.join(maildir, "new"))
        except OSError:
            self._rollback(tmp_paths, done)
            raise
        return done

    # -------------------------------------------------------------- steps

    def _ensure_maildir(self, box: str) -> str:
        maildir = os.path.join(self.base_dir, box)
        if maildir in self._ready:
            return maildir
        created = False
        if not os.path.isdir(self.base_dir):
            os.makedirs(self.base_dir, exist_ok=True)
            created = True
        for sub in ("", "tmp", "new", "cur"):
            path = os.path.join(maildir, sub)
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o700, exist_ok=True)
                created = True
        if created:   # make the new directory entries themselves durable
            for sub in ("tmp", "new", "cur"):
                self._sync_dir(os.path.join(maildir, sub))
            self._sync_dir(maildir)
            self._sync_dir(self.base_dir)
        self._ready.add(maildir)
        return maildir

    def _unique_name(self) -> str:
        t = time.time()
        sec = int(t)
        usec = int((t - sec) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(self._seq)}R{os.urandom(4).hex()}.{self._host_tag}"

    def _write_tmp(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_dir(self, path: str) -> None:
        if self.fsync:
            _fsync_dir(path)

    def _commit_new(self, path: str) -> None:
        """Make the renames into ``path`` (a ``new/``) durable: a group commit shared with other threads."""
        if not self.fsync:
            return
        group = self._groups.get(path)
        if group is None:
            with self._groups_lock:
                group = self._groups.setdefault(path, GroupSync(path, self._sync_dir))
        group.sync()

    def sync_stats(self) -> tuple[int, int]:
        """(directory fsyncs run, renames they covered) over all ``new/`` directories so far."""
        groups = list(self._groups.values())
        return sum(g.fsyncs for g in groups), sum(g.requests for g in groups)

    def _rollback(self, tmp_paths, done) -> None:
        for path in done:
            try:
                os.unlink(path)
            except OSError:
                pass
        for tmp, _, maildir in tmp_paths:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            try:
                self._sync_dir(os.path.join(maildir, "new"))
            except OSError:
                pass


class MemorySink:
    """Keeps envelopes in memory (tests and benchmarks); never fails."""

    blocking = False

    def __init__(self, keep: bool = True):
        self.keep = keep
        self.count = 0
        self.messages: list[tuple[str, Envelope]] = []

    def deliver(self, envelope: Envelope, queue_id: str) -> list[str]:
        self.count += 1
        if self.keep:
            self.messages.append((queue_id, envelope))
        return []
