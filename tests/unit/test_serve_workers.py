"""`netstack serve --workers`: the pure parts (options, file names, aggregation, exit statuses), the
secret and cookie clock the workers share (a SYN-cookie round trip across two workers' TCP layers),
and the wrong-queue decision (drop and count, never a RST that would kill another worker's connection).

The processes, the multi-queue TUN and the kernel are in tests/integration/test_serve_workers.py.
"""
from __future__ import annotations

import argparse
import os
import signal

import pytest

from netstack.cli import UsageError, build_parser, serve_workers
from netstack.cli.serve_workers import (Shared, SharedCookieClock, describe_exit, exit_code, merge_counters,
                                        parse_workers, worker_path)
from netstack.sockets.table import format_ss, merge_snapshots
from netstack.tcp import State, TCPConfig, TCPLayer
from netstack.tcp.events import ListenerEvent
from netstack.tcp.syncookies import SynCookieMode
from tests.support.tcp_script import US, Script

pytestmark = pytest.mark.unit


# --- options ---------------------------------------------------------------------------------------------

def _serve_args(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_workers_default_one_and_auto_is_the_cpu_count():
    assert _serve_args().workers == 1
    assert _serve_args("--workers", "3").workers == 3
    assert _serve_args("--workers", "auto").workers == serve_workers.cpu_count() == len(os.sched_getaffinity(0))
    assert _serve_args("--workers", "AUTO").workers == serve_workers.cpu_count()


@pytest.mark.parametrize("text", ["0", "-1", "65", "two", ""])
def test_bad_worker_counts_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_workers(text)


def test_pcap_to_stdout_is_refused_with_workers():
    args = _serve_args("--workers", "2", "--pcap", "-")
    with pytest.raises(UsageError, match="one file per worker"):
        serve_workers.validate_args(args)
    serve_workers.validate_args(_serve_args("--workers", "1", "--pcap", "-"))       # one process: fine
    serve_workers.validate_args(_serve_args("--workers", "2", "--pcap", "x.pcap"))


@pytest.mark.parametrize("path,index,expected", [
    ("cap.pcap", 0, "cap.w0.pcap"), ("/tmp/d/cap.pcap", 3, "/tmp/d/cap.w3.pcap"), ("states", 1, "states.w1"),
    ("/var/log/a.b.jsonl", 2, "/var/log/a.b.w2.jsonl"), (".hidden", 0, ".hidden.w0")])
def test_per_worker_file_names(path, index, expected):
    assert worker_path(path, index) == expected


# --- aggregation -----------------------------------------------------------------------------------------

def test_counters_are_summed_by_name():
    merged = merge_counters([{"tcp.in_segs": 5, "ip.in.packets": 7}, {"tcp.in_segs": 3, "tcp.in.drop.other_worker": 1},
                             {}])
    assert merged == {"ip.in.packets": 7, "tcp.in.drop.other_worker": 1, "tcp.in_segs": 8}
    assert list(merged) == sorted(merged)


def _snap(conns, ports=(7,)):
    return {"addr": "198.18.0.2",
            "listeners": [{"state": "LISTEN", "local": f"198.18.0.2:{p}", "remote": "0.0.0.0:*", "recv_q": 0,
                           "send_q": 128} for p in ports],
            "connections": [{"state": "ESTABLISHED", "local": "198.18.0.2:7", "remote": f"198.18.0.1:{port}",
                             "recv_q": 0, "send_q": 0} for port in conns]}


def test_tables_merge_with_a_worker_column():
    merged = merge_snapshots([_snap([40001, 40003], ports=(9, 7)), _snap([40002], ports=(7, 9))])
    assert merged["workers"] == 2
    assert [(c["remote"], c["worker"]) for c in merged["connections"]] == [
        ("198.18.0.1:40001", 0), ("198.18.0.1:40002", 1), ("198.18.0.1:40003", 0)]
    assert [(lst["local"], lst["worker"]) for lst in merged["listeners"]] == [
        ("198.18.0.2:7", 0), ("198.18.0.2:7", 1), ("198.18.0.2:9", 0), ("198.18.0.2:9", 1)]
    lines = format_ss(merged, states="all", numeric=True).splitlines()
    assert lines[0].split()[-1] == "Worker"
    assert [line.split()[-1] for line in lines if line.startswith("ESTAB")] == ["0", "1", "0"]
    assert "Worker" not in format_ss(_snap([40001]), states="all")          # one stack: no such column


def test_exit_statuses_in_words_and_the_service_status():
    killed, ok, failed, refused = signal.SIGKILL, 0, 1 << 8, 2 << 8      # waitpid statuses
    assert describe_exit(killed) == "killed by SIGKILL"
    assert describe_exit(failed) == "exit status 1"
    assert exit_code([ok, ok], crashed=False) == 0
    assert exit_code([ok, killed], crashed=True) == 1
    assert exit_code([ok, failed], crashed=False) == 1
    assert exit_code([refused, ok], crashed=True) == 2


# --- what the workers share ---------------------------------------------------------------------------------

def test_shared_cookie_clock_keeps_the_latest_mark():
    clock = SharedCookieClock()
    assert clock.last() is None
    clock.mark(100.0)
    clock.mark(50.0)                       # an older mark (a racing worker) never moves it back
    assert clock.last() == 100.0


def test_every_worker_gets_the_same_secret_and_clock():
    shared = Shared()
    a, b = shared.stack_options(), shared.stack_options()
    assert a["isn_secret"] == b["isn_secret"] and len(a["isn_secret"]) == 16
    assert a["cookie_clock"] is b["cookie_clock"] and a["shared_flows"] is True
    assert Shared().secret != shared.secret                              # random per service


def _worker(options: dict) -> Script:
    """A Script whose layer is built as a worker's (secret, cookie clock, shared flows)."""
    s = Script(TCPConfig(syncookies=SynCookieMode.ALWAYS))
    s.layer = TCPLayer(US, counters=s.counters, config=s.config, **options)
    s.layer.listen(80)
    return s


def _cookie_round_trip(a: Script, b: Script):
    """The SYN reaches worker ``a``, the ACK that returns the cookie (with data) reaches ``b``."""
    a.peer("S", seq=1000, mss=1460, wscale=7, sackok=True, ts=(100, 0))
    synack = a.expect("S.", ack=1001)
    b.peer(".", seq=1001, ack=synack.seq + 1, ts=(101, synack.options.ts_val), data=b"hello")
    return b.layer.listeners[80]


def test_syn_cookie_round_trip_across_workers():
    shared = Shared()
    a, b = _worker(shared.stack_options()), _worker(shared.stack_options())
    lst = _cookie_round_trip(a, b)
    assert lst.events[-1] is ListenerEvent.ACCEPTABLE
    conn = lst.accept()
    assert conn.state is State.ESTABLISHED and conn.recv(100) == b"hello"
    assert a.counters.get("tcp.syncookies.sent") == 1 and not a.layer.connections
    assert b.counters.get("tcp.syncookies.validated") == 1 and b.counters.get("tcp.syncookies.sent") == 0


def test_without_the_shared_secret_the_other_worker_refuses_the_cookie():
    clock = SharedCookieClock()
    a = _worker({**Shared().stack_options(), "cookie_clock": clock})
    b = _worker({**Shared().stack_options(), "cookie_clock": clock})
    lst = _cookie_round_trip(a, b)
    assert not lst.accept_queue and not b.layer.connections
    assert b.counters.get("tcp.syncookies.failed") == 1
    b.expect_nothing()                                          # and no RST: it may be another worker's


def test_without_the_shared_clock_the_other_worker_does_not_look_for_a_cookie():
    secret = Shared().secret
    a = _worker({"isn_secret": secret, "shared_flows": True})
    b = _worker({"isn_secret": secret, "shared_flows": True})
    lst = _cookie_round_trip(a, b)
    assert not lst.accept_queue and b.counters.get("tcp.syncookies.validated") == 0


# --- the wrong-queue decision --------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [".", "P.", "F.", "S."])
def test_a_segment_of_no_connection_here_is_dropped_and_counted_not_reset(flags):
    s = _worker(Shared().stack_options())
    s.peer(flags, seq=5000, ack=7000, data=b"x" if "P" in flags else b"")
    s.expect_nothing()
    assert s.counters.get("tcp.in.drop.other_worker") == 1
    s.peer(flags, seq=5000, ack=7000, dport=4444)              # no listener there either: still no RST
    s.expect_nothing()
    assert s.counters.get("tcp.in.drop.other_worker") == 2


def test_a_lone_stack_still_resets_and_a_worker_still_refuses_a_syn_to_a_closed_port():
    lone = Script()
    lone.layer.listen(80)
    lone.peer(".", seq=5000, ack=7000)
    lone.expect("R", seq=7000)
    s = _worker(Shared().stack_options())
    s.peer("S", seq=5000, dport=4444)                           # no worker listens there: RST as always
    s.expect("R.", ack=5001)
    assert s.counters.get("tcp.in.drop.other_worker") == 0


def test_queue_ids_differ_across_processes(monkeypatch):
    import smtp.server as server
    first = server.new_queue_id()
    other = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: other)           # another worker, at the same instant
    second = server.new_queue_id()
    assert first != second and len(first) == len(second) == 19
    assert first[8:14] != second[8:14]                          # the process part
    ids = {server.new_queue_id() for _ in range(10_000)}
    assert len(ids) == 10_000


