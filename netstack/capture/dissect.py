"""Dissect one IPv4 packet into layers, with checksum verdicts (found vs expected).

The parsing is :mod:`netstack.wire`'s (with ``verify=False`` so a bad checksum
is reported, not fatal); this module adds what a *reader* of a capture needs
and a receiving stack does not:

* the checksum each header *should* carry (RFC 1071 over the header with the
  field zeroed; for TCP/UDP over the RFC 9293 §3.1 / RFC 768 pseudo-header), so
  a wrong one is shown as "found X, expected Y";
* verdicts that cannot be made are said so, with the reason: a fragment
  (TCP/UDP checksums cover the whole reassembled datagram, RFC 791 §3.2), a
  capture cut at the snaplen, bytes redacted in a hex dump;
* UDP (RFC 768), which the stack does not implement but traces contain;
* diagnoses for teaching: a TCP/UDP field holding only the pseudo-header sum
  (captured on the sending host before checksum offload filled it), and IP
  and transport checksums off by the same amount (addresses rewritten after
  capture, as in an anonymised trace).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from netstack import checksum as _ck
from netstack.wire.errors import MalformedPacket
from netstack.wire.icmp import ICMPMessage, parse_icmp
from netstack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4Packet, parse_ipv4, parse_ipv4_quoted
from netstack.wire.tcp import TCPSegment, parse_tcp
from netstack.wire.udp import UDPDatagram, parse_udp

__all__ = ["Verdict", "UDPDatagram", "Dissection", "dissect", "parse_udp"]

_CKSUM_FIELD = {"ipv4": 10, "tcp": 16, "udp": 6, "icmp": 2}     # offset of the checksum field in each header


@dataclass(slots=True)
class Verdict:
    """A checksum verdict.  ``status``: ``correct``, ``incorrect``, ``none`` (UDP
    sent without checksum, RFC 768) or ``unverified`` (``why`` says why)."""

    layer: str
    found: int
    expected: int | None
    status: str
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("correct", "none", "unverified")

    def text(self) -> str:
        """tcpdump ``-v`` wording: ``cksum 0x0449 (correct)`` / ``(incorrect -> 0xee43)``."""
        head = f"cksum 0x{self.found:04x}"
        if self.status == "incorrect":
            return f"{head} (incorrect -> 0x{self.expected:04x})"
        if self.status == "unverified":
            return f"{head} (unverified: {self.why})"
        return f"{head} ({self.status})"


@dataclass(slots=True)
class Dissection:
    """Layers of one packet.  ``error`` is the first MalformedPacket met (the
    layers above it are None); ``ip`` is None when the IP header itself is bad."""

    data: bytes
    ip: IPv4Packet | None = None
    ip_cksum: Verdict | None = None
    proto: str | None = None                   # "tcp" | "udp" | "icmp" | None (other / later fragment)
    l4: TCPSegment | UDPDatagram | ICMPMessage | None = None
    l4_cksum: Verdict | None = None
    error: MalformedPacket | None = None
    cut: bool = False                          # the capture holds less than the datagram
    notes: list = field(default_factory=list)

    @property
    def l4_offset(self) -> int:
        return self.ip.header_len if self.ip else 0


def _zeroed(view, at: int) -> bytearray:
    buf = bytearray(view)
    buf[at: at + 2] = b"\0\0"
    return buf


def _verdict(layer: str, found: int, expected: int, unverified: str | None) -> Verdict:
    if unverified:
        return Verdict(layer, found, expected, "unverified", unverified)
    if layer == "udp":
        if found == 0:
            return Verdict(layer, 0, expected or 0xFFFF, "none", "no checksum sent")
        expected = expected or 0xFFFF                 # RFC 768: a computed 0 is sent as all ones
    if found == expected or {found, expected} == {0x0000, 0xFFFF}:
        # 0x0000 and 0xFFFF are the same number in ones' complement (RFC 1071 §1)
        return Verdict(layer, found, expected, "correct")
    return Verdict(layer, found, expected, "incorrect")


def _diff(found: int, expected: int) -> int:
    """Ones'-complement difference found - expected (how far off a checksum is)."""
    s = found + (~expected & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    return s & 0xFFFF


def dissect(data, *, redacted=frozenset(), cut: bool = False) -> Dissection:
    """Dissect the IPv4 packet in *data*.

    *redacted*: offsets of bytes whose value is unknown (hex dump ``xx``);
    *cut*: the capture holds fewer bytes than were on the wire (snaplen).
    Never raises MalformedPacket: it ends up in ``.error``.
    """
    d = Dissection(bytes(data), cut=cut)
    try:
        ip = parse_ipv4(d.data, verify=False)
    except MalformedPacket as exc:
        if not (exc.reason == "bad_total_length" and "beyond" in exc.detail):
            d.error = exc
            return d
        try:                                          # total length runs past what was captured
            ip = parse_ipv4_quoted(d.data)
        except MalformedPacket as exc2:
            d.error = exc2
            return d
        d.cut = True
        if not cut:
            d.notes.append(f"total length {ip.total_length} but only {len(d.data)} bytes captured")
    d.ip = ip
    hlen = ip.header_len
    hdr_redacted = any(o < hlen for o in redacted)
    d.ip_cksum = _verdict("ipv4", ip.checksum, _ck.checksum(_zeroed(ip.header, 10)),
                          "redacted bytes in the header" if hdr_redacted else None)
    if ip.frag_offset:                                # a later fragment: no transport header here
        return d
    proto = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp"}.get(ip.protocol)
    d.proto = proto
    if proto is None:
        return d
    payload = ip.payload
    why = None
    if ip.mf:
        why = "fragment"
    elif d.cut:
        why = "capture cut short"
    elif any(hlen <= o < ip.total_length for o in redacted):
        why = "redacted bytes"
    try:
        if proto == "tcp":
            seg = parse_tcp(payload, verify=False)
            d.l4 = seg
            expected = _ck.pseudo_header_checksum(ip.src, ip.dst, PROTO_TCP, _zeroed(payload, 16))
            d.l4_cksum = _verdict("tcp", seg.checksum, expected, why)
        elif proto == "udp":
            if why:
                u = UDPDatagram()
                u.src_port, u.dst_port, u.length, u.checksum = struct.unpack_from("!HHHH", payload) \
                    if len(payload) >= 8 else parse_udp(payload)
                u.payload = payload[8:]
            else:
                u = parse_udp(payload)
            d.l4 = u
            expected = 0 if why else _ck.pseudo_header_checksum(ip.src, ip.dst, PROTO_UDP,
                                                                 _zeroed(payload[: u.length], 6))
            d.l4_cksum = _verdict("udp", u.checksum, expected, why)
        else:
            m = parse_icmp(payload, verify=False)
            d.l4 = m
            d.l4_cksum = _verdict("icmp", m.checksum, _ck.checksum(_zeroed(payload, 2)), why)
    except MalformedPacket as exc:
        d.error = exc
        return d
    _diagnose(d)
    return d


def _diagnose(d: Dissection) -> None:
    v, ip = d.l4_cksum, d.ip
    if v is None or v.status != "incorrect":
        return
    if d.proto in ("tcp", "udp"):
        proto = PROTO_TCP if d.proto == "tcp" else PROTO_UDP
        partial = _ck.sum16(struct.pack("!IIBBH", ip.src, ip.dst, 0, proto, len(ip.payload)))
        if v.found == partial:
            d.notes.append(f"the {d.proto.upper()} checksum field holds only the pseudo-header sum "
                           f"(0x{partial:04x}): captured on the sending host before checksum offload "
                           "filled it in, not a corrupt packet")
            return
    iv = d.ip_cksum
    if iv is not None and iv.status == "incorrect" and d.proto in ("tcp", "udp"):
        delta = _diff(iv.found, iv.expected)
        if delta == _diff(v.found, v.expected):
            d.notes.append(f"the IP and {d.proto.upper()} checksums are off by the same amount (0x{delta:04x}): "
                           "bytes counted by both sums, i.e. the addresses (the pseudo-header repeats them), "
                           "were changed after the checksums were computed, as in an anonymised capture")
