"""smtp.workers.WorkerPool: blocking jobs in threads, results handed to the loop in batches."""
from __future__ import annotations

import asyncio
import threading

import pytest

from smtp.workers import WorkerPool


def test_results_and_exceptions_reach_the_awaiting_task():
    async def main():
        pool = WorkerPool(2, name="t")

        def boom():
            raise OSError(28, "No space left on device")

        assert await pool.submit(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(OSError) as err:
            await pool.submit(boom)
        assert err.value.errno == 28
        pool.shutdown()

    asyncio.run(main())


def test_results_that_end_together_cost_one_wakeup_of_the_loop():
    """Five jobs end while the loop is busy: the first result wakes it, the other four ride along."""
    async def main():
        pool = WorkerPool(5, name="t")
        finished = threading.Semaphore(0)

        def job(i):
            finished.release()
            return i

        futs = [pool.submit(job, i) for i in range(5)]
        for _ in range(5):                    # the loop is busy (blocked here) while all five end
            assert finished.acquire(timeout=5)
        for _ in range(5000):                 # each worker puts its result down (the loop still busy)
            if pool.finished == 5:
                break
            threading.Event().wait(0.001)
        results = await asyncio.gather(*futs)
        pool.shutdown()
        return results, pool.wakeups

    results, wakeups = asyncio.run(main())
    assert results == [0, 1, 2, 3, 4]
    assert wakeups == 1


def test_a_job_runs_to_its_end_when_its_waiter_is_cancelled():
    async def main():
        pool = WorkerPool(1, name="t")
        go, done = threading.Event(), []

        def job():
            go.wait(5)
            done.append("written")
            return "ok"

        task = asyncio.ensure_future(pool.submit(job))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go.set()
        assert await pool.submit(lambda: "next") == "next"     # the pool goes on serving
        pool.shutdown()
        return done

    assert asyncio.run(main()) == ["written"]


def test_threads_start_as_needed_up_to_the_limit_and_shutdown_waits_for_queued_jobs():
    async def main():
        pool = WorkerPool(3, name="t")
        assert pool.threads == 0
        assert await pool.submit(lambda: 1) == 1
        assert pool.threads == 1                       # one job at a time: one thread
        gate = threading.Event()
        ran = []

        def slow(i):
            gate.wait(5)
            ran.append(i)

        futs = [pool.submit(slow, i) for i in range(10)]
        assert pool.threads == 3
        gate.set()
        pool.shutdown(wait=True)                       # the ten queued jobs all run first
        assert sorted(ran) == list(range(10))
        await asyncio.gather(*futs)
        with pytest.raises(RuntimeError):
            pool.submit(lambda: 0)

    asyncio.run(main())


def test_call_hands_the_result_or_exception_to_its_callback_inside_the_hand_over():
    """``call``: no future; the callback runs in the loop, from the hand-over itself, with
    (result, None) or (None, exception); a failing callback does not lose the others."""
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx["exception"]))
        pool = WorkerPool(2, name="t")
        got = []
        done = asyncio.Event()

        def record(tag):
            def cb(result, exc):
                got.append((tag, result, type(exc).__name__ if exc else None, threading.current_thread()))
                if len(got) == 3:
                    done.set()
            return cb

        def boom():
            raise OSError(28, "No space left on device")

        def bad_callback(result, exc):
            raise RuntimeError("callback bug")

        pool.call(lambda a, b: a * b, (6, 7), record("mul"))
        pool.call(boom, (), record("boom"))
        pool.call(lambda: None, (), bad_callback)
        pool.call(lambda: "last", (), record("last"))
        await asyncio.wait_for(done.wait(), 5)
        pool.shutdown()
        return got, errors

    got, errors = asyncio.run(main())
    assert sorted((t, r, e) for t, r, e, _ in got) == [("boom", None, "OSError"), ("last", "last", None),
                                                         ("mul", 42, None)]
    assert all(th is threading.main_thread() for *_, th in got)
    assert [type(e) for e in errors] == [RuntimeError]


def test_a_finished_job_waiting_for_the_loop_does_not_start_another_thread():
    """Quick jobs keep to few threads: a result the busy loop has not picked up yet does not count
    as work in a thread, so the next job goes to the thread that is free."""
    async def main():
        pool = WorkerPool(4, name="t")
        first = pool.submit(lambda: 1)
        for _ in range(5000):                 # the loop stays busy while the job ends
            if pool.finished == 1:
                break
            threading.Event().wait(0.001)
        second = pool.submit(lambda: 2)
        results = await asyncio.gather(first, second)
        threads = pool.threads
        pool.shutdown()
        return results, threads

    results, threads = asyncio.run(main())
    assert results == [1, 2] and threads == 1


class _Fatal(BaseException):
    """Not an Exception: what a callback re-raising a job's SystemExit or KeyboardInterrupt raises."""


def _batch(pool, jobs):
    """Run ``jobs`` [(fn, callback or None)] so that all their outcomes reach the loop in one
    hand-over (the loop is kept busy here until every one has finished): the futures of the
    ``submit``ted ones (callback None)."""
    gate = threading.Event()
    futs = []
    for i, (fn, cb) in enumerate(jobs):
        job = (lambda f=fn: (gate.wait(5), f())[1]) if i == 0 else fn
        if cb is None:
            futs.append(pool.submit(job))
        else:
            pool.call(job, (), cb)
    gate.set()
    for _ in range(5000):
        if pool.finished == len(jobs):
            break
        threading.Event().wait(0.001)
    assert pool.finished == len(jobs)
    return futs


def test_a_callback_raising_a_base_exception_loses_none_of_the_other_outcomes_of_its_batch():
    """The failing callback's BaseException reaches the loop only after every other outcome of
    the same hand-over was handed over (callbacks called, futures set)."""
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx.get("exception")))
        pool = WorkerPool(1, name="t")
        got = []

        def reraise(result, exc):
            raise _Fatal("from a callback")

        futs = _batch(pool, [(lambda: "first", reraise),
                             (lambda: "second", lambda r, e: got.append(r)),
                             (lambda: "third", None),
                             (lambda: "fourth", lambda r, e: got.append(r))])
        third = await asyncio.wait_for(futs[0], 5)
        for _ in range(20):
            await asyncio.sleep(0)
        wakeups = pool.wakeups
        pool.shutdown()
        return got, third, errors, wakeups

    got, third, errors, wakeups = asyncio.run(main())
    assert wakeups == 1                        # all four in one hand-over
    assert got == ["second", "fourth"] and third == "third"
    assert [type(e) for e in errors] == [_Fatal]


def test_a_job_raising_stop_iteration_fails_its_future_with_runtime_error_and_loses_no_other():
    async def main():
        pool = WorkerPool(1, name="t")

        def stop():
            raise StopIteration

        futs = _batch(pool, [(stop, None), (lambda: "next", None)])
        results = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5)
        pool.shutdown()
        return results

    err, nxt = asyncio.run(main())
    assert isinstance(err, RuntimeError) and isinstance(err.__cause__, StopIteration)
    assert nxt == "next"
