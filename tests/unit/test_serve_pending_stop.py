"""`netstack serve`: a stop signal during set-up is not lost when its KeyboardInterrupt is.

Before the event loop's handlers are installed, SIGTERM/SIGHUP raise KeyboardInterrupt; raised
inside a callback whose exceptions Python ignores (an at-fork handler of pyroute2's forks), it
vanishes.  The signal is also recorded, and stop_on_signals honours it once the loop is up.
"""
import asyncio
import signal

import pytest

from netstack.cli import serve


class _Stack:
    closed = False

    def __init__(self):
        self.stopped = 0

    def stop(self):
        self.stopped += 1


def _run_loop_once(pending):
    async def main():
        stack = _Stack()
        serve.stop_on_signals(asyncio.get_running_loop(), stack, None, [])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for sig in serve.STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)
        return stack
    serve._PENDING_STOP[:] = pending
    try:
        return asyncio.run(main())
    finally:
        serve._PENDING_STOP.clear()


def test_the_handler_records_the_signal_before_raising():
    serve._PENDING_STOP.clear()
    with pytest.raises(KeyboardInterrupt):
        serve._raise_interrupt(signal.SIGHUP, None)
    assert serve._PENDING_STOP == [signal.SIGHUP]
    serve._PENDING_STOP.clear()


def test_a_swallowed_stop_signal_stops_the_service_once_the_loop_runs():
    assert _run_loop_once([signal.SIGINT]).stopped == 1


def test_without_one_the_service_runs_on():
    assert _run_loop_once([]).stopped == 0
