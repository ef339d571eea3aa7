"""Helpers for the kernel-peer TCP tests (tests/integration/test_tcp_kernel.py).

- :func:`kernel_peer` runs ``_tcp_kernel_peer.py MODE ...`` inside a lab
  namespace (the real Linux TCP) and returns its JSON result.
- :func:`ss_tan` lists the kernel's TCP sockets in the namespace.
- :func:`nft_random_drop` installs an nftables ``numgen random`` drop rule in
  the namespace (it goes away with the namespace).
- :func:`tshark_problems` reads a pcap with tshark (checksums verified; a TCP
  checksum left partial by checksum offload is checked as such).
- :class:`LabStack` runs a netstack Stack on a Lab's TUN inside the test
  process, so a test can drive our side directly (active open, our close).
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = str(HERE / "_tcp_kernel_peer.py")


def _ns_argv(netns: str, mode: str, *args) -> list[str]:
    return ["ip", "netns", "exec", netns, sys.executable, PEER, mode, *map(str, args)]


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON result from the kernel peer:\n{text}")


def kernel_peer(netns: str, mode: str, *args, timeout: float = 120) -> dict:
    """Run the kernel-side helper in ``netns`` and return its JSON line."""
    p = subprocess.run(_ns_argv(netns, mode, *args), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"kernel peer {mode} failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return _last_json(p.stdout)


async def kernel_peer_async(netns: str, mode: str, *args, timeout: float = 120,
                            on_line=None) -> dict:
    """Like :func:`kernel_peer`, without blocking the event loop (our stack runs in it).

    ``on_line(dict)`` sees each JSON line as it arrives (e.g. "listening")."""
    proc = await asyncio.create_subprocess_exec(*_ns_argv(netns, mode, *args), stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    lines = []

    async def read():
        while line := await proc.stdout.readline():
            text = line.decode()
            lines.append(text)
            if on_line is not None and text.startswith("{"):
                on_line(json.loads(text))
        return await proc.stderr.read()
    try:
        err = await asyncio.wait_for(read(), timeout)
        rc = await asyncio.wait_for(proc.wait(), 10)
    except BaseException:
        if proc.returncode is None:
            proc.kill()              # our own child, by its handle
            await proc.wait()
        raise
    if rc != 0:
        raise AssertionError(f"kernel peer {mode} failed (rc {rc}):\n{''.join(lines)}\n{err.decode()}")
    return _last_json("".join(lines))


def ss_tan(netns: str) -> list[tuple[str, str, str]]:
    """(state, local, peer) for every TCP socket the kernel has in ``netns``."""
    p = subprocess.run(["ip", "netns", "exec", netns, "ss", "-tanH"], capture_output=True, text=True, timeout=10)
    rows = []
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) >= 5:
            rows.append((f[0], f[3], f[4]))
    return rows


def nft_random_drop(netns: str, percent: int, daddr: str) -> None:
    """Drop ``percent``% of the kernel's packets to ``daddr`` (nftables numgen, in the namespace only)."""
    ruleset = (
        "table ip nstloss {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {daddr} numgen random mod 100 < {int(percent)} counter drop\n"
        "  }\n"
        "}\n")
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=ruleset, text=True, check=True,
                   capture_output=True, timeout=10)


def nft_drop_count(netns: str) -> int:
    p = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "ip", "nstloss"],
                       capture_output=True, text=True, timeout=10)
    for line in p.stdout.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets")[1].split()[0])
    return -1


def tshark_fields(pcap, display_filter: str, *fields: str) -> list[list[str]]:
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"tshark failed: {p.stderr}")
    return [line.split("\t") for line in p.stdout.splitlines()]


