"""A crafted ICMP "fragmentation needed" against the stack, from the kernel side of the lab.

The stack streams chargen (port 19) to a kernel socket.  nftables holds the kernel's ACKs
back for a moment so the stack's last segments are surely in flight; an ICMP type 3 code 4
with next-hop MTU 68 or 400 then quotes either the last segment seen (in SND.UNA..SND.NXT)
or a sequence number far outside it.  In window: the stack goes down to the 552-byte floor,
never less, and drops DF for that destination; out of window: nothing changes.  Two decreases
at once: the second is ignored and counted (RFC 8201 rate limit).
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

CRAFT = r"""
import json, socket, subprocess, time
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ip2int, ipv4_packet

MTU, IN_WINDOW, IFNAME, SECOND_MTU = %d, %s, %r, %d
STACK = "198.18.0.2"

def nft(rules):
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True, timeout=10)

sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
sniff.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sniff.bind((IFNAME, 0x0800))
sniff.setblocking(False)

def stack_data():
    # the stack's data segments seen since the last call: (raw, total length, DF, seq)
    out = []
    while True:
        try:
            p = sniff.recv(65535)
        except BlockingIOError:
            return out
        if len(p) < 40 or p[9] != 6 or p[12:16] != socket.inet_aton(STACK):
            continue
        ihl = (p[0] & 15) * 4
        doff = (p[ihl + 12] >> 4) * 4
        if int.from_bytes(p[ihl:ihl + 2], "big") != 19 or len(p) <= ihl + doff:
            continue
        out.append((p, int.from_bytes(p[2:4], "big"), bool(p[6] & 0x40), int.from_bytes(p[ihl + 4:ihl + 8], "big")))

def read(s, n):
    got, t0 = 0, time.monotonic()
    while got < n:
        d = s.recv(65536)
        if not d:
            raise SystemExit("chargen closed")
        got += len(d)
    return got / (time.monotonic() - t0)

s = socket.create_connection((STACK, 19), timeout=60)
before_rate = read(s, 1 << 20)
before = stack_data()
sport = s.getsockname()[1]
nft("table ip nstpmtu {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
    "  ip daddr %%s tcp sport %%d drop\n }\n}\n" %% (STACK, sport))
try:
    time.sleep(0.3)                          # the stack sends up to its window; nothing gets ACKed
    held = stack_data()
    last = max(held or before, key=lambda x: (x[3] - before[0][3]) & 0xFFFFFFFF)    # the highest sequence
    raw = bytearray(last[0])
    if not IN_WINDOW:
        ihl = (raw[0] & 15) * 4
        seq = (last[3] + 10_000_000) & 0xFFFFFFFF
        raw[ihl + 4:ihl + 8] = seq.to_bytes(4, "big")
    msg = W.dest_unreachable(W.FRAG_NEEDED, bytes(raw[:28 + 8]), next_hop_mtu=MTU)
    pkt = ipv4_packet(src=ip2int("198.18.0.1"), dst=ip2int(STACK), protocol=1, payload=msg)
    raw_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw_sock.sendto(pkt, (STACK, 0))
    if SECOND_MTU:                           # a second decrease at once, quoting the same segment
        msg = W.dest_unreachable(W.FRAG_NEEDED, bytes(raw[:28 + 8]), next_hop_mtu=SECOND_MTU)
        raw_sock.sendto(ipv4_packet(src=ip2int("198.18.0.1"), dst=ip2int(STACK), protocol=1, payload=msg),
                        (STACK, 0))
    time.sleep(0.2)
    stack_data()                             # what was sent before the ICMP took effect
finally:
    subprocess.run(["nft", "delete", "table", "ip", "nstpmtu"], capture_output=True, timeout=10)
read(s, 256 << 10)                           # past the recovery from the held ACKs
after = stack_data()
after_rate = read(s, 1 << 20)
after += stack_data()
s.close()
print(json.dumps({"held": len(held), "before_max": max(x[1] for x in before),
                  "after_max": max(x[1] for x in after), "after_df": any(x[2] for x in after),
                  "after_n": len(after), "before_rate": before_rate, "after_rate": after_rate}))
"""


def _craft(srv, mtu: int, in_window: bool, second_mtu: int = 0) -> dict:
    r = srv.python(CRAFT % (mtu, in_window, srv.ifname, second_mtu), timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mtu", [68, 400])
def test_in_window_frag_needed_below_the_floor_sets_the_floor_never_less(serve_factory, mtu):
    srv = serve_factory("--smtp-port", "0", "--no-offload")   # sizes are read per packet on the wire
    res = _craft(srv, mtu, True)
    assert srv.stop() == 0
    c = srv.counters()
    assert res["held"] > 0 and res["before_max"] == 1500, res
    assert res["after_n"] > 100 and res["after_max"] == 552, res      # 20 + 32 + 500: the floor exactly
    assert not res["after_df"], res                                   # a narrower hop may fragment
    assert c["tcp.in.icmp.frag_needed"] == 1 and c["ip.pmtu.floored"] == 1 and c["ip.out.df_cleared"] > 0
    assert c.get("tcp.in.icmp.drop.out_of_window", 0) == 0
    print(f"\nchargen 1 MB before/after ICMP MTU {mtu}: {res['before_rate'] / 1e6:.1f} / "
          f"{res['after_rate'] / 1e6:.1f} MB/s (ratio {res['before_rate'] / res['after_rate']:.1f})")


@pytest.mark.parametrize("mtu", [68, 400])
def test_out_of_window_frag_needed_is_ignored_and_counted(serve_factory, mtu):
    srv = serve_factory("--smtp-port", "0", "--no-offload")   # sizes are read per packet on the wire
    res = _craft(srv, mtu, False)
    assert srv.stop() == 0
    c = srv.counters()
    assert res["after_max"] == 1500 and res["after_df"], res
    assert c["tcp.in.icmp.drop.out_of_window"] == 1
    assert c.get("tcp.in.icmp.frag_needed", 0) == 0 and c.get("ip.pmtu.floored", 0) == 0



def test_a_second_decrease_within_the_interval_is_ignored_and_counted(serve_factory):
    """RFC 8201: decreases per destination are rate-limited (--ip-pmtu-decrease-interval, 1 s)."""
    srv = serve_factory("--smtp-port", "0", "--no-offload")   # sizes are read per packet on the wire
    res = _craft(srv, 1400, True, second_mtu=1200)
    assert srv.stop() == 0
    c = srv.counters()
    assert res["after_max"] == 1400 and res["after_df"], res
    assert c["ip.pmtu.decreases"] == 1 and c["ip.pmtu.ignored.rate_limited"] == 1
    assert c["tcp.in.icmp.drop.pmtu_rate_limited"] == 1 and c["tcp.in.icmp.frag_needed"] == 1
