"""One self-contained HTML page about a capture: connections, ladders, graphs, states, every packet explained.

Nothing is fetched when the page is viewed: the ladders and state diagrams are
inline SVG, the stream graphs inline PNG (data: URIs), the script and style
inline.  Clicking a packet (in the table or on a ladder arrow) shows its
``netstack trace -V`` reading; the readings travel as gzip-compressed JSON
(base64, in a ``<script id="packet-data">``), unpacked by the browser's own
``DecompressionStream``.  Large captures stay bounded: ladders draw at
most ``max_rows`` segments and graphs are drawn for at most ``max_graphs``
connections, each with a note saying so.
"""
from __future__ import annotations

import base64
import gzip
import io
import json
from html import escape

from .conversation import Capture, Conversation, recovery_marks
from .ladder import MARK_COLOURS, ladder_svg
from .states import count_transitions, state_diagram_svg

__all__ = ["build_report"]

_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:0;color:#222}
header{background:#25364a;color:white;padding:12px 20px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0 0;font-size:13px;color:#cfd8e3}
main{display:flex;align-items:flex-start}
#content{flex:1;padding:10px 20px;min-width:0}
#side{width:44%;position:sticky;top:0;height:100vh;overflow:auto;border-left:1px solid #ccc;padding:10px;
 box-sizing:border-box;background:#fafafa}
#explain{font-family:DejaVu Sans Mono,monospace;font-size:11px;white-space:pre;overflow-x:auto}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#eef2f6} tr.pkt{cursor:pointer} tr.pkt:hover{background:#f3f7ff} tr.selected{background:#ffe9a8}
td.line{font-family:DejaVu Sans Mono,monospace;font-size:11px;white-space:nowrap}
g.seg{cursor:pointer} g.seg.selected line{stroke:#e6a100} g.seg.selected text{fill:#b07800;font-weight:bold}
.note{color:#b00000} .mark{font-weight:bold} section{margin-bottom:28px}
.legend span{margin-right:14px}
"""

_JS = """
(function(){
  var data = null, wanted = null;
  async function load(){
    // the packets' readings: JSON, gzip-compressed, base64 (DecompressionStream: no library, no network)
    var el = document.getElementById('packet-data');
    var raw = atob(el.textContent.trim()), bin = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bin[i] = raw.charCodeAt(i);
    var stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream('gzip'));
    data = JSON.parse(await new Response(stream).text());
    document.body.setAttribute('data-ready', '1');
    if (wanted !== null) select(wanted);
  }
  function select(n){
    if (data === null) { wanted = n; return; }
    var p = data[n]; if(!p) return;
    document.querySelectorAll('.selected').forEach(function(e){e.classList.remove('selected');});
    var row = document.getElementById('row-' + n); if(row){row.classList.add('selected');}
    document.querySelectorAll('g.seg[data-packet="' + n + '"]').forEach(function(g){g.classList.add('selected');});
    document.getElementById('explain-title').textContent = 'packet ' + n + (p.kind ? ' (' + p.kind + ')' : '');
    document.getElementById('explain-line').textContent = p.line;
    document.getElementById('explain').textContent = p.explain;
  }
  document.querySelectorAll('tr.pkt').forEach(function(r){
    r.addEventListener('click', function(){ select(r.getAttribute('data-packet')); });
  });
  document.querySelectorAll('g.seg').forEach(function(g){
    g.addEventListener('click', function(){ select(g.getAttribute('data-packet'));
      var row = document.getElementById('row-' + g.getAttribute('data-packet')); if(row) row.scrollIntoView({block:'center'}); });
  });
  window.netstackSelect = select;
  load();
})();
"""


def _graphs_png(conv: Conversation, note: str | None, events=None) -> str:
    from .graphs import draw_stream_graphs
    buf = io.BytesIO()
    draw_stream_graphs(conv, buf, cut_note=note, fmt="png", events=events)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def build_report(cap: Capture, *, state_records=None, recovery_records=None, title: str | None = None,
                 max_rows: int = 400, max_graphs: int = 12) -> str:
    """The report page as one HTML string.  ``state_records`` (StateRecord) and ``recovery_records``
    (RecoveryRecord) come from a state log (:func:`netstack.statelog.read_log`): each connection
    gets its state diagrams and transitions, and a table of its congestion and recovery events."""
    title = title or f"netstack report: {cap.name}"
    cut = (f"cut: only the first {cap.max_packets} packets were read (--max-packets)" if cap.cut else None)
    o = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
         f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
         f"<header><h1>{escape(title)}</h1><p>{len(cap.packets)} packets, {len(cap.conversations)} TCP "
         f"connection{'s' * (len(cap.conversations) != 1)}"
         f"{', state log: ' + str(len(state_records)) + ' transitions' if state_records is not None else ''}"
         f"{', ' + str(len(recovery_records)) + ' recovery events' if recovery_records else ''}"
         f"{' &mdash; ' + escape(cut) if cut else ''}</p></header>",
         "<main><div id='content'>"]
    # the list of connections
    o.append("<section id='connections'><h2>Connections</h2><table><tr><th>#</th><th>client</th><th>server</th>"
             "<th>application</th><th>segments</th><th>retransmissions</th><th>duplicate ACKs</th>"
             "<th>zero windows</th><th>RSTs</th></tr>")
    for c in cap.conversations:
        o.append(f"<tr><td><a href='#conn-{c.index + 1}'>{c.index + 1}</a></td><td>{escape(c.end(0))}</td>"
                 f"<td>{escape(c.end(1))}</td><td>{escape(c.app or '-')}</td><td>{len(c.packets)}</td>"
                 f"<td>{c.count('retransmission')}</td><td>{c.count('dup-ack')}</td>"
                 f"<td>{c.count('zero-window')}</td><td>{c.count('rst')}</td></tr>")
    o.append("</table></section>")
    legend = "".join(f"<span style='color:{col}'>&#9632; {m}</span>" for m, col in MARK_COLOURS.items())
    # each connection
    for c in cap.conversations:
        o.append(f"<section class='conn' id='conn-{c.index + 1}'><h2>Connection {c.index + 1}: "
                 f"{escape(c.name)}{escape(' (' + c.app + ')' if c.app else '')}</h2>")
        o.append(f"<h3>Ladder</h3><p class='legend'>{legend}</p>")
        marks = recovery_marks(c, recovery_records) if recovery_records else None
        o.append(ladder_svg(c, cut_note=cut, max_rows=max_rows, id_prefix=f"c{c.index + 1}-pkt", events=marks))
        o.append("<h3>Stream graphs</h3>")
        if c.index < max_graphs:
            o.append(f"<img class='graphs' alt='time-sequence, throughput and RTT graphs of connection "
                     f"{c.index + 1}' src='data:image/png;base64,{_graphs_png(c, cut, marks)}'>")
        else:
            o.append(f"<p class='note'>graphs are drawn for the first {max_graphs} connections only "
                     f"(netstack draw seq --conn {c.index + 1} draws this one)</p>")
        if state_records is not None:
            mine = [r for r in state_records if {r.local, r.remote} == {c.end(0), c.end(1)}]
            o.append("<h3>States</h3>")
            if mine:
                for end in sorted({r.local for r in mine}):
                    recs = [r for r in mine if r.local == end]
                    o.append(state_diagram_svg(count_transitions(recs), title=f"TCP states of {end}"))
                    o.append("<table class='transitions'><tr><th>time</th><th>end</th><th>from</th><th>to</th>"
                             "<th>cause</th></tr>")
                    t0 = c.start
                    for r in recs:
                        o.append(f"<tr><td>{r.time - t0:.6f}</td><td>{escape(r.local)}</td><td>{r.old.value}</td>"
                                 f"<td>{r.new.value}</td><td>{escape(r.cause_text())}</td></tr>")
                    o.append("</table>")
            else:
                o.append("<p class='note'>no transitions of this connection in the state log</p>")
        if recovery_records:
            mine = [r for r in recovery_records if {r.local, r.remote} == {c.end(0), c.end(1)}]
            if mine:
                o.append("<h3>Congestion and recovery</h3><table class='recovery'><tr><th>time</th><th>end</th>"
                         "<th>event</th><th>cwnd before</th><th>cwnd</th><th>ssthresh</th><th>RTO</th>"
                         "<th>detail</th></tr>")
                t0 = c.start
                for r in mine:
                    detail = r.text().split(": ", 1)[0]
                    o.append(f"<tr><td>{r.time - t0:.6f}</td><td>{escape(r.local)}</td><td>{r.kind.value}</td>"
                             f"<td>{r.prior_cwnd}</td><td>{r.cwnd}</td><td>{r.ssthresh}</td><td>{r.rto:g}</td>"
                             f"<td>{escape(detail)}{escape(' (' + r.cc + ')') if r.cc else ''}</td></tr>")
                o.append("</table>")
        o.append("</section>")
    # every packet
    o.append("<section id='packets'><h2>Packets</h2><p>Click a packet (here or on a ladder arrow) to read it "
             "field by field.</p><table><tr><th>No.</th><th>conn</th><th>kind</th><th>marks</th>"
             "<th>application</th><th>tcpdump line</th></tr>")
    data = {}
    conn_of = {}
    for c in cap.conversations:
        for p in c.packets:
            conn_of[p.number] = c.index + 1
    for p in cap.packets:
        kind = p.kind() if p.is_tcp else ""
        marks = ", ".join(p.marks)
        o.append(f"<tr class='pkt' id='row-{p.number}' data-packet='{p.number}'><td>{p.number}</td>"
                 f"<td>{conn_of.get(p.number, '')}</td><td>{escape(kind)}</td><td class='mark'>{escape(marks)}</td>"
                 f"<td>{escape(p.app)}</td><td class='line'>{escape(p.line)}</td></tr>")
        data[p.number] = {"line": p.line, "explain": p.explain, "kind": kind}
    o.append("</table>")
    if cut:
        o.append(f"<p class='note'>{escape(cut)}</p>")
    o.append("</section></div>")
    o.append("<aside id='side'><h2 id='explain-title'>No packet selected</h2>"
             "<p id='explain-line' style='font-family:monospace;font-size:11px'></p>"
             "<pre id='explain'>Click a packet to see its explanation (the same text as netstack trace -V).</pre>"
             "</aside></main>")
    blob = base64.b64encode(gzip.compress(json.dumps(data).encode("utf-8"), 6)).decode("ascii")
    o.append(f"<script type='application/octet-stream' id='packet-data' data-encoding='gzip+base64'>{blob}</script>")
    o.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(o)
