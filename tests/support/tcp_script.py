"""packetdrill-style scripted scenarios for the sans-I/O TCP.

One TCPLayer ("us", 192.0.2.1) and a scripted peer (192.0.2.2).  The test
plays the peer: it injects segments with ``peer(...)`` at a fake time and
asserts on what we send with ``expect(...)``::

    s = Script()
    lst = s.layer.listen(80)
    s.peer("S", seq=1000, win=65535, mss=1460, wscale=7, sackok=True, ts=(100, 0))
    synack = s.expect("S.", ack=1001, mss=1460, wscale=7, sackok=True, ts_ecr=100)
    s.peer(".", seq=1001, ack=synack.seq + 1, ts=(101, synack.options.ts_val))
    conn = lst.accept()

Flags use tcpdump letters: S=SYN, F=FIN, R=RST, P=PSH, "."=ACK.  Times:
``s.at(t)`` moves the fake clock forward and calls ``layer.poll``.
"""
from __future__ import annotations

from netstack.counters import Counters
from netstack.tcp import TCPConfig, TCPLayer
from netstack.wire.ipv4 import ip2int
from netstack.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, flags_str, parse_tcp, tcp_segment
from netstack.wire.tcp_options import build_options

US = ip2int("192.0.2.1")
PEER = ip2int("192.0.2.2")
_LETTERS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, ".": ACK, "U": URG}


def parse_flags(text: str) -> int:
    f = 0
    for ch in text:
        f |= _LETTERS[ch]
    return f


class Script:
    def __init__(self, config: TCPConfig | None = None, *, now: float = 0.0, peer_port: int = 40000,
                 secret: bytes = b"\x01" * 16):
        self.counters = Counters()
        self.config = config or TCPConfig()
        self.layer = TCPLayer(US, counters=self.counters, config=self.config, isn_secret=secret)
        self.now = now
        self.peer_port = peer_port
        self.local_port = 80

    # ---- time
    def at(self, t: float) -> None:
        """Advance the fake clock to ``t`` and run due timers."""
        assert t >= self.now, "time runs forward"
        self.now = t
        self.layer.poll(t)

    def after(self, dt: float) -> None:
        self.at(self.now + dt)

    def poll(self) -> None:
        self.layer.poll(self.now)

    # ---- the peer speaks
    def peer(self, flags: str, *, seq: int, ack: int = 0, win: int = 65535, data: bytes = b"",
             mss=None, wscale=None, sackok: bool = False, ts=None, options: bytes | None = None,
             sport: int | None = None, dport: int | None = None, corrupt: bool = False) -> None:
        if options is None:
            options = build_options(mss=mss, wscale=wscale, sack_permitted=sackok, ts=ts)
        seg = bytearray(tcp_segment(src=PEER, dst=US, src_port=sport or self.peer_port,
                                    dst_port=dport or self.local_port, seq=seq & 0xFFFFFFFF,
                                    ack=ack & 0xFFFFFFFF, flags=parse_flags(flags), window=win,
                                    options=options, payload=data))
        if corrupt:
            seg[-1] ^= 0xFF
        self.layer.on_datagram(PEER, US, memoryview(seg), self.now)

    # ---- what we sent
    def sent(self) -> list:
        """Drain and parse everything we sent so far (checksums verified)."""
        out = []
        while self.layer.outbox:
            dst, data, *_df = self.layer.outbox.popleft()
            assert dst == PEER
            out.append(parse_tcp(bytes(data), src=US, dst=PEER))
        return out

    def expect(self, flags: str, **fields):
        """Pop the next segment we sent and check it.  Keywords: seq, ack, win, data, len,
        mss, wscale, sackok, ts (bool: present?), ts_ecr, ts_val, no_options."""
        assert self.layer.outbox, f"expected a [{flags}] segment, we sent nothing"
        dst, data, *_df = self.layer.outbox.popleft()
        seg = parse_tcp(bytes(data), src=US, dst=PEER)
        want = parse_flags(flags)
        assert seg.flags == want, f"expected [{flags}], got [{flags_str(seg.flags)}] {seg!r}"
        o = seg.options
        for k, v in fields.items():
            if k == "seq":
                got = seg.seq; v &= 0xFFFFFFFF
            elif k == "ack":
                got = seg.ack; v &= 0xFFFFFFFF
            elif k == "win":
                got = seg.window
            elif k == "data":
                got = bytes(seg.payload)
            elif k == "len":
                got = len(seg.payload)
            elif k == "mss":
                got = o.mss
            elif k == "wscale":
                got = o.wscale
            elif k == "sackok":
                got = o.sack_permitted
            elif k == "ts":
                got = o.ts_val is not None
            elif k == "ts_ecr":
                got = o.ts_ecr
            elif k == "ts_val":
                got = o.ts_val
            elif k == "dport":
                got = seg.dst_port
            elif k == "sport":
                got = seg.src_port
            elif k == "no_options":
                got = (len(seg.options_raw) == 0)
            else:
                raise TypeError(f"unknown field {k}")
            assert got == v, f"{k}: expected {v!r}, got {got!r} in {seg!r}"
        return seg

    def expect_nothing(self) -> None:
        assert not self.layer.outbox, f"expected silence, we sent {self.sent()!r}"

    # ---- common openings
    def passive_open(self, *, port: int = 80, isn: int = 1000, win: int = 65535, mss: int = 1460,
                     wscale=7, sackok: bool = True, ts=(100, 0), backlog: int = 128):
        """Listen, peer SYN, our SYN-ACK, peer ACK, accept.  Returns (conn, synack)."""
        self.local_port = port
        lst = self.layer.listeners.get(port) or self.layer.listen(port, backlog)
        self.peer("S", seq=isn, win=win, mss=mss, wscale=wscale, sackok=sackok, ts=ts)
        synack = self.expect("S.", ack=isn + 1)
        ack_ts = (ts[0] + 1, synack.options.ts_val) if ts else None
        self.peer(".", seq=isn + 1, ack=synack.seq + 1, win=win, ts=ack_ts)
        conn = lst.accept()
        assert conn is not None
        self.peer_isn = isn
        self.our_isn = synack.seq
        self.peer_ts = ts[0] + 1 if ts else None
        self.expect_nothing()
        return conn, synack

    def active_open(self, *, isn: int = 5000, win: int = 65535, mss: int = 1460, wscale=7,
                    sackok: bool = True, ts=True, nodelay=None):
        """connect(), peer SYN-ACK, our ACK.  Returns (conn, syn)."""
        conn = self.layer.connect(PEER, 8080, self.now, nodelay=nodelay)
        self.local_port = conn.local_port
        self.peer_port = 8080
        syn = self.expect("S")
        peer_ts = (500, syn.options.ts_val) if ts else None
        self.peer("S.", seq=isn, ack=syn.seq + 1, win=win, mss=mss, wscale=wscale, sackok=sackok,
                  ts=peer_ts, sport=8080, dport=conn.local_port)
        self.expect(".", seq=syn.seq + 1, ack=isn + 1)
        self.peer_isn = isn
        self.our_isn = syn.seq
        self.peer_ts = 501 if ts else None
        return conn, syn
