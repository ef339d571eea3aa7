"""Shared test vectors and independent reference checksums for the wire-format tests.

The reference checksum here is deliberately naive (struct + sum) so the tests
do not check the code under test against itself.
"""
from __future__ import annotations

import struct
from pathlib import Path

# The HELO packet of the seed article (/work/shared/seed/understanding-smtp-article.txt), as dumped there:
# 06/09/2005 06:10:46.595221 192.168.1.100.40565 > 192.168.1.200.25: P [tcp sum ok]
#   159505509:159505543(34) ack 578397676 win 33304 <nop,nop,timestamp 310237481 108030715> (DF) (ttl 52, id 34293, len 86)
SEED_HELO = bytes.fromhex(
    "4500 0056 85f5 4000 3406 5235 c0a8 0164"
    "c0a8 01c8 9e75 0019 0981 dc65 2279 a5ec"
    "8018 8218 0449 0000 0101 080a 127d d929"
    "0670 6afb 4845 4c4f 2077 6562 3334 3231"
    "332e 6d61 696c 2e6d 7564 2e79 6168 6f6f"
    "2e63 6f6d 0d0a".replace(" ", "")
)

# The article's two packets, verbatim (a tcpdump -x excerpt; scripts/demo.sh reads it too).
SEED_EXCERPT = Path(__file__).with_name("seed_article_packets.txt")


def ref_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum, the slow obvious way."""
    data = bytes(data)
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ref_tcp_checksum(src: int, dst: int, seg: bytes) -> int:
    """RFC 9293 §3.1 checksum over the IPv4 pseudo-header and the segment (checksum field as given)."""
    return ref_checksum(struct.pack("!IIBBH", src, dst, 0, 6, len(seg)) + bytes(seg))
