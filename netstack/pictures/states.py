"""The RFC 9293 state diagram (§3.3.2, Figure 5) with the transitions a state log took, highlighted and counted."""
from __future__ import annotations

from collections import Counter
from html import escape

from netstack.tcp.state import State

__all__ = ["EDGES", "state_diagram_svg", "count_transitions"]

# Positions of the eleven states, laid out like Figure 5 of RFC 9293.
_POS = {
    "CLOSED": (420, 50), "LISTEN": (420, 150), "SYN-RECEIVED": (200, 260), "SYN-SENT": (640, 260),
    "ESTABLISHED": (420, 370), "FIN-WAIT-1": (200, 480), "CLOSE-WAIT": (640, 480),
    "FIN-WAIT-2": (200, 600), "CLOSING": (420, 600), "LAST-ACK": (640, 600), "TIME-WAIT": (420, 710),
}

#: The arcs of Figure 5 (from, to, the event / the action), plus the resets and aborts of §3.10.
EDGES = [
    ("CLOSED", "LISTEN", "passive OPEN"), ("CLOSED", "SYN-SENT", "active OPEN / snd SYN"),
    ("LISTEN", "SYN-RECEIVED", "rcv SYN / snd SYN,ACK"), ("LISTEN", "SYN-SENT", "SEND / snd SYN"),
    ("LISTEN", "CLOSED", "CLOSE"), ("SYN-SENT", "SYN-RECEIVED", "rcv SYN / snd ACK"),
    ("SYN-SENT", "ESTABLISHED", "rcv SYN,ACK / snd ACK"), ("SYN-SENT", "CLOSED", "CLOSE, RST or timeout"),
    ("SYN-RECEIVED", "ESTABLISHED", "rcv ACK of SYN"), ("SYN-RECEIVED", "FIN-WAIT-1", "CLOSE / snd FIN"),
    ("SYN-RECEIVED", "LISTEN", "rcv RST"), ("SYN-RECEIVED", "CLOSED", "RST or timeout"),
    ("ESTABLISHED", "FIN-WAIT-1", "CLOSE / snd FIN"), ("ESTABLISHED", "CLOSE-WAIT", "rcv FIN / snd ACK"),
    ("ESTABLISHED", "CLOSED", "RST, ABORT or timeout"),
    ("FIN-WAIT-1", "FIN-WAIT-2", "rcv ACK of FIN"), ("FIN-WAIT-1", "CLOSING", "rcv FIN / snd ACK"),
    ("FIN-WAIT-1", "TIME-WAIT", "rcv FIN,ACK / snd ACK"), ("FIN-WAIT-2", "TIME-WAIT", "rcv FIN / snd ACK"),
    ("CLOSE-WAIT", "LAST-ACK", "CLOSE / snd FIN"), ("CLOSING", "TIME-WAIT", "rcv ACK of FIN"),
    ("LAST-ACK", "CLOSED", "rcv ACK of FIN"), ("TIME-WAIT", "CLOSED", "timeout = 2MSL"),
    ("FIN-WAIT-1", "CLOSED", "RST or timeout"), ("FIN-WAIT-2", "CLOSED", "RST or timeout"),
    ("CLOSE-WAIT", "CLOSED", "RST or timeout"), ("CLOSING", "CLOSED", "RST"), ("LAST-ACK", "CLOSED", "RST"),
]
_KNOWN = {(a, b) for a, b, _ in EDGES}
#: Long arcs routed around the diagram (as Figure 5 draws them): path, label position.
_ROUTES = {("TIME-WAIT", "CLOSED"): ("M358,710 C20,710 20,50 358,50", (90, 400)),
           ("LAST-ACK", "CLOSED"): ("M702,600 C850,600 850,50 482,50", (800, 330))}
#: The arcs Figure 5 draws; the others (resets, aborts, timeouts of §3.10) are drawn only when taken.
_FIGURE5 = {(a, b) for a, b, label in EDGES
                                     if not any(w in label for w in ("RST", "timeout", "ABORT"))
                                     or (a, b) == ("TIME-WAIT", "CLOSED")}


