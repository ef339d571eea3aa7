"""Run inside the lab namespace: send the packets described on stdin (JSON), bounded.

Each item: {"via": "packet" | "hdrincl", "hex": "...", "ifname": "..."}
  packet:  AF_PACKET on the TUN device: the bytes go to the stack exactly as given
           (needed for bad checksums and lengths, which the kernel would fix on a raw IP socket)
  hdrincl: a raw IPv4 socket with IP_HDRINCL (the kernel fills total length and checksum)
Prints the number of packets sent.
"""
import json
import socket
import sys

ETH_P_IP = 0x0800


def main() -> int:
    items = json.load(sys.stdin)
    pkt = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sent = 0
    for item in items[:100000]:                 # bounded whatever the input says
        data = bytes.fromhex(item["hex"])
        if item["via"] == "packet":
            pkt.sendto(data, (item["ifname"], ETH_P_IP))
        else:
            dst = ".".join(str(b) for b in data[16:20])
            raw.sendto(data, (dst, 0))
        sent += 1
    print(sent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
