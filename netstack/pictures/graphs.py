"""Stream graphs drawn with matplotlib, like Wireshark's TCP stream graphs.

* the time-sequence graph (Stevens/tcptrace style), per direction that carries
  data: each data segment a vertical bar from its first to its last sequence
  number (retransmissions in red), the ACK line and the receive-window line of
  the other side (ACK + window, scaled), and SACKed ranges;
* throughput: bytes acknowledged per interval;
* round-trip time: for each segment sent once, the time until the first ACK
  covering it (Karn's rule: retransmitted segments give no sample, RFC 6298 §3);
* with a state log (``events``, :func:`~netstack.pictures.conversation.recovery_marks`):
  each congestion or recovery event of the sending end (fast retransmit, SACK
  recovery, its end, an RTO, a tail loss probe, an undo) as a dashed line across
  that direction's time-sequence graph, labelled with its name and the congestion
  window before and after, so the reduction can be read against the segments that
  caused it.

Times are seconds from the connection's first packet; sequence numbers relative.
"""
from __future__ import annotations

from .conversation import Conversation

__all__ = ["draw_stream_graphs", "event_lines", "rtt_samples", "throughput"]


def _t(p, t0):
    return (p.time or 0.0) - t0


def rtt_samples(conv: Conversation, direction: int) -> list[tuple[float, float]]:
    """(time sent, RTT) for data of ``direction`` acknowledged by the other side, Karn's rule applied."""
    t0 = conv.start
    pending = []          # (end, time, retransmitted?)
    out = []
    retx_ends = {p.rel_seq + p.length for p in conv.packets if p.direction == direction and "retransmission" in p.marks}
    for p in conv.packets:
        if p.direction == direction and p.length and "retransmission" not in p.marks:
            pending.append((p.rel_seq + p.length, _t(p, t0)))
        elif p.direction != direction and p.flags & 0x10:
            keep = []
            for end, ts in pending:
                if p.rel_ack >= end:
                    if end not in retx_ends:
                        out.append((ts, _t(p, t0) - ts))
                else:
                    keep.append((end, ts))
            pending = keep
    return out


def throughput(conv: Conversation, direction: int, bins: int = 40) -> list[tuple[float, float]]:
    """(interval start, bytes per second acknowledged) for ``direction``'s data."""
    t0 = conv.start
    acks = [(_t(p, t0), p.rel_ack) for p in conv.packets if p.direction != direction and p.flags & 0x10]
    if len(acks) < 2:
        return []
    end = acks[-1][0] or 1.0
    width = end / bins if end > 0 else 1.0
    out, j, last = [], 0, acks[0][1]
    for i in range(bins):
        hi = (i + 1) * width
        top = last
        while j < len(acks) and acks[j][0] <= hi:
            top = max(top, acks[j][1])
            j += 1
        out.append((i * width, (top - last) / width))
        last = top
    return out


#: line colour per event kind (the label's first word); others grey
EVENT_COLOURS = {"fast-retransmit": "#d62728", "sack-recovery": "#d62728", "recovery-exit": "#2ca02c",
                 "rto": "#8c564b", "tlp": "#e377c2", "tlp-repair": "#d62728", "undo": "#17becf"}


def event_lines(conv: Conversation, events, direction: int) -> list[tuple[float, str, str]]:
    """The events of ``direction``'s sender to draw on its time-sequence graph: ``(x, label, colour)``,
    ``x`` in seconds from the connection's first packet, ``label`` the event without its ssthresh
    and congestion-control name (``fast-retransmit: cwnd 11856 -> 7180``)."""
    t0 = conv.start
    out = []
    for time, d, text in events or ():
        if d != direction:
            continue
        label = text.split(", ssthresh")[0]
        out.append((time - t0, label, EVENT_COLOURS.get(label.split()[0].rstrip(":"), "#7f7f7f")))
    return out