# --- the control socket's answers for all workers ------------------------------------------------------------

class _FakeWorker:
    def __init__(self, index, counters, gauges, snap=None, fail=False):
        self.index, self.pid = index, 1000 + index
        self._replies = {"stats": {"counters": counters, "gauges": gauges}, "ss": {"ss": snap or _snap([])}}
        self._fail = fail

    async def ask(self, op):
        if self._fail:
            raise ConnectionError(f"worker {self.index} is gone")
        return self._replies[op]


def _ask(agg, request: dict) -> dict:
    import asyncio
    import json
    return asyncio.run(agg.handle(json.dumps(request).encode()))


def test_control_answers_sum_the_workers_and_count_the_tun_once():
    from netstack.cli.serve_workers import Aggregate
    gauges = {"TcpCurrEstab": 1, "tcp.listeners": 4}
    workers = [_FakeWorker(0, {"tcp.passive_opens": 3, "tcp.in_segs": 10}, gauges, _snap([40001])),
               _FakeWorker(1, {"tcp.passive_opens": 5, "tcp.in_segs": 20}, gauges, _snap([40002, 40003]))]
    agg = Aggregate(workers, "198.18.0.2", lambda: {"link.tun.in.drop.queue_full": 2})
    stats = _ask(agg, {"op": "stats"})
    assert stats["ok"] and stats["mib"]["TcpPassiveOpens"] == 8 and stats["mib"]["TcpInSegs"] == 30
    assert stats["counters"]["link.tun.in.drop.queue_full"] == 2                 # once, not per worker
    assert stats["gauges"] == {"TcpCurrEstab": 2, "tcp.listeners": 8}
    assert [w["pid"] for w in stats["workers"]] == [1000, 1001]
    delta = _ask(agg, {"op": "stats", "delta": True})
    assert delta["counters"]["tcp.in_segs"] == 30 and delta["interval"] is not None
    assert _ask(agg, {"op": "stats", "delta": True})["counters"]["tcp.in_segs"] == 0
    ss = _ask(agg, {"op": "ss"})["ss"]
    assert [(c["remote"], c["worker"]) for c in ss["connections"]] == [
        ("198.18.0.1:40001", 0), ("198.18.0.1:40002", 1), ("198.18.0.1:40003", 1)]
    assert _ask(agg, {"op": "nope"})["ok"] is False


