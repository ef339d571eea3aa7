"""Ladder (message-sequence) diagrams of a TCP conversation: text for the terminal, SVG for slides.

Two time lines, the client on the left and the server on the right, one
arrow per segment, labelled with its flags, relative seq/ack, window, length,
options and (for SMTP and friends) the command or reply text.  Marks
(:data:`~netstack.pictures.conversation.MARKS`) colour the arrow and are named
beside it; the handshake and the close are bracketed.  Congestion and recovery
events from a state log can be marked on an end's time line (``events``).
"""
from __future__ import annotations

from bisect import bisect_right
from html import escape

from .conversation import Capture, Conversation, Packet

__all__ = ["ladder_text", "ladder_svg", "MARK_COLOURS"]

MARK_COLOURS = {"retransmission": "#d62728", "out-of-order": "#1f77b4", "gap": "#8c564b", "dup-ack": "#ff7f0e",
                "zero-window": "#9467bd", "window-probe": "#9467bd", "rst": "#7f0000", "redacted": "#7f7f7f"}
EVENT_COLOUR = "#e377c2"     #: congestion and recovery events from a state log
_SHOWN = ("retransmission", "out-of-order", "gap", "dup-ack", "zero-window", "window-probe", "rst", "redacted")


def _marks(p: Packet) -> list[str]:
    return [m for m in p.marks if m in _SHOWN]


def _rel_time(p: Packet, t0: float) -> str:
    return f"{p.time - t0:10.6f}" if p.time is not None else " " * 10


def ladder_text(conv: Conversation, *, width: int = 30, cut_note: str | None = None) -> str:
    """The ladder as plain text: time (from the first packet), the arrow, the label and the marks."""
    t0 = conv.start
    left, right = conv.end(0), conv.end(1)
    head = f"{'':10}  {left:<{width + 2}}{right}"
    out = [f"connection {conv.index + 1}: {conv.name}" + (f" ({conv.app})" if conv.app else ""), head]
    bar = "-" * width
    phase = None
    for p in conv.packets:
        now = "handshake" if "handshake" in p.marks else "close" if "close" in p.marks else None
        if now != phase:
            if now is not None:
                out.append(f"{'':10}  {'':{width + 2}}   -- {now} --")
            phase = now
        arrow = f"|{bar}>|" if p.direction == 0 else f"|<{bar}|"
        marks = _marks(p)
        note = f"  ** {', '.join(m.upper() for m in marks)}" if marks else ""
        out.append(f"{_rel_time(p, t0)}  {arrow}  {p.label()}{note}")
    if cut_note:
        out.append(cut_note)
    return "\n".join(out)


def capture_ladder_text(cap: Capture, conn: int | None = None) -> str:
    """Every conversation (or just ``conn``, 1-based) as text, with a note when the capture was cut."""
    convs = [cap.conversation(conn)] if conn else cap.conversations
    note = (f"(cut: only the first {cap.max_packets} packets were read; --max-packets)" if cap.cut else None)
    return "\n\n".join(ladder_text(c, cut_note=note) for c in convs)


# ---------------------------------------------------------------------------------------------- SVG

ROW = 34
TOP = 70
LEFT_X = 150
RIGHT_X = 690
WIDTH = 1000