def draw_stream_graphs(conv: Conversation, path, *, cut_note: str | None = None, fmt: str | None = None,
                       events=None) -> None:
    """Write the time-sequence graph of each direction with data, the throughput and the RTT graph
    to ``path`` (.png or .svg, by its suffix; or a binary file object with ``fmt`` "png"/"svg").
    ``events``: ``(time, direction, text)`` marks of a state log (:func:`event_lines`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = [d for d in (0, 1) if any(p.direction == d and p.length for p in conv.packets)] or [0]
    fig, axes = plt.subplots(len(dirs) + 2, 1, figsize=(10, 4 * (len(dirs) + 2)))
    t0 = conv.start
    for ax, d in zip(axes, dirs):
        data = [p for p in conv.packets if p.direction == d and p.length]
        for colour, which in (("#1f77b4", False), ("#d62728", True)):      # one collection per colour
            segs = [p for p in data if ("retransmission" in p.marks) == which]
            if segs:
                ax.vlines([_t(p, t0) for p in segs], [p.rel_seq for p in segs],
                          [p.rel_seq + p.length for p in segs], colors=colour, linewidth=2)
        acks = [p for p in conv.packets if p.direction != d and p.flags & 0x10]
        if acks:
            ax.step([_t(p, t0) for p in acks], [p.rel_ack for p in acks], where="post", color="#2ca02c",
                    label="ACK")
            ax.step([_t(p, t0) for p in acks], [p.rel_ack + p.window_bytes for p in acks], where="post",
                    color="#ff7f0e", label="receive window (ACK + window)")
            sacks = [(_t(p, t0), l, r) for p in acks for l, r in p.sack]
            if sacks:
                ax.vlines([x for x, _, _ in sacks], [l for _, l, _ in sacks], [r for _, _, r in sacks],
                          colors="#9467bd", linewidth=4, alpha=0.6)
        top = max([p.rel_seq + p.length for p in data] + [p.rel_ack for p in acks] + [1])
        ax.set_ylim(-0.02 * top, top * 1.35)      # the window line may run far above: keep the data readable
        lines = event_lines(conv, events, d)
        for i, (x, label, colour) in enumerate(lines):
            ax.axvline(x, color=colour, linestyle="--", linewidth=1)
            ax.text(x, top * (1.3 - 0.08 * (i % 3)), f" {label}", color=colour, fontsize=7, va="top",
                    ha="left")                    # three heights in turn: close events stay legible
        ax.plot([], [], color="#1f77b4", label="data segment")
        ax.plot([], [], color="#d62728", label="retransmission")
        ax.plot([], [], color="#9467bd", label="SACKed")
        if lines:
            ax.plot([], [], color="#7f7f7f", linestyle="--", label="congestion/recovery event (state log)")
        ax.set_title(f"time-sequence: {conv.end(d)} -> {conv.end(1 - d)}")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("relative sequence number")
        ax.legend(loc="upper left", fontsize=8)
    d = dirs[0]
    tp = throughput(conv, d)
    ax = axes[len(dirs)]
    if tp:
        ax.bar([t for t, _ in tp], [v / 1000 for _, v in tp], width=tp[1][0] - tp[0][0] if len(tp) > 1 else 0.1,
               align="edge", color="#1f77b4")
    ax.set_title(f"throughput (acknowledged): {conv.end(d)} -> {conv.end(1 - d)}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kB/s")
    ax = axes[len(dirs) + 1]
    rtt = rtt_samples(conv, d)
    if rtt:
        ax.plot([t for t, _ in rtt], [r * 1000 for _, r in rtt], "o-", color="#2ca02c", markersize=3)
    ax.set_title(f"round-trip time (Karn's rule): {conv.end(d)} -> {conv.end(1 - d)}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("RTT (ms)")
    title = f"connection {conv.index + 1}: {conv.name}"
    if cut_note:
        title += f"\n{cut_note}"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format=fmt)
    plt.close(fig)
