"""``netstack bench tun --loss 0,1,5``: goodput under packet loss, per loss-recovery setup.

For every loss rate, the stack's TUN is wrapped in the fault-injecting link
(:class:`netstack.link.faults.FaultyLink`, loss both ways, seeded per rate and
round), and for each setup a fresh stack moves ``--mb`` MB each way with the
kernel as the peer (``kernel -> stack`` then ``stack -> kernel``, as in the
plain benchmark):

``cubic+sack+rack``   the default: CUBIC (RFC 9438, HyStart++), SACK, RACK-TLP (RFC 8985)
``newreno+sack``      NewReno (RFC 5681/6582) with SACK and RFC 6675 loss recovery
``newreno``           NewReno without SACK (the stack neither offers nor accepts it)

The setups are interleaved within each round, so load from elsewhere on the
machine hits them alike.  Goodput is payload bytes over seconds (medians over
the rounds); ``x newreno`` is the goodput over that of NewReno without SACK at
the same loss rate, in the same run.  In the stack -> kernel direction the
stack's own congestion control and loss recovery are measured; in kernel ->
stack, the kernel's sender is helped or not by our SACK and D-SACK blocks.

Target: at 5 % loss, the default at least 2x NewReno without SACK (stack -> kernel).
"""
from __future__ import annotations

import asyncio
import statistics

from netstack.bench import report

SETUPS = {
    "cubic+sack+rack": dict(congestion="cubic", sack=True, loss_detection="rack"),
    "newreno+sack": dict(congestion="newreno", sack=True, loss_detection="rfc6675"),
    "newreno": dict(congestion="newreno", sack=False),
}
REFERENCE = "newreno"
DEFAULT = "cubic+sack+rack"
TARGET_LOSS = 5.0
TARGET_RATIO = 2.0

COLUMNS = [
    report.Column("loss", "loss %", "{:g}"),
    report.Column("setup", "setup", "{}", "<"),
    report.Column("k2s_mb_per_s", "kernel->stack MB/s", "{:.2f}"),
    report.Column("k2s_x", "x newreno", "{:.2f}"),
    report.Column("s2k_mb_per_s", "stack->kernel MB/s", "{:.2f}"),
    report.Column("s2k_x", "x newreno", "{:.2f}"),
    report.Column("s2k_retrans", "retrans (s->k)", "{:,.0f}"),
    report.Column("s2k_rtos", "RTOs (s->k)", "{:,.0f}"),
    report.Column("s2k_seconds", "s->k seconds", "{:.2f}"),
]


def parse_rates(text: str) -> list[float]:
    """``"0,1,5"`` -> [0.0, 1.0, 5.0] (percent); ValueError naming the bad item."""
    rates = []
    for item in text.split(","):
        item = item.strip().rstrip("%")
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"--loss: {item!r} is not a percentage") from None
        if not 0.0 <= v < 50.0:
            raise ValueError(f"--loss: {v:g} must be at least 0 and below 50 (percent)")
        rates.append(v)
    if not rates:
        raise ValueError("--loss: no rate given")
    return rates


def measure(lab, *, rates: list[float], mb: float, mtu: int, repeat: int, limit: float,
            progress: report.Progress | None = None) -> dict:
    """Run the loss matrix on an already set-up lab; returns rows and targets."""
    from netstack.bench import tun
    from netstack.tcp import TCPConfig

    nbytes = int(mb * 1_000_000)
    runs: dict[tuple, list[dict]] = {}
    for r in range(repeat):
        for rate in rates:
            for name, fields in SETUPS.items():
                cfg = TCPConfig.for_mtu(mtu, **fields)
                seed = 1000 * r + int(rate * 10) + 1
                for direction, fn in (("k2s", tun.kernel_to_stack), ("s2k", tun.stack_to_kernel)):
                    if progress is not None:
                        progress.step(f"run {r + 1}/{repeat}: {rate:g}% loss, {name}, "
                                      f"{'kernel -> stack' if direction == 'k2s' else 'stack -> kernel'}")
                    res = asyncio.run(fn(lab, nbytes, limit, tcp=cfg, loss=rate / 100.0, seed=seed))
                    runs.setdefault((rate, name, direction), []).append(res)
                    tun._drain(lab.link)
    return summarize(runs, rates)


def summarize(runs: dict, rates: list[float]) -> dict:
    def med(rate, name, direction, key):
        values = [x[key] for x in runs.get((rate, name, direction), []) if x.get(key) is not None]
        return statistics.median(values) if values else None

    rows = []
    for rate in rates:
        ref = {d: med(rate, REFERENCE, d, "mb_per_s") for d in ("k2s", "s2k")}
        for name in SETUPS:
            row = {"loss": rate, "setup": name}
            for d in ("k2s", "s2k"):
                mbps = med(rate, name, d, "mb_per_s")
                row[f"{d}_mb_per_s"] = mbps
                row[f"{d}_x"] = None if mbps is None or not ref[d] else mbps / ref[d]
                row[f"{d}_seconds"] = med(rate, name, d, "seconds")
                row[f"{d}_retrans"] = med(rate, name, d, "retrans")
                row[f"{d}_rtos"] = med(rate, name, d, "rtos")
            row["runs"] = {d: runs.get((rate, name, d), []) for d in ("k2s", "s2k")}
            rows.append(row)
    targets = []
    by = {(r["loss"], r["setup"]): r for r in rows}
    row = by.get((TARGET_LOSS, DEFAULT))
    if row is not None:
        x = row["s2k_x"]
        targets.append(report.Target(
            f"{DEFAULT} at {TARGET_LOSS:g}% loss, stack -> kernel", f">= {TARGET_RATIO:g}x {REFERENCE} without SACK",
            x, None if x is None else x >= TARGET_RATIO,
            "not measured" if x is None else
            f"{row['s2k_mb_per_s']:.2f} MB/s, {x:.2f}x {REFERENCE} (kernel -> stack: {row['k2s_x']:.2f}x)"))
    return {"rows": rows, "targets": targets}
