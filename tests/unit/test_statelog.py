"""The TCP state log: every transition as a JSON line, read back with one-line errors."""
import io
import json

import pytest

from netstack.statelog import StateLogError, StateLogWriter, change_record, parse_state_log, read_state_log
from netstack.tcp import State, TCPConfig
from netstack.tcp.events import ErrorCause, SegmentCause, StateChange, TimerCause, UserCall, UserCause
from netstack.tcp.timers import Timer
from netstack.scenarios.testbed import B_ADDR, Testbed as Bed


def test_writer_logs_every_transition_of_a_real_connection():
    tb = Bed()
    buf = io.StringIO()
    writer = StateLogWriter(buf, time_offset=1000.0)
    tb.b.on_transition = writer                      # the layer's one observer hook
    lst = tb.b.listen(25)
    a = tb.a.connect(B_ADDR, 25, tb.now, src_port=40000)
    tb.run_until(lambda: lst.pending > 0)
    b = lst.accept()
    a.close()
    tb.run_until(lambda: b.at_eof)
    b.close()
    tb.run_until(lambda: b.state is State.CLOSED)
    lines = buf.getvalue().splitlines()
    assert writer.count == len(lines) == 5
    recs = [json.loads(l) for l in lines]
    assert [(r["from"], r["to"]) for r in recs] == [
        ("LISTEN", "SYN-RECEIVED"), ("SYN-RECEIVED", "ESTABLISHED"), ("ESTABLISHED", "CLOSE-WAIT"),
        ("CLOSE-WAIT", "LAST-ACK"), ("LAST-ACK", "CLOSED")]
    assert recs[0]["local"] == "198.18.0.2:25" and recs[0]["remote"] == "198.18.0.1:40000"
    assert recs[0]["cause"]["kind"] == "segment" and recs[0]["cause"]["flags"] == "S"
    assert recs[2]["cause"]["flags"] == "F."
    assert recs[3]["cause"] == {"kind": "user", "call": "close"}
    assert recs[0]["time"] == pytest.approx(1000.0 + 0.01, abs=1e-3)     # the offset is added
    back = parse_state_log(lines)
    assert [(r.old, r.new) for r in back][:2] == [(State.LISTEN, State.SYN_RECEIVED),
                                                  (State.SYN_RECEIVED, State.ESTABLISHED)]


@pytest.mark.parametrize("cause, expected", [
    (SegmentCause(0x12, 5, 6), {"kind": "segment", "flags": "S.", "seq": 5, "ack": 6}),
    (TimerCause(Timer.TIME_WAIT), {"kind": "timer", "timer": "timewait"}),
    (UserCause(UserCall.ABORT), {"kind": "user", "call": "abort"}),
    (ErrorCause(3, 3), {"kind": "icmp", "type": 3, "code": 3}),
])
def test_every_cause_serialises(cause, expected):
    rec = change_record((0x0A000001, 1), (0x0A000002, 2), StateChange(1.5, State.ESTABLISHED, State.CLOSED, cause))
    assert rec == {"time": 1.5, "local": "10.0.0.1:1", "remote": "10.0.0.2:2", "from": "ESTABLISHED",
                   "to": "CLOSED", "cause": expected}


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    ("[1, 2]", "line 2: expected a JSON object"),
    ('{"time": 1, "local": "a", "remote": "b", "from": "CLOSED", "to": "OPEN", "cause": {}}',
     "line 2: 'to' is not a TCP state: 'OPEN'"),
    ('{"time": 1, "local": "a"}', "line 2: missing remote, from, to, cause"),
])
def test_bad_lines_give_one_line_errors(line, message):
    good = '{"time": 1, "local": "a", "remote": "b", "from": "CLOSED", "to": "SYN-SENT", "cause": {"kind": "user"}}'
    with pytest.raises(StateLogError) as exc:
        parse_state_log([good, line], "s.jsonl")
    assert str(exc.value).startswith(f"s.jsonl: {message}") and "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(StateLogError, match=r"nope\.jsonl: No such file"):
        read_state_log(str(tmp_path / "nope.jsonl"))


def test_serve_has_the_state_log_option():
    from netstack.cli import build_parser
    args = build_parser().parse_args(["serve", "--state-log", "s.jsonl"])
    assert args.state_log == "s.jsonl"


RECOVERY_LINE = {"time": 2.5, "local": "10.0.0.1:1", "remote": "10.0.0.2:2", "event": "undo", "cc": "cubic",
                 "cwnd": 14000, "ssthresh": 9000, "prior_cwnd": 1000, "snd_una": 7, "snd_max": 9, "rto": 1.0,
                 "retries": 1, "undo": "eifel", "undone": "rto"}


def test_recovery_events_serialise_and_read_back():
    from netstack.statelog import RecoveryRecord, parse_log, recovery_record
    from netstack.tcp.events import RecoveryEvent, RecoveryKind, UndoMethod
    ev = RecoveryEvent(2.5, RecoveryKind.UNDO, 14000, 9000, 1000, 7, 9, 1.0, 1, "cubic",
                       UndoMethod.EIFEL, RecoveryKind.RTO)
    assert recovery_record((0x0A000001, 1), (0x0A000002, 2), ev) == RECOVERY_LINE
    good = json.dumps({"time": 1, "local": "a", "remote": "b", "from": "CLOSED", "to": "SYN-SENT",
                       "cause": {"kind": "user", "call": "open"}})
    transitions, events = parse_log([good, json.dumps(RECOVERY_LINE)])
    assert len(transitions) == 1
    assert events == [RecoveryRecord(2.5, "10.0.0.1:1", "10.0.0.2:2", RecoveryKind.UNDO, 14000, 9000, 1000, 7, 9,
                                     1.0, 1, "cubic", UndoMethod.EIFEL, RecoveryKind.RTO)]
    assert events[0].text() == "undo (eifel) of rto: cwnd 1000 -> 14000, ssthresh 9000 (cubic)"
    assert len(parse_state_log([good, json.dumps(RECOVERY_LINE)])) == 1    # transitions only


@pytest.mark.parametrize("change, message", [
    ({"event": "meltdown"}, "line 1: 'event' is not a recovery event: 'meltdown'"),
    ({"cwnd": "big"}, "line 1: 'cwnd' is not a number"),
    ({"undo": "magic"}, "line 1: bad 'undo' or 'undone'"),
])
def test_a_bad_recovery_line_is_one_line_error(change, message):
    line = json.dumps({**RECOVERY_LINE, **change})
    with pytest.raises(StateLogError, match=message):
        parse_state_log([line], "s.jsonl")
    missing = {k: v for k, v in RECOVERY_LINE.items() if k != "ssthresh"}
    with pytest.raises(StateLogError, match="line 1: missing ssthresh"):
        parse_state_log([json.dumps(missing)], "s.jsonl")