def _short(text: str, limit: int = 44) -> str:
    """An event's text for the margin: up to ", ssthresh" (the whole text is the tooltip)."""
    text = text.split(", ssthresh", 1)[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def ladder_svg(conv: Conversation, *, cut_note: str | None = None, max_rows: int | None = None,
               id_prefix: str = "pkt", events=None) -> str:
    """The ladder as an SVG document (no external references).  Each arrow is a ``<g>`` with
    ``id="{id_prefix}-{packet number}"`` and ``class="seg"`` (the report makes them clickable).

    ``events``: ``(time, end, text)`` marks to put on an end's time line (``end`` 0 or 1, as
    ``conv.end``), after the last segment captured at or before ``time``: the congestion and
    recovery events of a state log (class ``event``, drawn in the right margin)."""
    pk = conv.packets if max_rows is None else conv.packets[:max_rows]
    t0 = conv.start
    height = TOP + ROW * len(pk) + 90
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{WIDTH}" height="{height}" '
         f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, monospace" font-size="11">',
         '<defs>'
         '<marker id="ah" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
         '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>',
         f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
         f'<text x="{WIDTH // 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">'
         f'{escape(f"connection {conv.index + 1}: {conv.name}")}{escape(f" ({conv.app})" if conv.app else "")}</text>']
    bottom = TOP + ROW * len(pk)
    for x, end in ((LEFT_X, conv.end(0)), (RIGHT_X, conv.end(1))):
        o.append(f'<text x="{x}" y="48" text-anchor="middle" font-weight="bold">{escape(end)}</text>')
        o.append(f'<line x1="{x}" y1="56" x2="{x}" y2="{bottom + 10}" stroke="#333" stroke-width="2"/>')
    o.append(f'<text x="10" y="48" fill="#555">time (s)</text>')
    spans: dict[str, list[int]] = {}
    for i, p in enumerate(pk):
        y = TOP + ROW * i
        marks = _marks(p)
        colour = MARK_COLOURS[marks[0]] if marks else "#222"
        x1, x2 = (LEFT_X, RIGHT_X) if p.direction == 0 else (RIGHT_X, LEFT_X)
        dash = ' stroke-dasharray="6 3"' if "retransmission" in marks else ""
        label = p.label()
        if len(label) > 86:
            label = label[:83] + "..."
        cls = " ".join(["seg"] + [f"m-{m}" for m in p.marks])
        o.append(f'<g class="{cls}" id="{id_prefix}-{p.number}" data-packet="{p.number}">')
        o.append(f'<title>{escape(p.line)}</title>')
        if p.time is not None:
            o.append(f'<text x="10" y="{y + 14}" fill="#555">{p.time - t0:.6f}</text>')
        o.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y + 16}" stroke="{colour}" stroke-width="1.6"{dash} '
                 f'marker-end="url(#ah)"/>')
        o.append(f'<text x="{(LEFT_X + RIGHT_X) // 2}" y="{y + 4}" text-anchor="middle" fill="{colour}" '
                 f'stroke="white" stroke-width="3" paint-order="stroke">{escape(label)}</text>')   # a halo
        if marks:
            o.append(f'<text x="{RIGHT_X + 14}" y="{y + 14}" fill="{colour}" font-weight="bold">'
                     f'{escape(", ".join(marks))}</text>')
        o.append('</g>')
        for ph in ("handshake", "close"):
            if ph in p.marks:
                spans.setdefault(ph, []).append(y)
    for ph, ys in spans.items():
        x = WIDTH - 40
        y1, y2 = min(ys) - 6, max(ys) + 22
        o.append(f'<path d="M{x - 8},{y1} L{x},{y1} L{x},{y2} L{x - 8},{y2}" fill="none" stroke="#2ca02c" '
                 f'stroke-width="2"/><text x="{x + 6}" y="{(y1 + y2) // 2}" fill="#2ca02c" '
                 f'transform="rotate(90 {x + 6} {(y1 + y2) // 2})" text-anchor="middle">{ph}</text>')
    if events and pk:
        times = [p.time if p.time is not None else t0 for p in pk]
        for t, end, text in events:
            if times[-1] < t and max_rows is not None and len(conv.packets) > max_rows:
                continue                                       # after the drawn rows
            i = bisect_right(times, t) - 1
            y = TOP + ROW * i + 24 if i >= 0 else TOP - 10
            x = LEFT_X if end == 0 else RIGHT_X
            o.append(f'<g class="event"><title>{escape(text)}</title>'
                     f'<path d="M{x},{y - 6} L{x + 6},{y} L{x},{y + 6} L{x - 6},{y} z" fill="{EVENT_COLOUR}"/>'
                     f'<text x="{RIGHT_X + 14}" y="{y + 4}" fill="{EVENT_COLOUR}" font-style="italic" '
                     f'font-size="10">{escape(_short(text))}</text></g>')
    y = bottom + 34
    x = 10
    for m in _SHOWN:
        o.append(f'<text x="{x}" y="{y}" fill="{MARK_COLOURS[m]}">&#9632; {m}</text>')
        x += 12 + 8 * (len(m) + 2)
    notes = []
    if max_rows is not None and len(conv.packets) > max_rows:
        notes.append(f"only the first {max_rows} of {len(conv.packets)} segments are drawn")
    if cut_note:
        notes.append(cut_note)
    if notes:
        o.append(f'<text x="10" y="{y + 22}" fill="#d62728" class="cut-note">{escape("; ".join(notes))}</text>')
    o.append('</svg>')
    return "\n".join(o)


def ladder_png(conv: Conversation, path: str, *, cut_note: str | None = None, max_rows: int = 400) -> None:
    """The same ladder drawn with matplotlib (for a PNG): arrows, labels, marks, phase brackets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pk = conv.packets[:max_rows]
    rows = len(pk)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.34 * (rows + 3)))
    ax.set_xlim(0, 1)
    ax.set_ylim(rows + 1.5, -1.2)
    ax.axis("off")
    lx, rx = 0.15, 0.69
    for x, end in ((lx, conv.end(0)), (rx, conv.end(1))):
        ax.plot([x, x], [-0.3, rows + 0.3], color="#333", linewidth=2)
        ax.text(x, -0.6, end, ha="center", fontsize=9, fontweight="bold", family="monospace")
    t0 = conv.start
    for i, p in enumerate(pk):
        marks = _marks(p)
        colour = MARK_COLOURS[marks[0]] if marks else "#222"
        x1, x2 = (lx, rx) if p.direction == 0 else (rx, lx)
        ax.annotate("", xy=(x2, i + 0.45), xytext=(x1, i),
                    arrowprops=dict(arrowstyle="->", color=colour, linestyle="--" if "retransmission" in marks else "-"))
        label = p.label()
        ax.text((lx + rx) / 2, i + 0.05, label if len(label) <= 86 else label[:83] + "...", ha="center",
                fontsize=6.5, color=colour, family="monospace")
        if p.time is not None:
            ax.text(0.0, i + 0.3, f"{p.time - t0:.6f}", fontsize=7, color="#555", family="monospace")
        if marks:
            ax.text(rx + 0.02, i + 0.3, ", ".join(marks), fontsize=7, color=colour, fontweight="bold")
    for ph in ("handshake", "close"):
        ys = [i for i, p in enumerate(pk) if ph in p.marks]
        if ys:
            ax.plot([0.95, 0.96, 0.96, 0.95], [min(ys) - 0.2, min(ys) - 0.2, max(ys) + 0.6, max(ys) + 0.6],
                    color="#2ca02c")
            ax.text(0.97, (min(ys) + max(ys)) / 2 + 0.2, ph, rotation=90, va="center", color="#2ca02c", fontsize=8)
    notes = []
    if len(conv.packets) > max_rows:
        notes.append(f"only the first {max_rows} of {len(conv.packets)} segments are drawn")
    if cut_note:
        notes.append(cut_note)
    if notes:
        ax.text(0.0, rows + 1.0, "; ".join(notes), color="#d62728", fontsize=8)
    ax.set_title(f"connection {conv.index + 1}: {conv.name}" + (f" ({conv.app})" if conv.app else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