def count_transitions(records) -> Counter:
    """(from, to) -> how many times, from :class:`~netstack.statelog.StateRecord` values."""
    return Counter((r.old.value, r.new.value) for r in records)


def state_diagram_svg(counts: Counter, *, title: str = "TCP state diagram (RFC 9293 §3.3.2)") -> str:
    """The diagram as SVG: every arc of Figure 5 grey, those taken thick and red with ``xN``; resets,
    aborts and timeouts (not drawn in Figure 5) appear when taken, and a transition outside the RFC's
    arcs is drawn dashed, so nothing in the log is hidden."""
    w, h = 860, 790
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" class="states" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
         'font-family="DejaVu Sans, sans-serif" font-size="11">',
         '<defs><marker id="sa" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
         'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w // 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>']
    edges = [e for e in EDGES if (e[0], e[1]) in _FIGURE5 or counts.get((e[0], e[1]))]
    edges += [(a, b, "not in Figure 5") for (a, b) in counts if (a, b) not in _KNOWN]
    pair_seen: Counter = Counter()
    for a, b, label in edges:
        (x1, y1), (x2, y2) = _POS[a], _POS[b]
        n = counts.get((a, b), 0)
        route = _ROUTES.get((a, b))
        k = pair_seen[frozenset((a, b))]
        pair_seen[frozenset((a, b))] += 1
        # curve: offset the control point sideways; reverse arcs and duplicates bend the other way
        dx, dy = x2 - x1, y2 - y1
        length = max((dx * dx + dy * dy) ** 0.5, 1)
        bend = 30 + 25 * k
        cx, cy = (x1 + x2) / 2 - dy / length * bend, (y1 + y2) / 2 + dx / length * bend
        # start and end at the boxes' edges
        sx, sy = _edge_point(x1, y1, cx, cy)
        ex, ey = _edge_point(x2, y2, cx, cy)
        taken = n > 0
        colour = "#d62728" if taken else "#bbbbbb"
        width = 3 if taken else 1.2
        dash = ' stroke-dasharray="5 3"' if label == "not in Figure 5" else ""
        cls = "edge taken" if taken else "edge"
        d = route[0] if route else f"M{sx:.0f},{sy:.0f} Q{cx:.0f},{cy:.0f} {ex:.0f},{ey:.0f}"
        o.append(f'<g class="{cls}" data-from="{a}" data-to="{b}" data-count="{n}">'
                 f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="{width}"{dash} marker-end="url(#sa)"/>')
        lx, ly = route[1] if route else ((sx + 2 * cx + ex) / 4, (sy + 2 * cy + ey) / 4)
        text = f"{label}" + (f"  x{n}" if taken else "")
        weight = ' font-weight="bold"' if taken else ""
        o.append(f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle" fill="{"#b00000" if taken else "#999"}"'
                 f'{weight} font-size="{10 if taken else 9}">{escape(text)}</text></g>')
    visited = {s for pair in counts for s in pair}
    for s in State:
        x, y = _POS[s.value]
        on = s.value in visited
        o.append(f'<g class="state{" visited" if on else ""}"><rect x="{x - 62}" y="{y - 16}" width="124" height="32" '
                 f'rx="8" fill="{"#fde0dd" if on else "#f4f4f4"}" stroke="{"#d62728" if on else "#666"}" '
                 f'stroke-width="{2 if on else 1}"/><text x="{x}" y="{y + 4}" text-anchor="middle" '
                 f'font-weight="bold">{s.value}</text></g>')
    total = sum(counts.values())
    o.append(f'<text x="10" y="{h - 10}" fill="#555">{total} transition{"s" * (total != 1)} in the log; '
             'red arcs were taken (xN: how many times)</text>')
    o.append("</svg>")
    return "\n".join(o)


def _edge_point(x, y, tx, ty, hw=62, hh=16):
    """Where the line from a box's centre (x, y) towards (tx, ty) leaves the box."""
    dx, dy = tx - x, ty - y
    if dx == 0 and dy == 0:
        return x, y
    sx = hw / abs(dx) if dx else float("inf")
    sy = hh / abs(dy) if dy else float("inf")
    s = min(sx, sy)
    return x + dx * s, y + dy * s
