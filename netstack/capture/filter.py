"""A small tcpdump-style filter expression for ``netstack trace``.

The subset of pcap-filter(7) that reading a TCP/IP capture needs, with its
meaning checked against the real tcpdump on the same captures
(tests/system/test_trace_filter_vs_tcpdump.py)::

    expr      := factor { ("and" | "&&" | "or" | "||") factor }
    factor    := ("not" | "!") factor | "(" expr ")" | primitive | VALUE
    primitive := [PROTO] [DIR] [TYPE] VALUE | PROTO
    PROTO     := ip | tcp | udp | icmp
    DIR       := src | dst | src or dst | src and dst
    TYPE      := host | net | port | portrange

* ``host A``: A is the source or destination address; ``src``/``dst``
  narrow it.  ``src A`` alone means ``src host A``, as in tcpdump.
* ``net N/len``, ``net N`` (``10.1`` means ``10.1.0.0/16``).
* ``port P``, ``portrange P1-P2``: a TCP, UDP or SCTP port (only the first
  fragment of a datagram carries ports); ``tcp port 25`` narrows to TCP.
* ``tcp``, ``udp``, ``icmp``: the IPv4 protocol field; ``ip``: any IPv4 packet.
* A bare value repeats the qualifiers of the primitive before it, as in
  tcpdump: ``port 25 or 587``, ``host 198.18.0.1 and not 198.18.0.2``.
* ``and`` and ``or`` have the same precedence and group from the left, as in
  pcap-filter(7): ``icmp or port 25 and host A`` is ``(icmp or port 25) and
  host A``; ``not`` binds tightest.  Use parentheses.  Keywords are lower
  case, as tcpdump's.

Not supported (a :class:`FilterError` says so): IPv6 (``ip6``), names (no
resolution, as with ``-n``), ``ether``, ``vlan``, ``less``/``greater``, byte
offsets (``tcp[13] & 2 != 0``).  Packets that are not IPv4 match nothing but
``not ...``, except that ``host`` and ``net`` also match the addresses of an
ARP or RARP packet, as tcpdump's do (``ip host A`` does not).  Matching reads
the raw header bytes as a BPF program would, so a packet whose checksum is
wrong or whose TCP header is malformed still matches on its addresses,
protocol and ports.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Callable

__all__ = ["FilterError", "compile_filter", "Match"]

Match = Callable[..., bool]
"""A compiled filter: ``match(ip, arp=None)``: the raw IPv4 packet (``None`` for a frame that
carries none) and, for an ARP or RARP frame, its ARP packet -> matches."""

_PROTOS = {"ip": None, "tcp": 6, "udp": 17, "icmp": 1}
_PORT_PROTOS = (6, 17, 132)                      # tcp, udp, sctp: the protocols that have ports
_TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[^\s()!&|]+)")
_KEYWORDS = {"and", "or", "not", "src", "dst", "host", "net", "port", "portrange", *_PROTOS}
_UNSUPPORTED = {"ip6", "ether", "vlan", "less", "greater", "arp", "rarp", "sctp", "gateway", "broadcast",
                "multicast", "proto", "mask", "len", "inbound", "outbound", "mpls", "pppoes"}


class FilterError(ValueError):
    """A filter expression that cannot be compiled; ``str()`` names the token."""


@dataclass(slots=True)
class _Quals:
    proto: str | None = None
    dir: str | None = None          # "src" | "dst" | "or" | "and"
    type: str | None = None         # "host" | "net" | "port" | "portrange"


def _ip4(text: str, *, partial: bool = False) -> tuple[int, int]:
    """(address, prefix length); a partial dotted address (``10.1``) when *partial*."""
    parts = text.split(".")
    if not all(p.isdigit() and int(p) < 256 for p in parts) or not 1 <= len(parts) <= 4 or \
            (len(parts) < 4 and not partial):
        raise FilterError(f"{text!r} is not an IPv4 address (names are not resolved)")
    value = 0
    for p in parts:
        value = value << 8 | int(p)
    return value << 8 * (4 - len(parts)), 8 * len(parts)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise FilterError(f"{text!r} is not a port number (service names are not resolved)")
    return int(text)


def _ports(ip: bytes) -> tuple[int, int] | None:
    """(source, destination) port of a TCP/UDP/SCTP first fragment, else None."""
    if len(ip) < 20 or ip[9] not in _PORT_PROTOS or struct.unpack_from("!H", ip, 6)[0] & 0x1FFF:
        return None
    off = (ip[0] & 15) * 4
    if len(ip) < off + 4:
        return None
    return struct.unpack_from("!HH", ip, off)


def _proto_ok(ip: bytes, proto: str | None) -> bool:
    if ip is None or len(ip) < 20 or ip[0] >> 4 != 4:
        return False
    number = _PROTOS[proto] if proto else None
    return number is None or ip[9] == number


def _pick(values: tuple[int, int], direction: str | None, test: Callable[[int], bool]) -> bool:
    src, dst = values
    if direction == "src":
        return test(src)
    if direction == "dst":
        return test(dst)
    if direction == "and":
        return test(src) and test(dst)
    return test(src) or test(dst)


def _primitive(q: _Quals, value: str) -> Match:
    proto, direction, kind = q.proto, q.dir, q.type or "host"
    if kind in ("host", "net"):
        if proto not in (None, "ip"):
            raise FilterError(f"'{proto} {kind}' is not valid (tcpdump: {kind} qualifier applied to {proto})")
        if kind == "host":
            addr, plen = _ip4(value)
        elif "/" in value:
            text, _, bits = value.partition("/")
            addr, _ = _ip4(text, partial=True)
            if not bits.isdigit() or int(bits) > 32:
                raise FilterError(f"{value!r}: bad prefix length")
            plen = int(bits)
        else:
            addr, plen = _ip4(value, partial=True)
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if addr & ~mask & 0xFFFFFFFF:
            raise FilterError(f"{value!r}: non-network bits set in the network address")
        net = addr & mask

        def match(ip, arp=None, _net=net, _mask=mask, _dir=direction, _ip_only=proto == "ip") -> bool:
            test = lambda a: a & _mask == _net                          # noqa: E731
            if _proto_ok(ip, None):
                return _pick(struct.unpack_from("!II", ip, 12), _dir, test)
            # tcpdump: `host A` is `ip host A or arp host A or rarp host A` (sender and target
            # protocol addresses of an Ethernet/IPv4 ARP packet, at offsets 14 and 24)
            if arp is None or _ip_only or len(arp) < 28 or arp[2:6] != b"\x08\x00\x06\x04":
                return False
            return _pick((int.from_bytes(arp[14:18], "big"), int.from_bytes(arp[24:28], "big")), _dir, test)
        return match
    if proto == "icmp":
        raise FilterError(f"'icmp {kind}' is not valid: ICMP has no ports")
    if kind == "port":
        lo = hi = _port(value)
    else:
        a, sep, b = value.partition("-")
        if not sep:
            raise FilterError(f"{value!r}: a port range is written P1-P2")
        lo, hi = sorted((_port(a), _port(b)))
    number = _PROTOS[proto] if proto else None

    def match(ip, arp=None, _lo=lo, _hi=hi, _dir=direction, _num=number) -> bool:
        if not _proto_ok(ip, None) or (_num is not None and ip[9] != _num):
            return False
        ports = _ports(ip)
        return ports is not None and _pick(ports, _dir, lambda p: _lo <= p <= _hi)
    return match


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.last: _Quals | None = None       # qualifiers a bare value inherits

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of expression")
        self.i += 1
        return tok

    def expr(self) -> Match:
        left = self.factor()
        while self.peek() in ("and", "&&", "or", "||"):
            both = self.take() in ("and", "&&")
            right = self.factor()
            left = (lambda a, b: (lambda ip, arp=None: a(ip, arp) and b(ip, arp)) if both
                    else (lambda ip, arp=None: a(ip, arp) or b(ip, arp)))(left, right)
        return left

    def factor(self) -> Match:
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of expression")
        if tok in ("not", "!"):
            self.take()
            inner = self.factor()
            return lambda ip, arp=None: not inner(ip, arp)
        if tok == "(":
            self.take()
            inner = self.expr()
            if self.peek() != ")":
                raise FilterError(f"expected ')' at {self.peek() or 'end of expression'!r}")
            self.take()
            return inner
        if tok == ")":
            raise FilterError("unexpected ')'")
        if tok in _UNSUPPORTED:
            raise FilterError(f"{tok!r} is not supported by netstack trace's filter "
                              "(ip, tcp, udp, icmp, host, net, port, portrange, src, dst, and, or, not are)")
        if tok not in _KEYWORDS:
            if self.last is None:
                if re.fullmatch(r"[\d.]+(/\d+)?", tok):     # tcpdump: a bare address means `host A`
                    self.last = _Quals()
                else:
                    raise FilterError(f"{tok!r}: expected a primitive such as 'host', 'port', 'tcp'")
            return _primitive(self.last, self.take())
        return self.primitive()

    def primitive(self) -> Match:
        q = _Quals()
        if self.peek() in _PROTOS:
            q.proto = self.take()
        if self.peek() in ("src", "dst"):
            q.dir = self.take()
            if self.peek() in ("or", "and") and self.i + 1 < len(self.tokens) and \
                    self.tokens[self.i + 1] in ("src", "dst") and self.tokens[self.i + 1] != q.dir:
                q.dir = self.take()
                self.take()
        if self.peek() in ("host", "net", "port", "portrange"):
            q.type = self.take()
        if q.dir is None and q.type is None:                 # a protocol alone: `tcp`, `icmp`
            if q.proto is None:
                raise FilterError(f"{self.peek()!r}: expected a primitive such as 'host', 'port', 'tcp'")
            proto = q.proto
            return lambda ip, arp=None: _proto_ok(ip, proto)
        value = self.peek()
        if value is None or value in _KEYWORDS or value in ("(", ")", "!", "&&", "||"):
            raise FilterError(f"{' '.join(x for x in (q.proto, q.dir, q.type) if x)} needs a value")
        self.take()
        self.last = q
        return _primitive(q, value)


def _tokens(text: str) -> list[str]:
    out, at = [], 0
    text = text.strip()
    while at < len(text):
        m = _TOKEN.match(text, at)
        if not m:
            raise FilterError(f"cannot read the expression at {text[at:]!r}")
        out.append(m.group(1))
        at = m.end()
    return out


def compile_filter(expression: str) -> Match:
    """Compile a tcpdump-style *expression* (see the module docstring) into a predicate
    ``match(ip, arp=None)`` over the raw IPv4 packet of a frame (None when it carries none) and
    its ARP packet, if it is one.  An empty expression matches every packet.  Raises
    :class:`FilterError`."""
    p = _Parser(expression)
    if not p.tokens:
        return lambda ip, arp=None: True
    match = p.expr()
    if p.peek() is not None:
        raise FilterError(f"unexpected {p.peek()!r} after a complete expression")
    return match
