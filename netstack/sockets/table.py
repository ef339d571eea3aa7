"""The connection table of a stack, in the shape of ``ss -tanio``.

Two steps, so that a running stack can be asked over its control socket
(:mod:`netstack.control`) and the table printed elsewhere (``netstack ss``):

* :func:`snapshot` takes, inside the stack's loop, a plain JSON-safe picture
  of every listener (:meth:`Listener.info`) and connection
  (:meth:`Connection.info`), with timer deadlines turned into the time left;
* :func:`format_ss` prints it as ``ss`` does: ``State Recv-Q Send-Q Local
  Address:Port Peer Address:Port``; a LISTEN row shows the accept queue
  (Recv-Q) and the backlog (Send-Q).  With ``timers`` (ss ``-o``) a row ends
  in ``timer:(retrans,204ms,1)``: the timer in the connection's exclusive slot
  (retrans, persist, keepalive, timewait, finwait2), the time left in ss's
  own format, and how often it fired unanswered.  With ``info`` (ss ``-i``) an
  indented line follows: options (ts, sack, wscale), rto, rtt (SRTT/RTTVAR,
  RFC 6298), ato, mss, cwnd in segments as ss shows it and ``cwnd_bytes``
  (netstack counts the window in bytes, RFC 5681), ssthresh, bytes_acked,
  segs_out, segs_in, minrtt, then the sequence variables of RFC 9293 §3.3.1
  (snd_una, snd_nxt, rcv_nxt, windows) for teaching, and what loss recovery
  saw: reordering events, D-SACKs received (``dsack_dups``, RFC 2883) and
  recoveries undone as spurious (``undo``; after a timeout: ``spurious_rto``).
  The congestion control (cubic or newreno) leads the line, as ss prints it.

``netstack serve`` prints :func:`stack_table` on SIGUSR1 (all sockets, with
``-i`` and ``-o`` detail).  Several stacks on one address (the workers of
``netstack serve --workers``): :func:`merge_snapshots` makes one picture with
each row's ``worker``, and :func:`format_ss` then adds a ``Worker`` column.
"""
from __future__ import annotations

import socket as _socket
from functools import lru_cache

__all__ = ["snapshot", "merge_snapshots", "format_ss", "stack_table", "ss_ms_timer", "STATE_FILTERS"]

