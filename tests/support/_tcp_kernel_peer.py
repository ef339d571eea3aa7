"""The kernel's side of the TCP integration tests, run inside the lab namespace:

    ip netns exec NS python3 _tcp_kernel_peer.py MODE ARGS...

Plain Python sockets only (this is the real Linux TCP talking to netstack).
Each mode prints one JSON line with its findings on stdout; every socket
operation has a timeout, so a wedged peer fails the test instead of hanging.

Modes:
  echo HOST PORT NBYTES SEED       send NBYTES (seeded) while reading the echo; compare
  discard HOST PORT NBYTES         send NBYTES, half-close, wait for the server's FIN
  chargen HOST PORT NBYTES         read NBYTES, check them against the RFC 864 rule
  refused HOST PORT                connect to a closed port; report the errno
  close-first HOST PORT            echo a few bytes, then close first (we end in TIME-WAIT)
  wait-close HOST PORT             read until the server's FIN, then close (passive close)
  listen ADDR PORT NBYTES SEED     accept one connection; receive NBYTES (hash) while sending
                                   NBYTES (seeded), then close; prints {"listening": port} first
  hold HOST PORT                   connect, echo one line, then wait for a line on stdin
"""
from __future__ import annotations

import errno
import hashlib
import json
import random
import socket
import sys
import threading
import time

TIMEOUT = 60.0
CHUNK = 1 << 16


def out(**kw) -> None:
    print(json.dumps(kw), flush=True)


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def connect(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=TIMEOUT)


def recv_all(s: socket.socket, limit: int | None = None):
    h = hashlib.sha256()
    n = 0
    while limit is None or n < limit:
        data = s.recv(CHUNK if limit is None else min(CHUNK, limit - n))
        if not data:
            break
        h.update(data)
        n += len(data)
    return n, h.hexdigest()


def exchange(s: socket.socket, data: bytes):
    """Send ``data`` then half-close (in a thread) while receiving to EOF:
    returns (bytes received, their sha256, seconds, send errors)."""
    t0 = time.monotonic()
    err = []

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:
            err.append(repr(exc))
    t = threading.Thread(target=send)
    t.start()
    n, digest = recv_all(s)
    t.join(TIMEOUT)
    return n, digest, time.monotonic() - t0, err


def mode_echo(host, port, nbytes, seed):
    data = payload(int(nbytes), int(seed))
    s = connect(host, int(port))
    n, digest, secs, err = exchange(s, data)
    s.close()
    out(ok=(n == len(data) and digest == hashlib.sha256(data).hexdigest() and not err), bytes=n,
        seconds=secs, error=err)


def mode_discard(host, port, nbytes):
    nbytes = int(nbytes)
    s = connect(host, int(port))
    block = b"d" * CHUNK
    t0 = time.monotonic()
    sent = 0
    while sent < nbytes:
        sent += s.send(block[:min(CHUNK, nbytes - sent)])
    s.shutdown(socket.SHUT_WR)
    extra = s.recv(100)            # b"" once discard read our FIN (so every byte before it) and closed
    secs = time.monotonic() - t0
    s.close()
    out(ok=(extra == b""), bytes=sent, seconds=secs)


def chargen_expected(nbytes: int) -> bytes:
    """RFC 864: line N holds printable characters N..N+71 (mod 95), then CR LF."""
    ring = bytes(range(32, 127)) * 2
    period = b"".join(ring[n:n + 72] + b"\r\n" for n in range(95))
    return (period * (nbytes // len(period) + 1))[:nbytes]


def mode_chargen(host, port, nbytes):
    nbytes = int(nbytes)
    expected = hashlib.sha256(chargen_expected(nbytes)).hexdigest()
    s = connect(host, int(port))
    t0 = time.monotonic()
    n, digest = recv_all(s, nbytes)
    secs = time.monotonic() - t0
    s.close()                    # with data still arriving: the kernel resets, chargen must cope
    out(ok=(n == nbytes and digest == expected), bytes=n, seconds=secs)


def mode_refused(host, port):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect((host, int(port)))
    except OSError as exc:
        out(errno=errno.errorcode.get(exc.errno, str(exc.errno)), type=type(exc).__name__)
    else:
        out(errno=None, type="connected")
    finally:
        s.close()


def mode_close_first(host, port):
    s = connect(host, int(port))
    s.sendall(b"bye\n")
    got = b""
    while len(got) < 4:
        d = s.recv(100)
        if not d:
            break
        got += d
    lport = s.getsockname()[1]
    s.close()                    # our FIN first: this side goes FIN-WAIT-1/2 -> TIME-WAIT
    time.sleep(0.5)              # let the echo server's FIN arrive
    out(ok=(got == b"bye\n"), port=lport)


def mode_wait_close(host, port):
    s = connect(host, int(port))
    lport = s.getsockname()[1]
    n, _ = recv_all(s)           # until the server's FIN
    time.sleep(0.2)
    s.close()                    # passive close: CLOSE-WAIT -> LAST-ACK -> CLOSED
    time.sleep(0.5)
    out(ok=True, port=lport, bytes=n)


def mode_listen(addr, port, nbytes, seed):
    nbytes = int(nbytes)
    data = payload(nbytes, int(seed))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(1)
    ls.settimeout(TIMEOUT)
    out(listening=ls.getsockname()[1])
    conn, peer = ls.accept()
    conn.settimeout(TIMEOUT)
    n, digest, secs, err = exchange(conn, data)
    conn.close()
    ls.close()
    out(ok=not err, bytes=n, sha256=digest, seconds=secs, peer=list(peer), error=err)


def mode_hold(host, port):
    s = connect(host, int(port))
    s.sendall(b"hold\n")
    got = s.recv(100)
    out(port=s.getsockname()[1], echoed=got.decode())
    sys.stdin.readline()
    s.close()
    out(done=True)


MODES = {"echo": mode_echo, "discard": mode_discard, "chargen": mode_chargen, "refused": mode_refused,
         "close-first": mode_close_first, "wait-close": mode_wait_close, "listen": mode_listen,
         "hold": mode_hold}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