def tshark_problems(pcap, *, gaps: bool = True) -> list[str]:
    """Frames tshark flags as malformed or with a bad IP/TCP checksum (checksum
    validation switched on), and with ``gaps`` also those after a hole in the
    capture ("previous segment not captured").

    A capture on a TUN with offloads holds TCP checksums that are partial (the
    pseudo-header sum only: the kernel, or the device, completes them), as
    tcpdump's on a GSO device; tshark would call them bad.  When the capture
    has any, tshark checks the IP header checksums and everything else, and
    each TCP checksum is checked here instead: it must verify, or hold exactly
    the pseudo-header sum.  (Here always: tshark also called a valid 0xffff
    checksum of the kernel's bad, about once in 65,536 segments; ones'
    complement has two zeros, RFC 1071 §2, and ours accepts both.)"""
    if shutil.which("tshark") is None:
        raise AssertionError("tshark is not installed (scripts/setup.sh installs it)")
    partial, wrong = transport_checksums(pcap)
    flt = "_ws.malformed || ip.checksum.status == 0"
    if gaps:
        flt += " || tcp.analysis.lost_segment"
    p = subprocess.run(["tshark", "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.check_checksum:FALSE", "-Y", flt],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"tshark failed: {p.stderr}")
    return [line for line in p.stdout.splitlines() if line.strip()] + wrong


def transport_checksums(pcap) -> tuple[int, list[str]]:
    """(TCP and UDP datagrams whose checksum is partial, descriptions of those whose checksum is
    neither valid nor partial) in a raw-IPv4 pcap.  Fragments and UDP without a checksum are skipped."""
    from netstack import checksum
    from netstack.capture.pcap import read_pcap
    partial, wrong = 0, []
    for i, rec in enumerate(read_pcap(pcap), 1):
        d = bytes(rec.data)
        if len(d) < 28 or d[0] >> 4 != 4 or d[9] not in (6, 17) or len(d) < rec.orig_len:
            continue
        if int.from_bytes(d[6:8], "big") & 0x3FFF:          # a fragment
            continue
        proto = d[9]
        at = 16 if proto == 6 else 6
        ihl = (d[0] & 15) * 4
        tlen = int.from_bytes(d[2:4], "big")
        src, dst = int.from_bytes(d[12:16], "big"), int.from_bytes(d[16:20], "big")
        seg = d[ihl:tlen]
        if len(seg) < at + 2 or (proto == 17 and seg[6:8] == b"\0\0"):
            continue
        if checksum.pseudo_header_checksum(src, dst, proto, seg) == 0:
            continue
        s = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + len(seg)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        if int.from_bytes(seg[at:at + 2], "big") == s:
            partial += 1
        else:
            name = "TCP" if proto == 6 else "UDP"
            wrong.append(f"frame {i}: {name} checksum {seg[at:at + 2].hex()} neither valid nor the partial {s:04x}")
    return partial, wrong


def tun_drops(netns: str, ifname: str) -> int:
    """Packets dropped on the lab's TUN device (e.g. the kernel's queue toward us
    was full while we were busy): such a run is not loss-free, and our capture,
    taken on our side of the TUN, has holes.  Read it before the lab goes down."""
    p = subprocess.run(["ip", "netns", "exec", netns, "ip", "-s", "-j", "link", "show", "dev", ifname],
                       capture_output=True, text=True, timeout=10)
    try:
        stats = json.loads(p.stdout)[0]["stats64"]
        return int(stats["tx"].get("dropped", 0)) + int(stats["rx"].get("dropped", 0))
    except (ValueError, LookupError, TypeError):
        raise AssertionError(f"cannot read the TUN statistics: {p.stdout!r} {p.stderr!r}") from None


class LabStack:
    """``async with LabStack(lab, pcap) as stack:`` a Stack with TCP on the lab's TUN, in this process."""

    def __init__(self, lab, pcap_path=None, config=None) -> None:
        self.lab = lab
        self.pcap_path = str(pcap_path) if pcap_path else None
        self.config = config
        self.stack = None

    async def __aenter__(self):
        from netstack.stack import Stack
        from netstack.link.capture import CaptureLink
        from netstack.tcp import TCPConfig
        link = CaptureLink(self.lab.link, pcap=self.pcap_path) if self.pcap_path else self.lab.link
        stack = Stack(link, self.lab.stack_addr, tcp=self.config or TCPConfig())
        stack.start()
        self.stack = stack
        return stack

    async def __aexit__(self, *exc):
        self.stack.close()
