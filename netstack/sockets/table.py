"""An ``ss -tin`` style table of every TCP connection on a stack.

Built only from ``Connection.info()`` (and the listeners' ports), so it shows
exactly what the TCP layer knows: state, queues, addresses, then on an
indented line the congestion control (cubic or newreno, as ss prints it),
the options negotiated (ts, sack, wscale), MSS, RTO and SRTT/RTTVAR (RFC
6298), congestion window and slow-start threshold, sequence variables
(snd_una/snd_nxt/rcv_nxt, RFC 9293 §3.3.1), windows and retransmissions,
the reordering events the loss detection saw, D-SACKs received (``dsack_dups``,
RFC 2883) and recoveries undone as spurious (``undo``, of which after a
timeout: ``spurious_rto``).

``netstack serve`` prints it on SIGUSR1 with the counters
(:func:`netstack.cli.serve_services.report`).
"""
from __future__ import annotations

__all__ = ["connection_infos", "listener_ports", "format_table", "format_info", "stack_table"]

_SHORT_STATE = {
    "ESTABLISHED": "ESTAB", "SYN-SENT": "SYN-SENT", "SYN-RECEIVED": "SYN-RECV", "FIN-WAIT-1": "FIN-WAIT-1",
    "FIN-WAIT-2": "FIN-WAIT-2", "TIME-WAIT": "TIME-WAIT", "CLOSED": "UNCONN", "CLOSE-WAIT": "CLOSE-WAIT",
    "LAST-ACK": "LAST-ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}


def _values(obj):
    if obj is None:
        return []
    if isinstance(obj, dict):
        return list(obj.values())
    return list(obj)


def connection_infos(tcp) -> list[dict]:
    """``info()`` of every connection the TCP layer holds (any state), sorted by address."""
    conns = getattr(tcp, "connections", None)
    infos = []
    for c in _values(conns):
        try:
            infos.append(c.info())
        except Exception as exc:       # the table must never break the report
            infos.append({"state": "?", "local": "?", "remote": repr(c), "error": f"info() failed: {exc}"})
    infos.sort(key=lambda i: (i.get("local", ""), i.get("remote", "")))
    return infos


def listener_ports(tcp) -> list[int]:
    listeners = getattr(tcp, "listeners", None)
    if isinstance(listeners, dict):
        return sorted(listeners)
    return sorted(getattr(l, "port", 0) for l in _values(listeners))


def _ms(v) -> str:
    """Seconds as milliseconds the way ss prints them: 204, 0.045, 1.5."""
    if v is None:
        return "-"
    text = f"{v * 1000:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def format_info(i: dict) -> str:
    """The indented detail line for one connection (ss -i style ``key:value`` words)."""
    words = []
    if i.get("cc"):
        words.append(str(i["cc"]))
    if i.get("timestamps"):
        words.append("ts")
    if i.get("sack_ok"):
        words.append("sack")
    if "snd_wscale" in i and (i.get("wscale_ok") or i.get("snd_wscale") or i.get("rcv_wscale")):
        words.append(f"wscale:{i.get('snd_wscale', 0)},{i.get('rcv_wscale', 0)}")
    if i.get("nodelay"):
        words.append("nodelay")
    if "rto" in i:
        words.append(f"rto:{_ms(i['rto'])}")
    if "srtt" in i:
        words.append(f"rtt:{_ms(i.get('srtt'))}/{_ms(i.get('rttvar'))}")
    for key, label in (("backoff", "backoff"), ("mss", "mss"), ("rcv_mss", "rcvmss"), ("cwnd", "cwnd"),
                       ("ssthresh", "ssthresh")):
        v = i.get(key)
        if v is not None and not (key == "backoff" and not v):
            if key == "ssthresh" and isinstance(v, int) and v >= 1 << 30:
                continue
            words.append(f"{label}:{v}")
    for key in ("snd_una", "snd_nxt", "rcv_nxt", "snd_wnd", "rcv_wnd", "unacked"):
        if key in i:
            words.append(f"{key}:{i[key]}")
    if "retrans" in i:
        words.append(f"retrans:{i.get('retries', 0)}/{i['retrans']}")
    for key, label in (("reordering", "reordering"), ("dsack", "dsack_dups"), ("undo", "undo"),
                       ("spurious_rto", "spurious_rto")):
        if i.get(key):
            words.append(f"{label}:{i[key]}")
    if i.get("ooo_bytes"):
        words.append(f"ooo:{i['ooo_bytes']}")
    timers = i.get("timers")
    if timers:
        active = ",".join(f"{k}" for k, v in sorted(timers.items()) if v is not None)
        if active:
            words.append(f"timers:({active})")
    if i.get("error"):
        words.append(f"error:{i['error']}")
    return "\t " + " ".join(words)


def format_table(infos: list[dict], listening: list[int] = (), local_addr: str = "0.0.0.0") -> str:
    """Render the table: a header, one line per socket, and a detail line per connection."""
    rows = [("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")]
    details: list[str | None] = [None]
    for port in listening:
        rows.append(("LISTEN", "0", "0", f"{local_addr}:{port}", "0.0.0.0:*"))
        details.append(None)
    for i in infos:
        state = str(i.get("state", "?"))
        rows.append((_SHORT_STATE.get(state, state), str(i.get("recv_q", 0)), str(i.get("send_q", 0)),
                     str(i.get("local", "?")), str(i.get("remote", "?"))))
        details.append(format_info(i))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    out = []
    for r, d in zip(rows, details):
        out.append("  ".join(v.ljust(w) if c != 1 and c != 2 else v.rjust(w)
                             for c, (v, w) in enumerate(zip(r, widths))).rstrip())
        if d is not None:
            out.append(d)
    return "\n".join(out)


def stack_table(stack) -> str:
    """The table for every connection on ``stack`` ("" when it has no TCP)."""
    tcp = getattr(stack, "tcp", None)
    if tcp is None:
        return ""
    from netstack.wire.ipv4 import int2ip
    return "TCP connections:\n" + format_table(connection_infos(tcp), listener_ports(tcp), int2ip(stack.addr))