def test_control_says_so_when_a_worker_does_not_answer():
    from netstack.cli.serve_workers import Aggregate
    agg = Aggregate([_FakeWorker(0, {}, {}), _FakeWorker(1, {}, {}, fail=True)], "198.18.0.2", dict)
    reply = _ask(agg, {"op": "ss"})
    assert reply["ok"] is False and "did not answer" in reply["error"]


def test_the_services_reports_merge_over_the_workers():
    from netstack.cli import serve_services, serve_smtp
    from netstack.cli.serve_workers import merged_report_text
    figures = dict.fromkeys(serve_smtp.FIGURES, 0)
    parts = [{"netstack.cli.serve_services": {"data": _snap([40001])},
              "netstack.cli.serve_smtp": {"data": {**figures, "accepted": 3, "active": 1}},
              "other": {"text": "other: fine"}},
             {"netstack.cli.serve_services": {"data": _snap([40002])},
              "netstack.cli.serve_smtp": {"data": {**figures, "accepted": 4}},
              "other": {"text": "other: fine too"}}]

    class Other:
        __name__ = "other"

    lines = merged_report_text(parts, [serve_services, serve_smtp, Other()])
    table, smtp, *others = lines
    assert table.startswith("TCP connections:") and "Worker" in table.splitlines()[1]
    assert smtp.startswith("smtp: 7 messages accepted, 1 sessions open") and smtp.endswith("in 2 workers")
    assert others == ["worker 0: other: fine", "worker 1: other: fine too"]
    assert serve_smtp.merge_report([{**figures, "accepted": 2}]) == serve_smtp.merge_report(
        [{**figures, "accepted": 2}, {}])                            # one worker's line has no worker count
