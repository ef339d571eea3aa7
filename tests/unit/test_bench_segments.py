"""`netstack bench segments`: structure and behaviour only, never timings."""
from __future__ import annotations

import json

import pytest

from netstack.bench import segments as S
from netstack.cli import main
from netstack.wire.ipv4 import ip2int, parse_ipv4
from netstack.wire.tcp import ACK, SYN, parse_tcp

SMALL = ["--count", "200", "--repeat", "2", "--idle", "50"]


def _run(argv, capsys):
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_table_json_and_progress(tmp_path, capsys):
    path = tmp_path / "segments.json"
    status, out, err = _run(["bench", "segments", *SMALL, "--json", str(path)], capsys)
    assert status == 0
    header = next(line for line in out.splitlines() if line.startswith("path"))
    for title in ("ns/segment", "segments/s", "MB/s", "x parse", "ACKs/segment"):
        assert title in header
    for row in S.ROWS + (S.idle_row(50),):
        assert any(line.startswith(row + " ") for line in out.splitlines()), row
    assert "the cost of parsing alone" in out and "StreamReader add" in out
    assert "with 50 idle connections (keep-alive timers armed)" in out and "x the receive path alone" in out
    assert "bench segments: [1/7] opening 50 idle connections" in err and "done in" in err   # progress on stderr
    assert "bench segments:" not in out

    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "segments"
    assert doc["settings"] == {"count": 200, "repeat": 2, "warmup": 1, "payload": 1448, "batch": 64,
                               "idle": 50, "packet_bytes": 1500}
    assert [r["path"] for r in doc["rows"]] == ["parse", "ip layer", "receive path", "receive path, 50 idle",
                                                "with streams"]
    assert {c["key"] for c in doc["columns"]} >= {"ns_per_segment", "segments_per_s", "mb_per_s", "x_parse"}
    for row in doc["rows"]:
        assert len(row["runs_ns_per_segment"]) == 2
        assert row["ns_per_segment"] > 0
        # the figures are consistent with each other (not hard-coded)
        assert row["segments_per_s"] == pytest.approx(1e9 / row["ns_per_segment"])
        assert row["mb_per_s"] == pytest.approx(row["segments_per_s"] * 1448 / 1e6)
    by = {r["path"]: r for r in doc["rows"]}
    assert by["parse"]["x_parse"] == pytest.approx(1.0)
    assert by["receive path"]["x_parse"] == pytest.approx(
        by["receive path"]["ns_per_segment"] / by["parse"]["ns_per_segment"])
    # delayed ACK: one ACK per two full-sized segments (a few more while TCP quick-ACKs a fresh or
    # long-idle connection, as Linux does), far from one per segment
    assert 0.5 <= by["receive path"]["acks_per_segment"] < 0.7
    assert 0.5 <= by["receive path, 50 idle"]["acks_per_segment"] < 0.7
    # the stack's counters went through TCP for every segment (a warm-up and 2 runs x 200, plus the
    # handshake); the warm-up run is not among the reported runs
    assert doc["counters"]["tcp.in_segs"] == 3 * 200 + 2
    assert doc["counters"]["link.in.packets"] == 3 * 200 + 2
    assert doc["environment"]["python"]


def test_quiet_and_bad_arguments(capsys):
    status, out, err = _run(["bench", "segments", "--count", "100", "--repeat", "1", "--quiet"], capsys)
    assert status == 0 and "receive path" in out and err == ""
    with pytest.raises(SystemExit) as exc:
        main(["bench", "segments", "--payload", "0"])
    assert exc.value.code == 2
    assert "--payload" in capsys.readouterr().err
    # a batch that would overrun the receive window is refused before measuring
    status, out, err = _run(["bench", "segments", "--payload", "9000", "--batch", "64"], capsys)
    assert status == 2 and "lower --batch" in err and out == ""
    status, out, err = _run(["bench", "segments", "--json", "/nonexistent-dir/x.json"], capsys)
    assert status == 2 and "does not exist" in err


def test_peer_packets_are_like_linux():
    peer = S.Peer(payload=1448, src=ip2int(S.PEER_ADDR), dst=ip2int(S.STACK_ADDR), isn=0xFFFFF000)
    syn = parse_ipv4(peer.syn())
    s = parse_tcp(syn.payload, src=syn.src, dst=syn.dst)
    assert s.flags == SYN and s.options.mss == 1460 and s.options.sack_permitted
    assert s.options.wscale == 7 and s.options.ts_val is not None
    peer.ack = 1234
    _buf, views = peer.data(8)
    seqs = []
    for v in views:
        p = parse_ipv4(v)                                   # checksums verified
        assert p.df and p.ttl == 64 and p.total_length == 1500
        t = parse_tcp(p.payload, src=p.src, dst=p.dst)
        assert t.flags & ACK and t.ack == 1234
        assert t.options.ts_val is not None and t.data_offset == 8
        assert len(t.payload) == 1448
        seqs.append(t.seq)
    # in order, and across the 2^32 wrap
    assert all((b - a) & 0xFFFFFFFF == 1448 for a, b in zip(seqs, seqs[1:]))
    assert seqs[-1] < seqs[0]
    assert peer.seq == (seqs[-1] + 1448) & 0xFFFFFFFF


