"""Hostile TCP from inside the lab namespace, bounded in count and time (run by path):

    ip netns exec NS python3 _tcp_attack.py MODE IFNAME ARGS...

Packets go out through AF_PACKET on the lab's TUN device, exactly as built (spoofed
sources stay inside 198.18.0.0/15, the lab's range).  Each mode prints one JSON line.

Modes:
  flood IFNAME DST PORT COUNT RATE       COUNT SYNs from random spoofed sources (198.19.x.y)
                                         and random ports, at about RATE per second
  echo-clients DST PORT N NBYTES T       N kernel clients at once, each connects, sends
                                         NBYTES and reads them back; each bounded by T s
  inject IFNAME DST PORT NBYTES          a kernel client echoes NBYTES through DST:PORT
                                         while blind RSTs, SYNs and data with guessed numbers
                                         are injected on its 4-tuple (the guesses are taken
                                         from sniffing the flow: the attacker's best case)
  fuzz IFNAME DST PORT                   segments with every flag combination, absurd
                                         windows and MSS values, and broken options
"""
from __future__ import annotations

import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
SRC_KERNEL = "198.18.0.1"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, window: int = 65535,
           options: bytes = b"", payload: bytes = b"", ident: int = 0) -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4 | (flags >> 8 & 1),
                      flags & 0xFF, window & 0xFFFF, 0, 0) + options + payload
    c = _csum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident & 0xFFFF, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp


def out(**kw) -> None:
    print(json.dumps(kw), flush=True)


def flood(ifname: str, dst: str, port: int, count: int, rate: float) -> None:
    count = min(count, 1_000_000)
    rng = random.Random(1)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    mss = b"\x02\x04\x05\xb4"
    t0 = time.monotonic()
    deadline = t0 + count / rate * 3 + 10          # bounded in time whatever happens
    sent = errors = 0
    while sent < count and time.monotonic() < deadline:
        due = t0 + sent / rate
        now = time.monotonic()
        if due > now:
            time.sleep(min(due - now, 0.01))
            continue
        src = f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        try:
            sock.sendto(packet(src, dst, rng.randrange(1024, 65536), port, rng.getrandbits(32), 0, 0x02,
                               options=mss, ident=sent), (ifname, ETH_P_IP))
        except OSError:
            errors += 1                             # the TUN's queue was full: count and go on
        sent += 1
    out(sent=sent, errors=errors, seconds=round(time.monotonic() - t0, 2))


def echo_clients(dst: str, port: int, n: int, nbytes: int, limit: float) -> None:
    results: list = [None] * min(n, 1000)

    def one(i: int) -> None:
        t = time.monotonic()
        data = random.Random(i).randbytes(nbytes)
        try:
            with socket.create_connection((dst, port), timeout=limit) as s:
                s.sendall(data)
                got = b""
                while len(got) < nbytes and time.monotonic() - t < limit:
                    chunk = s.recv(nbytes - len(got))
                    if not chunk:
                        break
                    got += chunk
            results[i] = {"ok": got == data, "seconds": round(time.monotonic() - t, 3)}
        except OSError as e:
            results[i] = {"ok": False, "error": repr(e), "seconds": round(time.monotonic() - t, 3)}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit + 5)
    out(results=results)