_SHORT_STATE = {
    "ESTABLISHED": "ESTAB", "SYN-SENT": "SYN-SENT", "SYN-RECEIVED": "SYN-RECV", "FIN-WAIT-1": "FIN-WAIT-1",
    "FIN-WAIT-2": "FIN-WAIT-2", "TIME-WAIT": "TIME-WAIT", "CLOSED": "UNCONN", "CLOSE-WAIT": "CLOSE-WAIT",
    "LAST-ACK": "LAST-ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}

#: ss's state filters: by default the connected sockets (no LISTEN, TIME-WAIT, SYN-RECV
#: or CLOSED, as ss's SS_CONN), ``-l`` the listening ones, ``-a`` all.
STATE_FILTERS = {
    "connected": lambda st: st not in ("LISTEN", "TIME-WAIT", "SYN-RECEIVED", "CLOSED"),
    "listening": lambda st: st == "LISTEN",
    "all": lambda st: True,
}

#: timer names as printed (ss calls the retransmission timer "on"; we spell it out)
_TIMER_NAMES = {"retransmit": "retrans"}


def _left(at, now: float):
    return None if at is None else max(0.0, at - now)


def snapshot(stack, now: float | None = None) -> dict:
    """Every listener and connection of ``stack`` as plain data (call it in the stack's loop).

    Deadlines become seconds left from ``now`` (default: the stack's clock), so the
    picture can cross a process boundary."""
    from netstack.wire.ipv4 import int2ip
    if now is None:
        now = stack.clock()
    tcp = stack.tcp
    addr = int2ip(stack.addr)
    listeners = []
    for lst in sorted(tcp.listeners.values(), key=lambda l: l.port):
        i = lst.info()
        i["local"] = f"{addr}:{i.pop('port')}"
        i["remote"] = "0.0.0.0:*"
        listeners.append(i)
    conns = []
    for c in list(tcp.connections.values()):
        try:
            i = c.info()
        except Exception as exc:           # the table must never break the report
            i = {"state": "?", "local": "?", "remote": repr(c), "error": f"info() failed: {exc}"}
        timer = i.get("timer")
        if timer is not None:
            i["timer"] = {"name": timer["name"], "left": _left(timer["at"], now), "fired": timer["fired"]}
        if i.get("timers"):
            i["timers"] = {k: _left(v, now) for k, v in i["timers"].items()}
        conns.append(i)
    conns.sort(key=lambda i: (i.get("local", ""), i.get("remote", "")))
    return {"addr": addr, "listeners": listeners, "connections": conns}


def _port_of(endpoint: str) -> int:
    port = str(endpoint).rpartition(":")[2]
    return int(port) if port.isdigit() else -1


def merge_snapshots(snaps) -> dict:
    """One picture of several :func:`snapshot` s of stacks on one address, the i-th from worker i:
    every row keeps its worker (``"worker": i``), each worker's listeners are rows of their own
    (as ``ss`` shows SO_REUSEPORT sockets)."""
    listeners, conns = [], []
    for index, snap in enumerate(snaps):
        listeners += [{**i, "worker": index} for i in snap.get("listeners", ())]
        conns += [{**i, "worker": index} for i in snap.get("connections", ())]
    listeners.sort(key=lambda i: (_port_of(i.get("local", "")), i["worker"]))
    conns.sort(key=lambda i: (i.get("local", ""), i.get("remote", "")))
    addr = snaps[0].get("addr") if snaps else None
    return {"addr": addr, "workers": len(snaps), "listeners": listeners, "connections": conns}


def _ms(v) -> str:
    """Seconds as milliseconds the way ss prints rtt and rto: 204, 0.045, 1.5."""
    if v is None:
        return "-"
    text = f"{v * 1000:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def ss_ms_timer(seconds: float) -> str:
    """Time left as ss ``-o`` prints it (iproute2's print_ms_timer): ``204ms``, ``045ms``,
    ``1.500ms`` (1.5 s), ``12sec``, ``2min3sec``, ``15min``; ``0ms`` when due (ss prints nothing)."""
    timeout = max(0, int(round(seconds * 1000)))
    secs, msecs = divmod(timeout, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}ms"
    return out or "0ms"


def _segments(nbytes, mss) -> int | None:
    if nbytes is None or not mss:
        return None
    return max(1, nbytes // mss) if nbytes else 0


def format_info(i: dict) -> str:
    """The indented ``-i`` line for one connection (ss's ``key:value`` words)."""
    words = []
    if i.get("cc"):
        words.append(str(i["cc"]))
    if i.get("timestamps"):
        words.append("ts")
    if i.get("sack_ok"):
        words.append("sack")
    if i.get("wscale_ok"):
        words.append(f"wscale:{i.get('snd_wscale', 0)},{i.get('rcv_wscale', 0)}")
    if i.get("nodelay"):
        words.append("nodelay")
    if "rto" in i:
        words.append(f"rto:{_ms(i['rto'])}")
    if i.get("srtt") is not None:
        words.append(f"rtt:{_ms(i['srtt'])}/{_ms(i.get('rttvar'))}")
    if i.get("ato") is not None:
        words.append(f"ato:{_ms(i['ato'])}")
    if i.get("backoff"):
        words.append(f"backoff:{i['backoff']}")
    mss = i.get("mss")
    if mss is not None:
        words.append(f"mss:{mss}")
    if i.get("rcv_mss") is not None:
        words.append(f"rcvmss:{i['rcv_mss']}")
    cwnd = i.get("cwnd")
    if cwnd is not None:
        words.append(f"cwnd:{_segments(cwnd, mss)}")
        words.append(f"cwnd_bytes:{cwnd}")
    ssthresh = i.get("ssthresh")
    if isinstance(ssthresh, int) and ssthresh < 1 << 30:
        words.append(f"ssthresh:{_segments(ssthresh, mss)}")
    for key in ("bytes_acked", "segs_out", "segs_in"):
        if key in i:
            words.append(f"{key}:{i[key]}")
    if i.get("minrtt") is not None:
        words.append(f"minrtt:{_ms(i['minrtt'])}")
    if i.get("unacked"):
        words.append(f"unacked:{i['unacked']}")
    if i.get("retrans"):
        words.append(f"retrans:{i.get('retries', 0)}/{i['retrans']}")
    for key in ("snd_una", "snd_nxt", "rcv_nxt", "snd_wnd", "rcv_wnd"):
        if key in i:
            words.append(f"{key}:{i[key]}")
    for key, label in (("reordering", "reordering"), ("dsack", "dsack_dups"), ("undo", "undo"),
                       ("spurious_rto", "spurious_rto")):
        if i.get(key):
            words.append(f"{label}:{i[key]}")
    if i.get("ooo_bytes"):
        words.append(f"ooo:{i['ooo_bytes']}")
    if "rcvbuf" in i:                  # the receive buffer's size now (autotuned, or fixed: "rcvbuf_fixed")
        words.append(f"rcvbuf{'' if i.get('rcvbuf_autotune') else '_fixed'}:{i['rcvbuf']}")
    if i.get("error"):
        words.append(f"error:{i['error']}")
    return "\t " + " ".join(words)


def _timer_word(i: dict) -> str:
    t = i.get("timer")
    if not t:
        return ""
    return f"timer:({_TIMER_NAMES.get(t['name'], t['name'])},{ss_ms_timer(t['left'] or 0.0)},{t['fired']})"


#: ports left numeric even without -n, as ss leaves the ephemeral range: Linux's default
#: (32768-60999, the kernel peers' ports) and TCPConfig's (49152-65535, ours)
_EPHEMERAL = range(32768, 65536)


@lru_cache(maxsize=256)
def _service(port: str) -> str:
    if not port.isdigit() or int(port) in _EPHEMERAL:
        return port
    try:
        return _socket.getservbyport(int(port), "tcp")
    except (OSError, ValueError, OverflowError):
        return port


def _endpoint(text: str, numeric: bool) -> str:
    if numeric:
        return text
    host, sep, port = str(text).rpartition(":")
    if not sep or port == "*":
        return text
    return f"{host}:{_service(port)}"


def format_ss(snap: dict, *, states: str = "connected", info: bool = False, timers: bool = False,
              numeric: bool = False) -> str:
    """Print a :func:`snapshot` like ``ss -t`` (``states``: a key of :data:`STATE_FILTERS`;
    ``info``: ss ``-i``; ``timers``: ss ``-o``; ``numeric``: ss ``-n``, else ports by
    service name from the services database, as ss does)."""
    keep = STATE_FILTERS[states]
    workers = "workers" in snap               # merge_snapshots: a Worker column
    rows = [("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")
            + (("Worker",) if workers else ()) + ("",)]
    details: list[str | None] = [None]
    for i in list(snap.get("listeners", ())) + list(snap.get("connections", ())):
        state = str(i.get("state", "?"))
        if not keep(state):
            continue
        is_conn = state != "LISTEN"
        rows.append((_SHORT_STATE.get(state, state), str(i.get("recv_q", 0)), str(i.get("send_q", 0)),
                     _endpoint(i.get("local", "?"), numeric), _endpoint(i.get("remote", "?"), numeric))
                    + ((str(i.get("worker", "?")),) if workers else ())
                    + (_timer_word(i) if timers and is_conn else "",))
        details.append(format_info(i) if info and is_conn else None)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r, d in zip(rows, details):
        out.append("  ".join(v.rjust(w) if c in (1, 2) else v.ljust(w)
                             for c, (v, w) in enumerate(zip(r, widths))).rstrip())
        if d is not None:
            out.append(d)
    return "\n".join(out)


def stack_table(stack) -> str:
    """Every socket on ``stack`` with ``-i`` and ``-o`` detail ("" when it has no TCP)."""
    if getattr(stack, "tcp", None) is None:
        return ""
    return "TCP connections:\n" + format_ss(snapshot(stack), states="all", info=True, timers=True, numeric=True)
