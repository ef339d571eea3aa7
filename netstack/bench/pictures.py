"""Teaching pictures on a large capture: `netstack report`, the ladder and the graphs, against `netstack trace`.

The capture is made here, the same every run: a bulk transfer between two of
netstack's TCPs on the scenario testbed (1% of the data segments lost, so
there are retransmissions and duplicate ACKs to mark), cut at ``--packets``.
The reference is what ``netstack trace`` does with it (read, dissect and print
every packet), measured in the same run; each step is reported in seconds and
as a multiple of that reference.  Targets: the report of a 10,000-packet
capture builds in under 10 s, and (``--browser``, with Debian's chromium and
Selenium) the page is ready in the browser in under 3 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from netstack.bench import report

DEFAULT_PACKETS = 10_000
QUICK_PACKETS = 2_000
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

COLUMNS = [
    report.Column("step", "step", "{}", "<"),
    report.Column("seconds", "seconds", "{:.3f}"),
    report.Column("x_trace", "x trace", "{:.2f}"),
    report.Column("packets_per_s", "packets/s", "{:,.0f}"),
    report.SPREAD,
    report.Column("note", "note", "{}", "<"),
]
KEY = ["step"]
FIGURE = ("seconds", "lower")


def make_capture(packets: int) -> bytes:
    """A pcap of about ``packets`` packets: a bulk transfer with 1% data loss (seeded)."""
    import random

    from netstack.scenarios.testbed import B_ADDR, Testbed
    from netstack.tcp import TCPConfig

    tb = Testbed(config_a=TCPConfig(mss=1000), config_b=TCPConfig(mss=1000))
    rng = random.Random(1)
    tb.drop(lambda s: s.sender == "A" and s.length > 0 and rng.random() < 0.01)
    lst = tb.b.listen(9)
    a = tb.a.connect(B_ADDR, 9, tb.now, src_port=40000)
    tb.run_until(lambda: lst.pending > 0)
    b = lst.accept()
    data = bytes(packets * 700)             # about 1.4 packets per 988-byte segment (delayed ACKs)
    state = {"sent": 0, "got": 0}

    def done() -> bool:
        if state["sent"] < len(data):
            state["sent"] += a.send(memoryview(data)[state["sent"]:])
        while b.readable:
            state["got"] += len(b.recv())
        return state["got"] >= len(data) or len(tb.segments) >= packets * 1.2
    tb.run_until(done, max_time=100_000)
    return tb.pcap_bytes()


def _trace_all(path: str, limit: int) -> int:
    from itertools import islice

    from netstack.capture import network_layer, read_frames
    from netstack.capture.dissect import dissect
    from netstack.capture.format import SeqTracker, format_packet, format_time
    tracker = SeqTracker()
    n = 0
    for frame in islice(read_frames(path), limit):
        ip, off, _ = network_layer(frame)
        if ip is not None:
            format_packet(dissect(ip), tracker, format_time(frame.ts_sec, frame.ts_nsec))
        n += 1
    return n


def _timed(fn, repeat: int, warmup: int) -> list[float]:
    """Seconds of each of ``repeat`` runs of ``fn``, after ``warmup`` discarded ones."""
    runs = []
    for i in range(warmup + repeat):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            runs.append(time.perf_counter() - t)
    return runs


def _page_ready_seconds(html_path: str) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(120)
        t = time.perf_counter()
        driver.get("file://" + os.path.abspath(html_path))
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        return time.perf_counter() - t
    finally:
        driver.quit()


def measure(*, packets: int, repeat: int, browser: bool, progress, warmup: int = 0) -> dict:
    from netstack.pictures.conversation import load
    from netstack.pictures.graphs import draw_stream_graphs
    from netstack.pictures.ladder import capture_ladder_text
    from netstack.pictures.report import build_report

    with tempfile.TemporaryDirectory(prefix="netstack-bench-pictures.") as d:
        progress.step("making the capture")
        pcap = os.path.join(d, "bulk.pcap")
        with open(pcap, "wb") as f:
            f.write(make_capture(packets))
        cap = load(pcap, max_packets=packets, explain=False)
        n = len(cap.packets)
        page = os.path.join(d, "report.html")

        def write_report():
            c = load(pcap, max_packets=packets)
            with open(page, "w", encoding="utf-8") as f:
                f.write(build_report(c))

        steps = [
            ("trace (reference)", lambda: _trace_all(pcap, packets), "read, dissect and print every packet"),
            ("read and analyse", lambda: load(pcap, max_packets=packets), "conversations, marks, trace -V texts"),
            ("ladder (text)", lambda: capture_ladder_text(load(pcap, max_packets=packets, explain=False)),
             "what netstack draw ladder does"),
            ("stream graphs", lambda: draw_stream_graphs(cap.conversations[0], os.path.join(d, "s.png")),
             "matplotlib, PNG, analysis excluded"),
            ("report", write_report, "the whole netstack report command"),
        ]
        rows = []
        for name, fn, note in steps:
            progress.step(name)
            runs = _timed(fn, repeat, warmup)
            rows.append({"step": name, "seconds": report.median(runs), "runs": runs, "note": note})
        ref = rows[0]["seconds"]
        for r in rows:
            r["x_trace"] = r["seconds"] / ref if ref else None
            r["packets_per_s"] = n / r["seconds"] if r["seconds"] else None
        size = os.path.getsize(page)
        rows[-1]["note"] += f" ({size / 1e6:.1f} MB page)"
        page_s = None
        if browser:
            progress.step("page load in chromium")
            page_s = _page_ready_seconds(page)
            rows.append({"step": "page ready (chromium)", "seconds": page_s, "x_trace": page_s / ref if ref else None,
                         "packets_per_s": n / page_s, "note": "load + unpack the packet readings"})
    return {"rows": rows, "packets": n, "report_seconds": rows[4]["seconds"], "page_seconds": page_s,
            "page_bytes": size}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packets", type=int, metavar="N",
                        help=f"packets in the capture (default {DEFAULT_PACKETS:,}, --quick {QUICK_PACKETS:,})")
    parser.add_argument("--browser", action="store_true",
                        help=f"also time the page in headless chromium ({CHROMIUM}, Selenium)")
    report.add_common_arguments(parser, warmup=0)       # a run takes seconds: no warm-up unless asked


def run(args: argparse.Namespace) -> int:
    problem = report.check_writable(args.json)
    if problem:
        print(f"netstack bench pictures: {problem}", file=sys.stderr)
        return 2
    packets = args.packets or (QUICK_PACKETS if args.quick else DEFAULT_PACKETS)
    if packets < 10:
        print("netstack bench pictures: --packets must be at least 10", file=sys.stderr)
        return 2
    repeat = args.repeat or (1 if args.quick else 3)
    warmup = report.warmup_setting(args)
    progress = report.Progress(6 + args.browser, "bench pictures", quiet=args.quiet)
    result = measure(packets=packets, repeat=repeat, browser=args.browser, progress=progress, warmup=warmup)
    report.add_spread(result["rows"], "runs")
    warnings = report.spread_warnings(result["rows"], lambda r: r["step"])
    progress.finish()
    out = report.table_stream(args)
    scale = 10_000 / result["packets"]
    targets = [report.Target("report of 10,000 packets", "< 10 s", result["report_seconds"] * scale,
                             result["report_seconds"] * scale < 10,
                             f"{result['report_seconds']:.2f} s for {result['packets']:,} packets"
                             + (f" (x{scale:.1f}: {result['report_seconds'] * scale:.2f} s)" if scale != 1 else ""))]
    if result["page_seconds"] is not None:
        targets.append(report.Target("page ready in the browser", "< 3 s", result["page_seconds"],
                                     result["page_seconds"] < 3, f"{result['page_seconds']:.2f} s"))
    print(f"pictures: {result['packets']:,}-packet capture (bulk transfer, 1% data loss); median of {repeat} "
          f"run{'s' * (repeat != 1)} after {warmup} warm-up", file=out)
    print(file=out)
    print(report.format_table(COLUMNS, result["rows"]), file=out)
    for w in warnings:
        print(w, file=out)
    print(file=out)
    print(report.format_targets(targets), file=out)
    if args.json:
        try:
            report.write_json(args.json, "pictures", COLUMNS, result["rows"],
                              settings={"packets": result["packets"], "repeat": repeat, "warmup": warmup,
                                        "browser": args.browser},
                              targets=[t.as_dict() for t in targets], key=KEY, figure=FIGURE, warnings=warnings)
        except OSError as exc:
            print(f"netstack bench pictures: cannot write {args.json}: {exc}", file=sys.stderr)
            return 1
    return 0
