"""TCP tunables (one object per TCPLayer; a Connection keeps a reference).

The defaults follow the RFCs and Linux practice; every limit a test needs to
shrink (buffers, MSL, RTO bounds, retry counts) lives here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .syncookies import SynCookieMode


@dataclass
class TCPConfig:
    #: MSS we announce (RFC 9293 §3.7.1): MTU - 20 (IPv4) - 20 (TCP).
    mss: int = 1460
    #: Largest payload we put in one outgoing segment (bytes).  None = the
    #: effective send MSS.  A TSO-capable link later raises this above the MSS.
    max_segment: int | None = None
    #: Receive buffer (bounds the advertised window) and send buffer, bytes.  ``rcvbuf`` is
    #: the initial size of the receive buffer when autotuning is on.
    rcvbuf: int = 256 * 1024
    sndbuf: int = 256 * 1024
    #: Receive-buffer autotuning ("dynamic right-sizing", Linux tcp_rcv_space_adjust): once
    #: per RTT, a connection whose application consumed more than ever before in one RTT
    #: grows its receive buffer to twice that, up to ``rcvbuf_max`` (and 65535 << the window
    #: scale: 64 KB without window scaling).  It never shrinks.  The out-of-order bound
    #: grows with it (the global ``max_ooo_total`` still holds).  Off: ``rcvbuf`` is fixed;
    #: ``Connection.set_rcvbuf`` (SO_RCVBUF) turns it off for one connection.
    rcvbuf_autotune: bool = True
    rcvbuf_max: int = 4 * 1024 * 1024
    #: Bound on bytes held in the out-of-order queue per connection.
    ooo_max: int = 256 * 1024
    #: Maximum segment lifetime; TIME-WAIT lasts 2*MSL (RFC 9293 §3.4.2).
    msl: float = 30.0
    #: RFC 6298 §2: initial RTO 1 s, lower bound 1 s (configurable), upper 60 s.
    rto_initial: float = 1.0
    rto_min: float = 1.0
    rto_max: float = 60.0
    #: Retransmissions of a SYN / SYN-ACK before giving up (Linux tcp_syn_retries).
    syn_retries: int = 6
    #: Retransmissions of data/FIN before aborting with TimeoutError (tcp_retries2).
    data_retries: int = 15
    #: Delayed-ACK timeout bounds, seconds (RFC 9293 §3.8.6.3 / RFC 1122 §4.2.3.2: MUST be
    #: < 0.5 s; we keep it at most 200 ms).  The timer adapts between them to the peer's
    #: segment spacing (Linux's ATO, delack.py ``AckPolicy``): it starts at
    #: ``delack_min`` and doubles, up to ``delack_timeout``, each time it expires.
    #: ``delack_timeout`` is the maximum (also RFC 8985's worst-case delayed ACK in the TLP).
    delack_min: float = 0.04
    delack_timeout: float = 0.2
    #: Quick-ACK mode (Linux tcp_incr_quickack): ACK each of the first data segments at once,
    #: at most this many (fewer if the window is small: rcv_wnd / (2 * MSS), at least 2),
    #: after the connection is established and again after the receiver was idle longer
    #: than the RTO -- so a sender in slow start or restarting after idle, or one held by
    #: Nagle, is not kept waiting for a delayed ACK.  0 disables quick-ACK.
    quickack_segments: int = 16
    #: Interactive ("pingpong") mode, as Linux: in request/response traffic (we answer data
    #: within the delayed-ACK time, or the peer answers ours) quick-ACK is off and the ACK of a
    #: request rides on the reply (delack.py).  False: quick-ACK as above, always.
    pingpong: bool = True
    #: Window scale shift we offer (RFC 7323 §2.2); None disables the option.
    wscale: int | None = 7
    #: Offer / accept RFC 7323 timestamps.
    timestamps: bool = True
    #: Offer / accept SACK-permitted (RFC 2018); with it, SACK blocks and SACK-based recovery (RFC 6675).
    sack: bool = True
    #: Default for TCP_NODELAY on new connections (Nagle off when True).
    nodelay: bool = False
    #: Tail loss probe (RFC 8985 §7): probe ~2*SRTT after the last send instead of
    #: waiting a whole RTO when the tail of a burst is lost.
    tlp: bool = True
    #: Keep-alive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): off unless asked (SO_KEEPALIVE);
    #: first probe after ``keepalive_idle`` s of silence, then every ``keepalive_interval``,
    #: abort after ``keepalive_probes`` unanswered probes (Linux defaults).
    keepalive: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    #: Persist timer bounds (zero-window probes), seconds.
    persist_min: float = 0.2
    persist_max: float = 60.0
    #: Orphaned FIN-WAIT-2 lifetime after close() (Linux tcp_fin_timeout).
    fin_timeout: float = 60.0
    #: SYN cookies (RFC 4987 §3.6, syncookies.py): once the SYN queue is full (AUTO), for
    #: every SYN (ALWAYS) or never.
    syncookies: SynCookieMode = SynCookieMode.AUTO
    #: Resource limits.  Beyond one, a new SYN gets an RST (counted as
    #: ``tcp.limits.refused.<limit>``) and connect() raises ENOBUFS, while existing
    #: connections carry on.
    #: Connections of every state but LISTEN, TIME-WAIT included.
    max_connections: int = 65536
    #: Bytes held in receive, send and out-of-order buffers, all connections together.
    max_buffer_memory: int = 512 * 1024 * 1024
    #: Out-of-order bytes, all connections together (each also has ``ooo_max``).
    max_ooo_total: int = 64 * 1024 * 1024
    #: Connections closed by the application but not yet CLOSED (Linux tcp_max_orphans);
    #: a close() beyond it aborts with an RST instead of an orderly release.
    max_orphans: int = 4096
    #: Challenge ACKs (RFC 5961 §7): at most one per this many seconds per connection (Linux's
    #: tcp_invalid_ratelimit, 500 ms), and at most about ``challenge_ack_limit`` per second for
    #: the whole stack.  The global budget of each second is drawn at random between half and
    #: one and a half times the limit, so an off-path observer cannot use it as a side channel
    #: (CVE-2016-5696).  0 disables the global limit.
    challenge_ack_interval: float = 0.5
    challenge_ack_limit: int = 1000
    #: Initial congestion window in segments (RFC 6928).
    initial_cwnd_segments: int = 10
    #: Congestion control of new connections: "cubic" (RFC 9438 with HyStart++, RFC 9406;
    #: Linux's default) or "newreno" (RFC 5681 + RFC 6582); per socket: TCP_CONGESTION.
    congestion: str = "cubic"
    #: Loss detection with SACK: "rack" (RACK-TLP, RFC 8985) or "rfc6675" (the
    #: conservative SACK-based recovery of RFC 6675).  Without SACK: duplicate ACKs.
    loss_detection: str = "rack"
    #: F-RTO (RFC 5682): after a first timeout, tell a spurious one from a real loss by the
    #: next two ACKs before going back N.  Used when timestamps are off (with them, Eifel
    #: detection, RFC 3522, does the job).
    frto: bool = True
    #: Ephemeral port range for connect() (RFC 6335 §6).
    ephemeral_low: int = 49152
    ephemeral_high: int = 65535

    @classmethod
    def for_mtu(cls, mtu: int, **kw) -> "TCPConfig":
        """A config whose MSS comes from the link MTU (RFC 9293 §3.7.1: MTU - 20 - 20)."""
        return cls(mss=max(mtu - 40, 88), **kw)
