"""Interactive delayed ACK (Linux's "pingpong" mode): in request/response traffic the
ACK of a request rides on its reply.  A scripted SMTP-like session over the simulated
channel (fake clock), its segments counted: no pure ACK goes out directly before a reply
that follows within the delayed-ACK time."""
import pytest

from netstack.tcp import TCPConfig
from netstack.wire.tcp import ACK, FIN, SYN, parse_tcp
from tests.support.tcp_netsim import A_ADDR, B_ADDR, Sim

GREETING = b"220 mx.example ESMTP netstack\r\n"
#: (client command, server reply, client think time before the command)
DIALOGUE = [
    (b"EHLO client.example\r\n", b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0.0),
    (b"MAIL FROM:<a@client.example>\r\n", b"250 2.1.0 Ok\r\n", 0.05),
    (b"RCPT TO:<b@mx.example>\r\n", b"250 2.1.5 Ok\r\n", 0.0),
    (b"RCPT TO:<c@mx.example>\r\n", b"250 2.1.5 Ok\r\n", 1.5),          # idle longer than the RTO
    (b"DATA\r\n", b"354 End data with <CR><LF>.<CR><LF>\r\n", 0.3),
    (b"Subject: hi\r\n\r\n" + b"x" * 900 + b"\r\n.\r\n", b"250 2.0.0 Ok: queued as 1\r\n", 0.0),
    (b"NOOP\r\n", b"250 2.0.0 Ok\r\n", 2.5),
    (b"QUIT\r\n", b"221 2.0.0 Bye\r\n", 0.0),
]


def smtp_session(cfg: TCPConfig):
    sim = Sim(config_a=cfg, config_b=cfg, delay=0.005, jitter=0.0)
    log = []                                   # (time, sender "c"/"s", flags, payload length)
    put = sim.ch.put

    def tap(now, dst_layer, src, dst, data):
        seg = parse_tcp(bytes(data), src=src, dst=dst)
        log.append((now, "c" if src == A_ADDR else "s", seg.flags, len(seg.payload)))
        put(now, dst_layer, src, dst, data)

    sim.ch.put = tap
    lst = sim.b.listen(25)
    ca = sim.a.connect(B_ADDR, 25, sim.now)
    st = {"srv": None, "srv_step": 0, "step": 0, "expect": GREETING, "c_buf": b"", "s_buf": b"",
          "next_at": None}

    def app():
        if st["srv"] is None:
            st["srv"] = lst.accept()
            if st["srv"] is not None:
                st["srv"].send(GREETING)
        srv = st["srv"]
        if srv is None or not ca.established:
            return
        while srv.readable:
            st["s_buf"] += srv.recv(65536)
        j = st["srv_step"]
        if j < len(DIALOGUE) and st["s_buf"] == DIALOGUE[j][0]:
            st["s_buf"] = b""
            srv.send(DIALOGUE[j][1])          # the reply, at once
            st["srv_step"] = j + 1
        while ca.readable:
            st["c_buf"] += ca.recv(65536)
        i = st["step"]
        if st["expect"] is not None and st["c_buf"] == st["expect"]:
            st["c_buf"] = b""
            st["expect"] = None
            if i < len(DIALOGUE):
                st["next_at"] = sim.now + DIALOGUE[i][2]
        if st["next_at"] is not None and sim.now >= st["next_at"]:
            st["next_at"] = None
            ca.send(DIALOGUE[i][0])
            st["expect"] = DIALOGUE[i][1]
            st["step"] = i + 1

    def done():
        return st["step"] == len(DIALOGUE) and st["expect"] is None

    sim.run(done, app=app, max_time=60, idle_tick=0.001)
    return sim, log


def pure_acks_before_replies(log, side, within, delay=0.005):
    """Data segments (replies) of ``side`` directly preceded, among that side's segments, by a
    pure ACK, where the reply follows the peer's data it answers within ``within`` seconds."""
    bad = []
    prev = None
    peer_data_at = None
    for e in log:
        if e[1] != side:
            if e[3] > 0:
                peer_data_at = e[0] + delay            # when it arrives (one-way delay)
            continue
        if prev is not None and e[3] > 0 and peer_data_at is not None:
            pure = prev[3] == 0 and prev[2] & (SYN | FIN) == 0 and prev[2] & ACK
            if pure and e[0] - peer_data_at < within:
                bad.append((round(prev[0], 4), round(e[0], 4)))
        prev = e
    return bad


def test_smtp_session_acks_ride_on_the_replies():
    cfg = TCPConfig()
    sim, log = smtp_session(cfg)
    server_replies = [e for e in log if e[1] == "s" and e[3] > 0]
    assert len(server_replies) == len(DIALOGUE) + 1                 # greeting + one per command
    assert pure_acks_before_replies(log, "s", cfg.delack_timeout) == []
    # The client's commands after the first carry the ACK of the reply before them too, when
    # they follow within the delayed-ACK timer in effect (ato, at its minimum in this mode;
    # MAIL comes 50 ms after the EHLO reply: that one is ACKed by the timer, as in Linux).
    client_cmds = [e for e in log if e[1] == "c" and e[3] > 0]
    assert len(client_cmds) == len(DIALOGUE)
    assert len(pure_acks_before_replies(log, "c", cfg.delack_min)) <= 1       # (only before EHLO)
    assert sim.cb.get("tcp.pingpong") >= 1


def test_without_interactive_mode_a_pure_ack_precedes_replies():
    # the same session with the mode off: quick-ACK answers the requests first
    cfg = TCPConfig(pingpong=False)
    sim, log = smtp_session(cfg)
    assert len(pure_acks_before_replies(log, "s", cfg.delack_timeout)) >= 2
