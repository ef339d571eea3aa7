"""Teaching pictures: the conversation analysis, ladders (text, SVG, PNG), stream graphs, the state diagram,
and `netstack draw` / `netstack trace --ladder` with their one-line errors."""
import io
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from netstack import scenarios
from netstack.capture import CaptureError, PcapWriter
from netstack.cli import main
from netstack.pictures.conversation import load
from netstack.pictures.graphs import rtt_samples, throughput
from netstack.pictures.ladder import capture_ladder_text, ladder_svg
from netstack.pictures.states import count_transitions, state_diagram_svg
from netstack.statelog import parse_state_log
from netstack.wire.ipv4 import ipv4_packet

SEED = str(pathlib.Path(__file__).resolve().parents[1] / "support" / "seed_article_packets.txt")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def played():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = scenarios.run(name)
        return cache[name]
    return get


@pytest.fixture
def files(tmp_path, played):
    def write(name):
        o = played(name)
        pcap = tmp_path / f"{name}.pcap"
        pcap.write_bytes(o.testbed.pcap_bytes())
        log = tmp_path / f"{name}.jsonl"
        log.write_text("".join(json.dumps(r) + "\n" for r in sorted(
            o.testbed.transitions + o.testbed.recovery_events, key=lambda r: r["time"])))
        return str(pcap), str(log)
    return write


def conv_of(played, name):
    cap = load(io.BytesIO(played(name).testbed.pcap_bytes()), name=name)
    assert len(cap.conversations) == 1
    return cap.conversations[0]


# ------------------------------------------------------------------------------------------ analysis

def test_fast_retransmit_is_marked(played):
    conv = conv_of(played, "fast-retransmit")
    marks = [(p.direction, tuple(m for m in p.marks if m not in ("handshake", "close"))) for p in conv.packets]
    retx = [i for i, (_, m) in enumerate(marks) if "retransmission" in m]
    assert len(retx) == 1
    before = [m for _, m in marks[:retx[0]] if "dup-ack" in m]
    assert len(before) == 3                                    # three duplicate ACKs, then the retransmission
    p = conv.packets[retx[0]]
    assert (p.rel_seq, p.length) == (1977, 988)                # the third segment, relative numbers
    assert conv.count("handshake") == 3


def test_zero_window_probe_and_rst_are_marked(played):
    conv = conv_of(played, "zero-window")
    assert conv.count("zero-window") >= 1 and conv.count("window-probe") >= 1
    rst = conv_of(played, "rst-closed-port")
    assert [p.flag_text for p in rst.packets] == ["S", "R."] and "rst" in rst.packets[1].marks


def test_close_is_bracketed(played):
    conv = conv_of(played, "orderly-close")
    fin = next(i for i, p in enumerate(conv.packets) if p.flags & 1)
    assert all("close" in p.marks for p in conv.packets[fin:])
    assert not any("close" in p.marks for p in conv.packets[:fin])


def test_seed_article_smtp_text_rides_on_the_arrows():
    cap = load(SEED)
    text = capture_ladder_text(cap)
    assert "(SMTP)" in text
    assert '"HELO web34213.mail.mud.yahoo.com"' in text
    assert '"MAIL FROM:<' in text
    assert ('seq 1:35 ack 1 win 33304 len 34 "HELO web34213.mail.mud.yahoo.com" '
            "<nop,nop,TS val 310237481 ecr 108030715>") in text


def test_window_is_scaled_after_the_handshake(played):
    conv = conv_of(played, "fast-retransmit")
    syn, synack, ack = conv.packets[:3]
    assert syn.window_bytes == syn.window == 65535              # never scaled in a SYN (RFC 7323 §2.2)
    assert ack.window_bytes == ack.window << 7


# ------------------------------------------------------------------------------------------ pictures

def test_ladder_svg_is_well_formed_with_one_arrow_per_segment(played):
    conv = conv_of(played, "fast-retransmit")
    root = ET.fromstring(ladder_svg(conv))
    groups = [g for g in root.iter(f"{SVG}g") if "seg" in g.get("class", "").split()]
    assert len(groups) == len(conv.packets)
    retx = [g for g in groups if "m-retransmission" in g.get("class")]
    assert len(retx) == 1 and retx[0].find(f"{SVG}line").get("stroke") == "#d62728"
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "handshake" in texts and "[S.] seq 0 ack 1" in texts