def _sniff_seq(ifname: str, sport: int, dport: int, timeout: float = 10.0):
    """The latest (seq, ack, end) the kernel client sent on the flow, read off the TUN (``end``:
    seq + its payload length; with offloads the segment may be a 64 KB super-segment)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.settimeout(0.5)
    end = time.monotonic() + timeout
    found = None
    try:
        while time.monotonic() < end:
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            if len(data) < 40 or data[9] != 6:
                continue
            ihl = (data[0] & 0xF) * 4
            sp, dp, seq, ack = struct.unpack_from("!HHII", data, ihl)
            if sp == sport and dp == dport:
                tlen = struct.unpack_from("!H", data, 2)[0]
                found = (seq, ack, (seq + tlen - ihl - (data[ihl + 12] >> 4) * 4) & 0xFFFFFFFF)
                break
    finally:
        s.close()
    return found


def inject(ifname: str, dst: str, port: int, nbytes: int) -> None:
    """Echo ``nbytes`` through DST:PORT while injecting; report what came back."""
    data = random.Random(7).randbytes(min(nbytes, 200_000_000))
    c = socket.create_connection((dst, port), timeout=60)
    sport = c.getsockname()[1]
    done: dict = {}

    def send() -> None:
        try:
            for i in range(0, len(data), 1 << 16):        # paced, so the attack has time to work
                c.sendall(data[i:i + (1 << 16)])
                time.sleep(0.04)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            done["send_error"] = repr(e)

    def receive() -> None:
        h = hashlib.sha256()
        n = 0
        try:
            while chunk := c.recv(1 << 16):
                h.update(chunk)
                n += len(chunk)
        except OSError as e:
            done["recv_error"] = repr(e)
        done["received"] = n
        done["received_sha256"] = h.hexdigest()

    threads = [threading.Thread(target=send), threading.Thread(target=receive)]
    for t in threads:
        t.start()
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    rng = random.Random(3)
    injected = 0
    deadline = time.monotonic() + 60
    while threads[1].is_alive() and injected < 4000 and time.monotonic() < deadline:
        got = _sniff_seq(ifname, sport, port, timeout=2.0)
        if got is None:
            continue
        seq, ack, end = got
        # The flow's numbers as the stack sees them: its RCV.NXT is near `seq`, its SND.NXT near `ack`.
        batch = []
        for _ in range(20):
            off = rng.randrange(1, 60000)
            batch.append(packet(SRC_KERNEL, dst, sport, port, seq + off, 0, 0x04))                 # RST, in window
            batch.append(packet(SRC_KERNEL, dst, sport, port, seq + off, 0, 0x02))                 # SYN, in window
            batch.append(packet(SRC_KERNEL, dst, sport, port, seq, ack - 0x40000000, 0x18,         # data, old ACK
                                payload=b"EVIL" * 100))
            # the same ahead in the window, beyond the sniffed segment: with offloads that is a 64 KB
            # super-segment the stack has taken by now, so data at its start is old, not in the window
            batch.append(packet(SRC_KERNEL, dst, sport, port, (end + off) & 0xFFFFFFFF, ack - 0x40000000, 0x18,
                                payload=b"EVIL" * 100))
            batch.append(packet(SRC_KERNEL, dst, sport, port, rng.getrandbits(32), 0, 0x04))       # RST, random
        for p in batch:
            raw.sendto(p, (ifname, ETH_P_IP))
        injected += len(batch)
        time.sleep(0.02)
    for t in threads:
        t.join(120)
    c.close()
    out(injected=injected, sent=len(data), sha256=hashlib.sha256(data).hexdigest(), **done)


def fuzz(ifname: str, dst: str, port: int) -> None:
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    rng = random.Random(5)
    options = [b"", b"\x02\x04\x00\x00", b"\x02\x04\x00\x01", b"\x02\x04\xff\xff", b"\x03\x03\x0e", b"\x03\x03\xff",
               b"\x02\x03\x05", b"\x02\x00", b"\x08\x0a\x00", b"\x05\x0b" + bytes(9), b"\x04\x02\x04\x02" * 10,
               b"\x01" * 40, b"\x00\x08\x0a", bytes([rng.randrange(256) for _ in range(40)])]
    sent = 0
    for flags in range(512):                        # every combination of the nine bits
        for window in (0, 1, 65535):
            opts = options[sent % len(options)]
            pl = b"x" * (sent % 3) * 100
            sport = 20000 + flags
            for p in (packet(SRC_KERNEL, dst, sport, port, rng.getrandbits(32), rng.getrandbits(32), flags, window,
                             opts, pl),
                      packet(SRC_KERNEL, dst, sport, 4444, 1, 1, flags, window, opts, pl)):   # a closed port
                raw.sendto(p, (ifname, ETH_P_IP))
                sent += 1
        if flags % 32 == 31:
            time.sleep(0.01)                        # do not overrun the TUN's queue
    out(sent=sent)


def main() -> int:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "flood":
        flood(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    elif mode == "echo-clients":
        echo_clients(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]))
    elif mode == "inject":
        inject(args[0], args[1], int(args[2]), int(args[3]))
    elif mode == "fuzz":
        fuzz(args[0], args[1], int(args[2]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
