"""Worker threads for blocking work (deliveries), their results handed to the event loop in batches.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs, per job, a
``concurrent.futures.Future`` (with its own lock and condition), an asyncio
future chained to it, and one wake-up of the loop (``call_soon_threadsafe``)
per result.  With durable delivery and group commit, results come in bunches:
one directory fsync covers every message renamed before it, and all their
threads return together.  Here a job is a plain tuple on a queue and its
result a plain asyncio future; a worker that finishes puts the outcome on a
list and wakes the loop only when that list was empty, so the results that
end together cost one wake-up, and the loop sets them all in one callback.

A job always runs to its end, even if the future is cancelled meanwhile (the
task awaiting it was shed or shut down): its result is then dropped.  The
threads are started as jobs need them, up to ``workers``; they are daemon
threads, and an ``atexit`` hook lets the jobs under way finish at interpreter
exit (as ``ThreadPoolExecutor`` does), so a delivery is never cut in half.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import weakref

__all__ = ["WorkerPool"]

log = logging.getLogger("smtp.workers")

_live: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


class WorkerPool:
    """Up to ``workers`` threads running ``submit``ted calls for one event loop."""

    def __init__(self, workers: int, *, name: str = "worker") -> None:
        self._max = max(1, workers)
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._done: list = []                # (future, result, exception) finished, not yet handed over
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pending = 0                    # submitted and not yet finished by a worker (under _lock)
        self._closed = False
        self.wakeups = 0                     #: times a worker woke the loop (results hand over in batches)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pool serves (the one of its first ``submit``), or None before."""
        return self._loop

    @property
    def threads(self) -> int:
        """Threads started so far."""
        return len(self._threads)

    @property
    def finished(self) -> int:
        """Jobs finished whose results are not yet handed to the loop."""
        with self._lock:
            return len(self._done)

    def submit(self, fn, *args) -> asyncio.Future:
        """Run ``fn(*args)`` in a worker; returns a future of this loop with its result (or exception).
        Call from the event loop's thread."""
        fut = self._bind().create_future()
        self._put((fn, args, fut))
        return fut

    def call(self, fn, args: tuple, done) -> None:
        """Run ``fn(*args)`` in a worker, then ``done(result, exception)`` in the loop, called from
        the hand-over itself (no future, no task to wake: the cheaper form of :meth:`submit` for
        callback-driven code).  Call from the event loop's thread."""
        self._bind()
        self._put((fn, args, done))

    def _bind(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            _live.add(self)
        elif loop is not self._loop:
            raise RuntimeError("a worker pool serves one event loop")
        return loop

    def _put(self, job) -> None:
        with self._lock:
            self._pending += 1
            pending = self._pending
        self._jobs.put(job)
        # a thread more only when every thread has a job: results waiting for the loop do not
        # count (a busy loop picks them up late), so quick jobs keep to few threads (fewer
        # threads waking, fewer contending for the GIL) and slow ones (an fsync) get many
        if pending > len(self._threads) and len(self._threads) < self._max:
            t = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, fut = job
            try:
                outcome = (fut, fn(*args), None)
            except BaseException as exc:     # noqa: BLE001 - handed to the awaiting task
                outcome = (fut, None, exc)
            with self._lock:
                self._pending -= 1
                self._done.append(outcome)
                first = len(self._done) == 1
            if first:
                try:
                    self._loop.call_soon_threadsafe(self._hand_over)
                    self.wakeups += 1
                except RuntimeError:         # the loop is closed: nobody waits for the result
                    pass

    def _hand_over(self) -> None:
        """Hand the finished jobs' outcomes to the loop: set each future, call each ``call()``
        callback.  Each outcome is handed over on its own, so one that fails never keeps the others
        from theirs: an ``Exception`` from a callback goes to the loop's exception handler; a
        ``BaseException`` that is not one (``KeyboardInterrupt``, ``SystemExit``, ...) is raised
        again once every other outcome of the batch has been handed over (the first, if several:
        the others are logged)."""
        with self._lock:
            done, self._done = self._done, []
        fatal = None
        for fut, result, exc in done:
            try:
                self._hand_one(fut, result, exc)
            except Exception as cb_exc:   # noqa: BLE001 - one failing callback must not lose the others
                self._loop.call_exception_handler({"message": "worker pool: result callback failed",
                                                   "exception": cb_exc})
            except BaseException as cb_exc:   # noqa: BLE001 - raised again after the others
                if fatal is None:
                    fatal = cb_exc
                else:
                    log.error("worker pool: result callback raised %r (after %r)", cb_exc, fatal)
        if fatal is not None:
            raise fatal

    @staticmethod
    def _hand_one(fut, result, exc) -> None:
        if not isinstance(fut, asyncio.Future):     # call(): a plain callback
            fut(result, exc)
            return
        if fut.cancelled():
            if exc is not None and not isinstance(exc, Exception):
                log.error("worker job raised %r after its waiter went away", exc)
            return
        if exc is None:
            fut.set_result(result)
            return
        if isinstance(exc, StopIteration):          # a future refuses it (TypeError): as PEP 479 does
            err = RuntimeError(f"worker job raised {type(exc).__name__}")
            err.__cause__ = exc
            exc = err
        fut.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        """No more jobs; the threads end once the queued jobs are done (joined if ``wait``)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for t in self._threads:
                t.join()


@atexit.register
def _finish_at_exit() -> None:
    """Let the jobs under way finish before the interpreter goes (daemon threads would be cut)."""
    for pool in list(_live):
        pool.shutdown(wait=True)