def test_ladder_svg_notes_a_cut(played):
    conv = conv_of(played, "fast-retransmit")
    svg = ladder_svg(conv, max_rows=5, cut_note="cut: only the first 9 packets were read")
    assert f"only the first 5 of {len(conv.packets)} segments are drawn" in svg and "first 9 packets" in svg


def test_rtt_and_throughput(played):
    conv = conv_of(played, "rto-backoff")
    samples = rtt_samples(conv, 0)
    assert samples == []                                       # Karn: the one data segment was retransmitted
    conv = conv_of(played, "fast-retransmit")
    samples = rtt_samples(conv, 0)
    assert samples and all(r >= 0.020 for _, r in samples)    # at least the 2 x 10 ms path delay
    tp = throughput(conv, 0)
    assert sum(v for _, v in tp) * (tp[1][0] - tp[0][0]) == pytest.approx(8001, rel=0.01)


def test_state_diagram_highlights_and_counts(played):
    o = played("time-wait")
    recs = parse_state_log(json.dumps(r) for r in o.testbed.transitions)
    counts = count_transitions(recs)
    root = ET.fromstring(state_diagram_svg(counts))
    taken = {(g.get("data-from"), g.get("data-to")): int(g.get("data-count"))
             for g in root.iter(f"{SVG}g") if "taken" in g.get("class", "").split()}
    assert taken == dict(counts)
    assert taken[("TIME-WAIT", "CLOSED")] == 1 and taken[("LISTEN", "SYN-RECEIVED")] == 1
    untaken = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert any(g.get("data-from") == "SYN-SENT" and g.get("data-to") == "SYN-RECEIVED" for g in untaken)


# ------------------------------------------------------------------------------------------ the commands

def test_draw_ladder_svg_html_png(files, tmp_path, capsys):
    pcap, _ = files("fast-retransmit")
    for ext in ("svg", "html", "png"):
        out = tmp_path / f"l.{ext}"
        assert main(["draw", "ladder", pcap, "-o", str(out)]) == 0
        assert out.stat().st_size > 1000
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "l.html").read_text()


def test_draw_ladder_text_and_trace_ladder_agree(files, capsys):
    pcap, _ = files("fast-retransmit")
    assert main(["draw", "ladder", pcap]) == 0
    drawn = capsys.readouterr().out
    assert main(["trace", "--ladder", pcap]) == 0
    assert capsys.readouterr().out == drawn
    assert drawn.count("** DUP-ACK") >= 3 and drawn.count("RETRANSMISSION") == 1