def test_goes_through_the_live_loop_entry_point(monkeypatch):
    from netstack.stack import Stack
    calls = []
    real = Stack._on_readable

    def counting(self):
        calls.append(self.link.pending())
        return real(self)

    monkeypatch.setattr(Stack, "_on_readable", counting)
    result = S.measure(count=130, repeat=1, batch=64)
    # handshakes: 2 wakeups each for the two TCP paths; then ceil(130/64) = 3 per path for the three
    assert len(calls) == 2 + 2 + 3 + 3 + 3
    for row in result["rows"][2:]:
        assert 65 / 130 <= row["acks_per_segment"] < 0.7


def test_small_payloads_follow_the_delayed_ack_byte_rule():
    # 100-byte segments: an ACK only once 2 full-sized segments' worth of bytes (2 x 1448) arrived
    result = S.measure(count=600, repeat=1, payload=100)
    acks = result["rows"][2]["acks_per_segment"]
    assert 0 < acks < 0.1


def test_a_lost_ack_fails_the_check(monkeypatch):
    from netstack.tcp.layer import TCPLayer
    real = TCPLayer.emit

    def no_pure_acks(self, conn, seq, ack, flags, window, payload, ts, sack_blocks, syn):
        if flags == ACK and not len(payload):
            return                               # the connection thinks it ACKed; nothing reaches the link
        return real(self, conn, seq, ack, flags, window, payload, ts, sack_blocks, syn)

    monkeypatch.setattr(TCPLayer, "emit", no_pure_acks)
    # the pure ACK with timestamps, from the template: "sent" (True), nothing reaches the link
    monkeypatch.setattr(TCPLayer, "emit_ack", lambda self, conn, seq, ack, flags, window, tsval, tsecr: True)
    with pytest.raises(S.CheckFailed, match="ACKs for 100 segments"):
        S.measure(count=100, repeat=1)


def test_undelivered_data_fails_the_check(monkeypatch):
    from netstack.tcp.buffers import ReceiveBuffer
    monkeypatch.setattr(ReceiveBuffer, "read_into", lambda self, buf: (self.data.clear(), 0)[1])
    with pytest.raises(S.CheckFailed, match="read 0 bytes"):
        S.measure(count=100, repeat=1)


def test_dropped_packets_fail_the_check():
    path = S.ReceivePath(1448, 64)

    async def go():
        path.open()
        _buf, views = path.peer.data(10)
        bad = bytearray(views[3])
        bad[30] ^= 0xFF                                    # corrupt the TCP payload: bad checksum
        views[3] = memoryview(bad)
        _ns, acks = await path.run(views)
        path.check(views, acks)

    import asyncio
    try:
        with pytest.raises(S.CheckFailed, match="dropped"):
            asyncio.run(go())
    finally:
        path.close()


def test_profile_option_writes_a_profile_of_the_receive_path(tmp_path, capsys):
    import pstats

    prof = tmp_path / "rx.prof"
    path = tmp_path / "segments.json"
    status, out, err = _run(["bench", "segments", "--count", "300", "--repeat", "1", "--profile", str(prof),
                             "--json", str(path)], capsys)
    assert status == 0
    assert "profiling the receive path" in err
    assert "function (own time, cProfile)" in out
    names = " ".join(pstats.Stats(str(prof)).stats and [f[2] for f in pstats.Stats(str(prof)).stats])
    for fn in ("_on_readable", "input", "on_datagram"):
        assert fn in names, fn
    doc = json.loads(path.read_text())
    top = doc["profile"]
    assert 0 < len(top) <= 15 and all(r["ns_per_packet"] > 0 for r in top)
    assert top == sorted(top, key=lambda r: -r["ns_per_packet"])
    # the profiled run is extra: the timed rows still hold exactly one run each
    assert all(len(r["runs_ns_per_segment"]) == 1 for r in doc["rows"])


def test_streams_row_checks_the_application_got_everything(monkeypatch):
    from netstack.sockets.transport import TCPTransport
    monkeypatch.setattr(TCPTransport, "_pull", lambda self, *a, **k: None)   # nothing reaches the reader
    with pytest.raises(S.CheckFailed, match="the application read 0 bytes"):
        S.measure(count=100, repeat=1)


def test_the_idle_row_has_its_connections_established_with_timers_armed():
    async def main():
        path = S.IdleReceivePath(1448, 64, 300)
        try:
            path.open()
            assert len(path.idle_conns) == 300
            assert all(c.next_deadline() is not None for c in path.idle_conns)    # keep-alive armed
            assert len(path.tcp.connections) == 301
            _buf, views = path.peer.data(100)
            _ns, acks = await path.run(views)
            path.check(views, acks)
        finally:
            path.close()
    import asyncio
    asyncio.run(main())
