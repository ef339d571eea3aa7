"""Classroom scenarios: each one plays on the fake-clock testbed and its lesson holds."""
import pytest

from netstack import scenarios
from netstack.capture import read_frames
from netstack.statelog import parse_state_log
import io
import json


@pytest.fixture(scope="module")
def outcomes():
    return {}


def play(outcomes, name):
    if name not in outcomes:
        outcomes[name] = scenarios.run(name)
    return outcomes[name]


@pytest.mark.parametrize("name", scenarios.names())
def test_every_check_of_the_lesson_holds(outcomes, name):
    o = play(outcomes, name)
    assert o.checks, "a scenario without checks teaches nothing"
    failed = [s for s, held in o.checks if not held]
    assert not failed, (failed, o.facts)


def test_fast_retransmit_after_exactly_three_duplicate_acks(outcomes):
    o = play(outcomes, "fast-retransmit")
    assert o.facts["dupacks"] == 3 and o.facts["retransmissions"] == 1
    assert o.facts["fast_retransmits"] == 1 and o.facts["rto_expirations"] == 0


def test_rto_doubles(outcomes):
    assert play(outcomes, "rto-backoff").facts["gaps"] == pytest.approx([1.0, 2.0, 4.0, 8.0], abs=1e-3)


def test_zero_window_is_probed(outcomes):
    f = play(outcomes, "zero-window").facts
    assert f["window_probes"] >= 2 and f["delivered"] == 12000


def test_time_wait_lasts_two_msl(outcomes):
    f = play(outcomes, "time-wait").facts
    assert f["time_wait_left"] >= 2 * f["msl"] and f["b_fins"] == 2


def test_handshake_capture_and_state_log(outcomes):
    o = play(outcomes, "handshake")
    frames = list(read_frames(io.BytesIO(o.testbed.pcap_bytes())))
    assert len(frames) == 3
    recs = parse_state_log(json.dumps(r) for r in o.testbed.transitions)
    assert [r.new.value for r in recs] == ["SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "ESTABLISHED"]


def test_a_failing_check_is_reported(monkeypatch):
    o = scenarios.run("handshake")
    o.check("something false", False)
    assert not o.ok


def test_unknown_scenario():
    with pytest.raises(KeyError, match="known: handshake"):
        scenarios.get("nope")


def test_sack_retransmits_exactly_the_lost_segments(outcomes):
    f = play(outcomes, "sack-recovery").facts
    assert f["retransmitted"] == f["lost"] and len(f["lost"]) == 2 and f["rto_expirations"] == 0


def test_nagle_coalesces_and_nodelay_does_not(outcomes):
    f = play(outcomes, "nagle").facts
    assert f["nagle_segments"] < f["nodelay_segments"] == 10


def test_delayed_ack(outcomes):
    f = play(outcomes, "delayed-ack").facts
    assert f["pair_second"] == 0 and f["single"] >= 0.04 and f["delayed_acks"] >= 1


def test_window_scaling(outcomes):
    f = play(outcomes, "window-scaling").facts
    assert f["window_field"] <= 65535 < f["window_bytes"] == f["window_field"] << 5


def test_paws_drops_the_old_duplicate(outcomes):
    f = play(outcomes, "paws").facts
    assert f["paws_drops"] == 1 and f["delivered"] == b"first\nsecond\n"


def test_sequence_numbers_wrap(outcomes):
    f = play(outcomes, "wraparound").facts
    assert f["wrapped"] and f["isn"] + f["bytes_to_wrap"] == 2 ** 32


def test_seed_article_packets_have_the_articles_shape(outcomes):
    f = play(outcomes, "seed-article").facts
    assert (f["helo_total_length"], f["helo_header"], f["helo_payload"], f["mail_payload"]) == (86, 32, 34, 37)


def test_syn_flood_is_met_by_cookies(outcomes):
    f = play(outcomes, "syn-flood").facts
    assert f["max_syn_queue"] == f["syn_queue_full"] == f["backlog"] == 4      # bounded by the backlog
    assert f["cookies_to_flood"] == f["flood"] - f["backlog"] and f["cookies"] == f["cookies_to_flood"] + 1
    assert f["offered_mss"] == 1000 and f["decoded_mss"] == f["b_mss"] == 536   # the table's step below 1000
    assert f["validated"] == 1 and f["b_sack"] and f["b_wscale"] == f["cookie_wscale"] == 7
    assert f["syn_queue_after"] == 0


def test_spoofed_segments_reach_b_and_its_answers_reach_no_one():
    from netstack.scenarios.testbed import B_ADDR, Testbed
    from netstack.wire.ipv4 import ip2int
    from netstack.wire.tcp import SYN
    tb = Testbed()
    lst = tb.b.listen(8000)
    forged = ip2int("203.0.113.9")
    tb.spoof(forged, 1234, 8000, 555, SYN)
    tb.run_for(0.05)
    assert lst.info()["syn_queue"] == 1
    synack = [s for s in tb.segments if s.sender == "B"]
    assert len(synack) == 1 and synack[0].to_nowhere and synack[0].arrival is None
    assert not tb.a.connections and tb.counters_a.get("tcp.out_segs") == 0     # A never saw it
    frames = list(read_frames(io.BytesIO(tb.pcap_bytes())))
    assert len(frames) == 2                                                    # both pass the capture
    assert tb.segments[0].sender == "X" and B_ADDR == tb.b.local_addr