def test_draw_seq_png_and_svg(files, tmp_path):
    pcap, _ = files("zero-window")
    assert main(["draw", "seq", pcap, "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["draw", "seq", pcap, "-o", str(tmp_path / "s.svg")]) == 0
    svg = (tmp_path / "s.svg").read_text()
    assert "time-sequence" in svg and "round-trip time" in svg and "throughput" in svg


def test_draw_seq_marks_the_state_logs_recovery_events(files, tmp_path, played, capsys):
    """`draw seq --state-log`: each recovery event of the sender is a labelled line on its graph."""
    pcap, log = files("fast-retransmit")
    assert main(["draw", "seq", pcap, "-o", str(tmp_path / "plain.svg")]) == 0
    assert main(["draw", "seq", pcap, "--state-log", log, "-o", str(tmp_path / "ev.svg")]) == 0
    plain, marked = (tmp_path / "plain.svg").read_text(), (tmp_path / "ev.svg").read_text()
    assert "cwnd" not in plain
    assert "fast-retransmit: cwnd 11856 -&gt; 7180 -->" in marked and "recovery-exit: cwnd 988 -->" in marked
    assert "congestion/recovery event (state log)" in marked
    from netstack.pictures.conversation import recovery_marks
    from netstack.pictures.graphs import event_lines
    from netstack.statelog import read_log
    conv = load(pcap).conversations[0]
    marks = recovery_marks(conv, read_log(log)[1])
    assert [d for _, d, _ in marks] == [0, 0]                     # the client sends and recovers
    lines = event_lines(conv, marks, 0)
    assert [label for _, label, _ in lines] == ["fast-retransmit: cwnd 11856 -> 7180", "recovery-exit: cwnd 988"]
    assert 0 < lines[0][0] < lines[1][0] and lines[0][2] != lines[1][2]
    assert event_lines(conv, marks, 1) == []                      # not on the other direction's graph
    bad = tmp_path / "bad.jsonl"
    bad.write_text("oops\n")
    capsys.readouterr()
    _one_line_error(capsys, ["draw", "seq", pcap, "--state-log", str(bad), "-o", str(tmp_path / "x.png")],
                    "bad.jsonl: line 1")


def test_draw_states(files, tmp_path):
    _, log = files("simultaneous-close")
    out = tmp_path / "st.svg"
    assert main(["draw", "states", log, "-o", str(out)]) == 0
    root = ET.parse(out).getroot()
    taken = {(g.get("data-from"), g.get("data-to")): g.get("data-count")
             for g in root.iter(f"{SVG}g") if "taken" in g.get("class", "").split()}
    assert taken[("FIN-WAIT-1", "CLOSING")] == "2" and taken[("CLOSING", "TIME-WAIT")] == "2"


def test_several_connections_give_numbered_files(tmp_path, played):
    import netstack.capture as c
    cap = tmp_path / "two.pcap"
    with PcapWriter(str(cap)) as w:                 # two scenarios back to back: two 4-tuples (ports 8000, 81)
        for name in ("handshake", "rst-closed-port"):
            for fr in c.read_frames(io.BytesIO(played(name).testbed.pcap_bytes())):
                w.write(fr.data, fr.ts_sec + fr.ts_nsec / 1e9)
    assert main(["draw", "ladder", str(cap), "-o", str(tmp_path / "l.svg")]) == 0
    assert (tmp_path / "l-1.svg").exists() and (tmp_path / "l-2.svg").exists()


def test_trace_ladder_takes_trace_options(tmp_path, played, capsys):
    """`trace --ladder` reads -r FILE, stops after -c N packets and draws only what the filter keeps."""
    import netstack.capture as c
    cap = tmp_path / "two.pcap"
    with PcapWriter(str(cap)) as w:                 # two connections: ports 8000 and 81
        for name in ("handshake", "rst-closed-port"):
            for fr in c.read_frames(io.BytesIO(played(name).testbed.pcap_bytes())):
                w.write(fr.data, fr.ts_sec + fr.ts_nsec / 1e9)
    assert main(["trace", "--ladder", "-r", str(cap)]) == 0
    both = capsys.readouterr().out
    assert "connection 1:" in both and "connection 2:" in both
    assert main(["trace", "--ladder", str(cap), "tcp", "port", "81"]) == 0
    one = capsys.readouterr().out
    assert "connection 1:" in one and "connection 2:" not in one and one.splitlines()[0].endswith(":81")
    assert main(["trace", "--ladder", "-r", str(cap), "-c", "2"]) == 0
    cut = capsys.readouterr().out
    assert cut.count("|-") + cut.count("|<") == 2 and "cut: only the first 2 packets" in cut
    assert main(["trace", "--ladder", str(cap), "udp"]) == 2
    assert "no TCP segments in the capture (0 packets read that the filter keeps)" in capsys.readouterr().err
    for opt in ("-V", "-x", "-A"):
        with pytest.raises(SystemExit) as exc:
            main(["trace", "--ladder", opt, str(cap)])
        assert exc.value.code == 2
        assert "--ladder draws whole connections" in capsys.readouterr().err


def _one_line_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, files):
    pcap, log = files("handshake")
    notcp = tmp_path / "icmp.pcap"
    with PcapWriter(str(notcp)) as w:
        w.write(ipv4_packet(src="10.0.0.1", dst="10.0.0.2", protocol=1, payload=b"\x08\x00\xf7\xff\x00\x00\x00\x00"), 1.0)
    _one_line_error(capsys, ["draw", "ladder", str(notcp)], "no TCP segments in the capture (1 packet read)")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(pathlib.Path(pcap).read_bytes()[:-10])
    _one_line_error(capsys, ["draw", "ladder", str(cut), "-o", str(tmp_path / "x.svg")], "cut.pcap: packet 3")
    _one_line_error(capsys, ["draw", "ladder", pcap, "-o", str(tmp_path / "x.gif")], "unsupported output type .gif")
    _one_line_error(capsys, ["draw", "ladder", pcap, "--conn", "2"], "no connection 2 (the capture has 1)")
    _one_line_error(capsys, ["draw", "seq", pcap, "-o", str(tmp_path / "x.png"), "--max-packets", "0"],
                    "--max-packets must be at least 1")
    _one_line_error(capsys, ["draw", "states", pcap, "-o", str(tmp_path / "s.svg")], "handshake.pcap: not a text file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(pathlib.Path(log).read_text() + "oops\n")
    _one_line_error(capsys, ["draw", "states", str(bad), "-o", str(tmp_path / "s.svg")], "bad.jsonl: line 5: not JSON")
    _one_line_error(capsys, ["draw", "states", log, "-o", str(tmp_path / "s.svg"), "--conn", "a:1,b:2"],
                    "no transitions of a:1,b:2")
    _one_line_error(capsys, ["draw", "ladder", str(tmp_path / "missing.pcap")], "No such file")
    text = tmp_path / "notes.txt"
    text.write_text("no packets here\n")
    _one_line_error(capsys, ["report", str(text), "-o", str(tmp_path / "r.html")],
                    "notes.txt: no packets found (expected a pcap file or a tcpdump hex dump")


def test_max_packets_cuts_with_a_note(files, capsys, tmp_path):
    pcap, _ = files("fast-retransmit")
    assert main(["draw", "ladder", pcap, "--max-packets", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("|-") + out.count("|<") == 4 and "cut: only the first 4 packets" in out
    assert main(["draw", "ladder", pcap, "--max-packets", "4", "-o", str(tmp_path / "c.svg")]) == 0
    assert "cut: only the first 4 packets were read" in (tmp_path / "c.svg").read_text()


def test_redacted_hex_dump_still_draws(capsys):
    assert main(["draw", "ladder", SEED]) == 0
    assert "HELO" in capsys.readouterr().out


def packet_data(page):
    import base64
    import gzip
    blob = page.split("id='packet-data' data-encoding='gzip+base64'>")[1].split("</script>")[0]
    return json.loads(gzip.decompress(base64.b64decode(blob)))


def test_report_page_structure(files, tmp_path, capsys):
    import html.parser
    pcap, log = files("smtp-dialogue")
    out = tmp_path / "r.html"
    assert main(["report", pcap, "--state-log", log, "-o", str(out)]) == 0
    page = out.read_text()
    rows = page.count("<tr class='pkt'")
    data = packet_data(page)
    assert rows == len(data) == len(load(pcap).packets)
    ehlo = next(v for v in data.values() if "length 25" in v["line"])
    assert "EHLO client.example.org" in ehlo["explain"] and ehlo["kind"] == "data"
    assert "TCP states of 198.18.0.2:25" in page and "TCP states of 198.18.0.1:40000" in page
    html.parser.HTMLParser().feed(page)                  # parses


def test_report_lists_the_congestion_and_recovery_events(files, tmp_path, capsys):
    pcap, log = files("rto-backoff")
    out = tmp_path / "r.html"
    assert main(["report", pcap, "--state-log", log, "-o", str(out)]) == 0
    page = out.read_text()
    assert "4 recovery events" in page and "<h3>Congestion and recovery</h3>" in page
    table = page.split("<table class='recovery'>")[1].split("</table>")[0]
    assert table.count("<td>rto</td>") == 4 and "<td>9880</td><td>988</td>" in table
    assert "rto #4, rto now 16s" in table


def test_report_escapes_script_end_and_notes_a_cut(tmp_path, capsys):
    pcap = tmp_path / "evil.pcap"
    from netstack.wire.tcp import tcp_segment
    seg = tcp_segment(src="10.0.0.1", dst="10.0.0.2", src_port=4000, dst_port=25, seq=1, ack=1, flags=0x18,
                      window=100, payload=b"</script><script>alert(1)</script>\r\n")
    with PcapWriter(str(pcap)) as w:
        for i in range(3):
            w.write(ipv4_packet(src="10.0.0.1", dst="10.0.0.2", protocol=6, payload=seg), 1.0 + i)
    out = tmp_path / "r.html"
    assert main(["report", str(pcap), "-o", str(out), "--max-packets", "2"]) == 0
    page = out.read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page     # escaped in the table
    assert any("alert(1)" in v["explain"] for v in packet_data(page).values())
    assert "cut: only the first 2 packets were read" in page
    capsys.readouterr()
    _one_line_error(capsys, ["report", str(pcap), "-o", str(tmp_path / "no" / "r.html")], "No such file")
    _one_line_error(capsys, ["report", str(pcap), "--state-log", str(pcap), "-o", str(out)], "not a text file")


def test_out_of_order_and_gap_are_marked(tmp_path, played):
    import netstack.capture as c
    o = played("fast-retransmit")
    frames = list(c.read_frames(io.BytesIO(o.testbed.pcap_bytes())))
    # frames 3.. carry seq 1, 989, 1977, 2965, 3953, 4941, 5929 (988 bytes each)
    frames[4], frames[5] = frames[5], frames[4]             # 1977 is captured before 989
    del frames[8]                                            # and 4941 never is
    path = tmp_path / "ooo.pcap"
    with PcapWriter(str(path)) as w:
        for fr in frames:
            w.write(fr.data, fr.ts_sec + fr.ts_nsec / 1e9)
    conv = load(str(path)).conversations[0]
    marks = {}
    for p in conv.packets:
        if p.length:
            marks.setdefault(p.rel_seq, p.marks)                # the first time each is seen
    assert "gap" in marks[1977]                              # a hole below it
    assert "out-of-order" in marks[989]                      # then the hole is filled
    assert "gap" in marks[5929]                              # after the segment the capture lost
    assert not marks[2965] and not marks[3953]


def test_redacted_bytes_are_marked_on_the_ladder():
    cap = load(SEED)
    assert [("redacted" in p.marks) for p in cap.packets] == [False, True]
    assert "** REDACTED" in capture_ladder_text(cap)


def test_report_marks_recovery_events_on_the_ladder(files, tmp_path, capsys):
    pcap, log = files("fast-retransmit")
    out = tmp_path / "r.html"
    assert main(["report", pcap, "--state-log", log, "-o", str(out)]) == 0
    page = out.read_text()
    ladder = page[page.index("<svg"):page.index("</svg>")]
    marks = ladder.split("<g class=\"event\">")[1:]
    assert len(marks) == 2
    assert "fast-retransmit: cwnd 11856 -&gt; 7180</text>" in marks[0]
    assert "<title>fast-retransmit: cwnd 11856 -&gt; 7180, ssthresh 4216 (cubic)</title>" in marks[0]
    assert "recovery-exit: cwnd 988</text>" in marks[1]
    # on A's time line (the left end), right after the third duplicate ACK's row
    from netstack.pictures.ladder import ROW, TOP
    pk = load(pcap).conversations[0].packets
    dups = [i for i, p in enumerate(pk) if "dup-ack" in p.marks]
    assert pk[dups[2] + 1].marks == ["retransmission"]
    assert f'd="M150,{TOP + ROW * dups[2] + 24 - 6} ' in marks[0]


def test_ladder_event_marks_sit_after_the_last_earlier_segment(played):
    from netstack.pictures.ladder import ROW, TOP, ladder_svg
    c = conv_of(played, "handshake")
    t1 = c.packets[1].time
    svg = ladder_svg(c, events=[(t1, 1, "rto #1, rto now 2s: cwnd 10000, ssthresh 99"), (c.start - 1, 0, "x")])
    ET.fromstring(svg)
    marks = svg.split('<g class="event">')[1:]
    y1 = TOP + ROW * 1 + 24
    assert f'd="M690,{y1 - 6}' in marks[0] and "rto #1, rto now 2s: cwnd 10000</text>" in marks[0]
    assert f'd="M150,{TOP - 10 - 6}' in marks[1]                 # before every segment: above the first
