"""The IPv4 layer: input validation and demultiplexing, output with fragmentation.

Sans-I/O: :meth:`IPLayer.input` takes one received datagram and ``now``;
outgoing datagrams go to ``emit(data)`` (set by the stack to write to the
link; by default they are appended to :attr:`IPLayer.outbox` as ``bytes``).
``data`` is bytes-like: a small unfragmented datagram (a pure ACK) is one new
``bytes`` (header and segment joined in one step), one built in place behind
a segment's headroom a view of that buffer, any other a view of the layer's
one reusable transmit buffer, so ``emit`` must consume it before returning.

Input (RFC 791 §3.1, RFC 1122 §3.2.1), in order; each drop is counted as
``ip.in.drop.<reason>``:

* ``not_ipv4``: version nibble 6 (an IPv6 packet; the lab turns IPv6 off, but a
  TUN shared with other users may still carry some);
* the wire parser's reasons: ``truncated``, ``bad_version``, ``bad_ihl``,
  ``bad_total_length``, ``bad_checksum`` (RFC 1122 §3.2.1.2: silently discard);
* ``bad_option_length``: an IPv4 option whose length byte is missing, below 2
  or runs past the header (options are otherwise ignored: RFC 1122 §3.2.1.8
  lets a host skip those it does not implement);
* ``bad_src``: a source that is not a unique host address (broadcast,
  multicast, class E, 0/8 and loopback: RFC 1122 §3.2.1.3 "MUST silently
  discard");
* ``not_for_us``: any destination other than our address (we are a host: no
  forwarding, RFC 1122 §3.3.1);
* fragments go to :class:`~netstack.ip.reassembly.Reassembler` (its reasons);
* ``unknown_protocol``: no handler; answered with ICMP Protocol Unreachable.

Output (RFC 791 §3.2, RFC 1122 §3.3.3): :meth:`IPLayer.send` fills a header
(TTL 64 by default, RFC 1700), and splits a datagram larger than the MTU into
fragments whose data lengths are multiples of 8, unless DF is set: then it
raises :class:`DatagramTooBig` (the local sender's "fragmentation needed";
counted as ``ip.out.drop.too_big_df``).
"""
from __future__ import annotations

import errno
import logging
import random
import struct
from collections import deque
from typing import TYPE_CHECKING

from netstack import checksum as _checksum
from netstack.counters import Counters
from netstack.ip.icmp import ICMPResponder, is_unique_unicast
from netstack.ip.pmtu import DEFAULT_MIN_PMTU, PathMtuTable
from netstack.ip.reassembly import Reassembler
from netstack.ip.udp import UDPInput
from netstack.wire import icmp as W
from netstack.wire.errors import MalformedPacket
from netstack.wire.ipv4 import (
    PROTO_ICMP, PROTO_UDP, build_ipv4_header, iter_ipv4_options, parse_ipv4, read_plain_ipv4,
)

if TYPE_CHECKING:
    from netstack.transport import Transport

__all__ = ["IPLayer", "DatagramTooBig"]

log = logging.getLogger("netstack.ip")

#: the fixed 20-byte IPv4 header (RFC 791 §3.1), for the fast paths of send()
_HDR = struct.Struct("!BBHHHBBHII")
_pack_hdr = _HDR.pack_into
_pack_hdr_bytes = _HDR.pack
#: is_unique_unicast by the address's first octet, for the fast path of input_batch: 0/8, 127/8,
#: 224/4 (multicast) and 240/4 (class E) are not (RFC 1122 §3.2.1.3)
_UNICAST_TOP = bytes(0 if top == 0 or top == 127 or top >= 224 else 1 for top in range(256))

MAX_DATAGRAM = 65535


class DatagramTooBig(OSError):
    """A datagram with DF set does not fit the MTU (RFC 1191): ``.mtu`` is the limit."""

    def __init__(self, size: int, mtu: int) -> None:
        super().__init__(errno.EMSGSIZE, f"datagram of {size} bytes exceeds MTU {mtu} and DF is set")
        self.size = size
        self.mtu = mtu


class IPLayer:
    """One IPv4 host address on one link (see module doc)."""

    def __init__(self, addr: int, *, mtu: int = 1500, counters: Counters | None = None, emit=None,
                 ttl: int = 64, reassembly_timeout: float = 30.0, reassembly_max_datagrams: int = 64,
                 reassembly_max_bytes: int = 4 * 1024 * 1024, icmp_error_rate: float = 100.0,
                 icmp_error_burst: int = 50, broadcast: int | None = None, min_pmtu: int = DEFAULT_MIN_PMTU,
                 pmtu_decrease_interval: float = 1.0) -> None:
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} out of range 68..65535 (RFC 791 §3.2: every host takes 68)")
        self.addr = addr
        self.mtu = mtu
        self.ttl = ttl
        self.broadcast = broadcast
        self.counters = counters if counters is not None else Counters()
        self.outbox: deque = deque()
        self.emit = emit if emit is not None else self._emit_to_outbox
        #: protocol number -> transport (``on_datagram``, ``on_icmp_error``: netstack.transport.Transport)
        self.transports: dict[int, Transport] = {}
        self._entries: dict[int, tuple] = {}
        self.reassembler = Reassembler(self.counters, timeout=reassembly_timeout,
                                       max_datagrams=reassembly_max_datagrams, max_bytes=reassembly_max_bytes)
        self.icmp = ICMPResponder(self, error_rate=icmp_error_rate, error_burst=icmp_error_burst)
        self.udp = UDPInput(self)
        #: path MTU per destination: the floor and the decrease rate limit (netstack.ip.pmtu)
        self.pmtu = PathMtuTable(self.counters, link_mtu=mtu, min_pmtu=min_pmtu,
                                 decrease_interval=pmtu_decrease_interval)
        self._ident = random.randrange(0x10000)
        self._txbuf = bytearray(MAX_DATAGRAM + 60)
        self._txview = memoryview(self._txbuf)

    def _emit_to_outbox(self, view, meta=None) -> None:
        self.outbox.append(bytes(view))

    def register(self, protocol: int, transport: Transport) -> None:
        """Deliver datagrams of ``protocol`` to ``transport.on_datagram(src, dst, payload, now)``
        and ICMP errors about them to ``transport.on_icmp_error``."""
        if protocol in (PROTO_ICMP,):
            raise ValueError("ICMP is handled by the IP layer itself")
        self.transports[protocol] = transport
        # what input_batch calls: the run, plain and trusted-checksum entry points (None: absent)
        self._entries[protocol] = (getattr(transport, "on_datagrams", None), transport.on_datagram,
                                   getattr(transport, "on_datagram_trusted", None))

    # -- input ---------------------------------------------------------------------------------
    def input(self, buf, now: float) -> None:
        """Take one received datagram (RFC 1122 §3.2.1).  Never raises for bad input."""
        self.input_batch(((buf, None),), now)

    def input_offloaded(self, buf, meta, now: float) -> None:
        """Take one received datagram that came with offload metadata (a
        :class:`~netstack.link.base.PacketMeta`: the link's virtio-net header).

        A TCP datagram whose checksum the link vouches for, partial
        (``needs_csum``, VIRTIO_NET_HDR_F_NEEDS_CSUM: the sender's kernel left
        only the pseudo-header sum) or already verified (``data_valid``), goes
        to the transport's ``on_datagram_trusted`` when it has one: treated as
        valid, not verified again, never dropped as bad (counted as
        ``ip.in.csum_trusted``).  That includes a GSO super-segment larger than
        the MTU.  The IPv4 header checksum is verified as always (the kernel
        fills it in).  Any other such datagram has a partial checksum completed
        here (RFC 1071) and then takes :meth:`input` like a plain one.
        """
        self.input_batch(((buf, meta),), now)

    def input_batch(self, batch, now: float) -> None:
        """Take the datagrams of one link read, ``(view, meta)`` pairs as ``Link.recv_batch``
        returns them: each as :meth:`input` (``meta`` None) or :meth:`input_offloaded` would.
        Never raises for bad input.

        The stack's loop calls this once per wakeup.  Nearly every datagram takes the fast
        path here: a 20-byte header (no options) for our address, not a fragment, with a
        header checksum that verifies (all read in one call, :func:`~netstack.wire.ipv4.read_plain_ipv4`),
        from a unique unicast source (RFC 1122 §3.2.1.3), to a registered transport, so no
        IPv4Packet is built.  Consecutive such datagrams for a transport
        that takes them in runs (``on_datagrams(items, now, trusted)``, as TCP does) go to
        it as one run of ``(src, dst, payload)``, in order (the transport is looked up once
        per run: a datagram of the run's protocol and trust joins it directly, also after one
        that went elsewhere, until code that may change the transports runs); the counters
        are added once per batch.  Anything else takes the full path (:meth:`_input_full`), which counts its
        drops, in its place in the order.
        """
        addr = self.addr
        bcast = self.broadcast
        entries = self._entries
        delivered = trusted_n = 0
        run: list = []                 # consecutive fast-path datagrams for one run_to(run, now, run_trust)
        run_to = None
        run_trust = False
        run_proto = -1                 # the protocol whose transport is run_to (-1: none yet)
        unicast = _UNICAST_TOP
        read_plain = read_plain_ipv4
        try:
            for buf, meta in batch:
                mv = buf if type(buf) is memoryview else memoryview(buf)
                trust = meta is not None and (meta.needs_csum or meta.data_valid)
                # a plain header for us that verifies (wire.ipv4.read_plain_ipv4), from a unique
                # unicast source (RFC 1122 §3.2.1.3; is_unique_unicast, inlined)
                if (mv.itemsize == 1 and (head := read_plain(mv, addr)) is not None
                        and unicast[head[1] >> 24] and head[1] != bcast):
                    proto, src, tlen = head
                    if proto == run_proto and trust is run_trust:
                        # the run goes on (nearly every TCP datagram of a batch): as below, without
                        # looking the transport up again
                        delivered += 1
                        if trust:
                            trusted_n += 1
                        run.append((src, addr, mv[20:tlen]))
                        continue
                    entry = entries.get(proto)
                    if entry is not None:
                        many, one, trusted_one = entry
                        if trust:
                            if trusted_one is None:
                                if run:
                                    self._deliver_run(run_to, run, run_trust, now)
                                    run = []
                                self._input_offloaded_full(mv, meta, now)
                                run_proto = -1          # (code ran that may have changed the transports)
                                continue
                            trusted_n += 1
                        delivered += 1
                        if many is not None:
                            if many is not run_to or trust is not run_trust:
                                if run:
                                    self._deliver_run(run_to, run, run_trust, now)
                                    run = []
                                run_to = many
                                run_trust = trust
                            # (here too after a datagram that went elsewhere: the shortcut resumes)
                            run_proto = proto
                            run.append((src, addr, mv[20:tlen]))
                            continue
                        if run:
                            self._deliver_run(run_to, run, run_trust, now)
                            run = []
                        try:
                            (trusted_one if trust else one)(src, addr, mv[20:tlen], now)
                        except Exception:  # a transport bug must not kill the loop
                            self.counters.inc("ip.in.drop.transport_error")
                            log.exception("transport %d failed on a datagram", proto)
                        run_proto = -1
                        continue
                if run:
                    self._deliver_run(run_to, run, run_trust, now)
                    run = []
                if not trust:
                    self._input_full(buf, now)
                else:
                    self._input_offloaded_full(mv, meta, now)
                run_proto = -1
            if run:
                self._deliver_run(run_to, run, run_trust, now)
        finally:
            if delivered:
                c = self.counters
                c.inc("ip.in.packets", delivered)
                c.inc("ip.in.delivered", delivered)
                if trusted_n:
                    c.inc("ip.in.csum_trusted", trusted_n)

    def _deliver_run(self, to, run: list, trusted: bool, now: float) -> None:
        try:
            to(run, now, trusted)
        except Exception:  # a transport bug must not kill the loop
            self.counters.inc("ip.in.drop.transport_error")
            log.exception("transport failed on a run of %d datagrams", len(run))

    def _input_offloaded_full(self, mv, meta, now: float) -> None:
        """A datagram with a partial or verified checksum the fast path did not take: a
        partial checksum is completed here (RFC 1071), then the full input path."""
        if meta.needs_csum:
            start = meta.csum_start
            at = start + meta.csum_offset
            end = min(len(mv), int.from_bytes(mv[2:4], "big")) if len(mv) >= 4 else 0
            if 20 <= start and at + 2 <= end:
                whole = bytearray(mv)
                # the field holds the pseudo-header sum: the sum from csum_start on, complemented
                value = 0xFFFF ^ _checksum.sum16(whole[start:end], 0)
                whole[at:at + 2] = (value or 0xFFFF).to_bytes(2, "big")
                self.counters.inc("ip.in.csum_completed")
                mv = memoryview(whole)
        self._input_full(mv, now)

    def _input_full(self, buf, now: float) -> None:
        """The full input path (RFC 1122 §3.2.1): every check, every drop counted by reason."""
        c = self.counters
        c.inc("ip.in.packets")
        if len(buf) and buf[0] >> 4 == 6:
            c.inc("ip.in.drop.not_ipv4")
            return
        try:
            p = parse_ipv4(buf)
        except MalformedPacket as exc:
            c.inc("ip.in.drop." + exc.reason)
            return
        if p.ihl > 5:                               # options: walk them so a broken one cannot hide
            try:
                for _ in iter_ipv4_options(p.options):
                    pass
            except MalformedPacket as exc:
                c.inc("ip.in.drop." + exc.reason)
                return
        src = p.src
        if not is_unique_unicast(src) or src == self.broadcast:
            c.inc("ip.in.drop.bad_src")
            return
        if p.dst != self.addr:
            c.inc("ip.in.drop.not_for_us")
            return
        if p.flags & 1 or p.frag_offset:            # MF or offset: a fragment (RFC 791 §3.2)
            whole = self.reassembler.add(p, now)
            if whole is None:
                return
            p = parse_ipv4(whole)
            datagram = whole
        else:
            datagram = buf
        self._deliver(p, datagram, now)

    def _deliver(self, p, datagram, now: float) -> None:
        c = self.counters
        proto = p.protocol
        transport = self.transports.get(proto)
        if transport is not None:
            c.inc("ip.in.delivered")
            try:
                transport.on_datagram(p.src, p.dst, p.payload, now)
            except Exception:  # a transport bug must not kill the loop
                c.inc("ip.in.drop.transport_error")
                log.exception("transport %d failed on a datagram", proto)
        elif proto == PROTO_ICMP:
            c.inc("ip.in.delivered")
            self.icmp.input(p.src, p.dst, p.payload, datagram, now)
        elif proto == PROTO_UDP:
            c.inc("ip.in.delivered")
            self.udp.input(p.src, p.dst, p.payload, datagram, now)
        else:
            c.inc("ip.in.drop.unknown_protocol")
            self.icmp.send_error(W.DEST_UNREACH, W.PROTOCOL, datagram, now)

    # -- timers --------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self.reassembler.next_deadline()

    def poll(self, now: float) -> None:
        """Fire due timers: reassembly timeouts (RFC 792 Time Exceeded code 1 if fragment zero came)."""
        for quote in self.reassembler.expire(now):
            self.icmp.send_error(W.TIME_EXCEEDED, W.FRAG_REASSEMBLY_EXCEEDED, quote, now)

    # -- output --------------------------------------------------------------------------------
    def _send_offloaded(self, dst, protocol, payload, src, df, ttl, tos, meta, headroom) -> int:
        """One datagram with offload metadata, never fragmented: up to 65535 bytes when it is a
        GSO super-segment (the link cuts it), up to the MTU otherwise."""
        plen = len(payload)
        size = 20 + plen
        limit = MAX_DATAGRAM if meta.gso_type else self.mtu
        if size > limit:
            self.counters.inc("ip.out.drop.too_big_df" if limit == self.mtu else "ip.out.drop.too_big")
            raise DatagramTooBig(size, limit)
        if src is None:
            src = self.addr
        if ttl is None:
            ttl = self.ttl
        if headroom >= 20:
            # the header goes in front of the segment, in the segment's own buffer: no copy
            buf = payload.obj
            at = headroom - 20
            self._header(buf, at, src, dst, protocol, size, ttl, df, tos)
            self.counters.inc("ip.out.packets")
            self.emit(memoryview(buf) if not at and len(buf) == size else memoryview(buf)[at:at + size], meta)
            return 1
        buf = self._txbuf
        self._header(buf, 0, src, dst, protocol, size, ttl, df, tos)
        view = self._txview
        view[20:size] = payload
        self.counters.inc("ip.out.packets")
        self.emit(view[:size], meta)
        return 1

    def _header(self, buf, at: int, src, dst, protocol: int, size: int, ttl: int, df: bool, tos: int) -> None:
        """A 20-byte header for a datagram of ``size`` bytes at ``buf[at:]`` (RFC 791 §3.1), the next
        ident; the common case (int addresses, TOS 0) in one pack_into, the checksum from the field
        values (RFC 1071 §2)."""
        if tos or type(src) is not int or type(dst) is not int:
            build_ipv4_header(buf, at, src=src, dst=dst, protocol=protocol, payload_len=size - 20, ttl=ttl,
                              ident=self.next_ident(), df=df, tos=tos)
            return
        ident = self._ident = (self._ident + 1) & 0xFFFF
        fragword = 0x4000 if df else 0
        s = (0x4500 + size + ident + fragword + ((ttl << 8) | protocol) + src + dst) % 0xFFFF
        try:
            _pack_hdr(buf, at, 0x45, 0, size, ident, fragword, ttl, protocol, 0xFFFF - s if s else 0, src, dst)
        except struct.error:
            raise ValueError(f"IPv4 header field out of range (src {src}, dst {dst}, ttl {ttl}, "
                             f"protocol {protocol})") from None

    def next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def send(self, dst: int, protocol: int, payload, now: float | None = None, *, src: int | None = None,
             df: bool = False, ttl: int | None = None, tos: int = 0, meta=None, headroom: int = 0) -> int:
        """Send ``payload`` (a transport header + data) to ``dst``; returns the number of packets.

        Fragments when the datagram exceeds the MTU and DF is clear (RFC 791
        §3.2); with DF set raises :class:`DatagramTooBig`.  ``meta``: offload
        metadata for the link (a :class:`~netstack.link.base.PacketMeta`, passed
        to ``emit`` with the datagram): a GSO super-segment may exceed the MTU,
        the link segments it.  ``headroom``: ``payload`` is a memoryview of the tail
        of a bytearray with that many free bytes in front of it
        (:class:`netstack.transport.Outgoing`); a datagram that needs no
        fragmenting is then built and sent in place, its header in those bytes.
        """
        if meta is not None:
            return self._send_offloaded(dst, protocol, payload, src, df, ttl, tos, meta, headroom)
        if headroom < 20 and src is None and ttl is None and not tos:
            return self.send_plain(dst, protocol, payload, df)
        return self._send_general(dst, protocol, payload, src, df, ttl, tos, headroom)

    def send_plain(self, dst: int, protocol: int, payload, df: bool = False) -> int:
        """:meth:`send` with nothing but DF: our address, the default TTL, TOS 0, no metadata
        and no headroom, as the stack sends a transport's plain outbox items (pure ACKs, small
        segments).  A datagram that fits the MTU (nearly all) leaves as one new ``bytes``: the
        header in one pack, its checksum from the field values (RFC 1071 §2), joined to the
        segment; anything else (fragmenting, a DF the path MTU floor clears) as :meth:`send`."""
        size = 20 + len(payload)
        if size > self.mtu or type(dst) is not int or (df and self.pmtu.no_df and dst in self.pmtu.no_df):
            return self._send_general(dst, protocol, payload, None, df, None, 0, 0)
        src = self.addr
        ttl = self.ttl
        ident = self._ident = (self._ident + 1) & 0xFFFF
        fragword = 0x4000 if df else 0
        s = (0x4500 + size + ident + fragword + ((ttl << 8) | protocol) + src + dst) % 0xFFFF
        try:
            datagram = _pack_hdr_bytes(0x45, 0, size, ident, fragword, ttl, protocol, 0xFFFF - s if s else 0,
                                       src, dst) + payload
        except struct.error:
            raise ValueError(f"IPv4 header field out of range (src {src}, dst {dst}, ttl {ttl}, "
                             f"protocol {protocol})") from None
        self.counters.inc("ip.out.packets")
        self.emit(datagram)
        return 1

    def _send_general(self, dst, protocol: int, payload, src, df: bool, ttl, tos: int, headroom: int) -> int:
        """:meth:`send` without metadata: the path-MTU floor's DF, a header in place behind the
        segment's headroom, TOS or options-free headers for any fields, fragmentation."""
        c = self.counters
        plen = len(payload)
        size = 20 + plen
        if df and self.pmtu.no_df and dst in self.pmtu.no_df:
            df = False                   # the path is narrower than the floor: let routers fragment
            c.inc("ip.out.df_cleared")
        if src is None:
            src = self.addr
        if ttl is None:
            ttl = self.ttl
        if size <= self.mtu and headroom >= 20 and not tos and type(src) is int and type(dst) is int:
            # in place: the header goes in front of the segment, in one pack_into, the checksum
            # from the field values (RFC 1071 §2) (IPLayer._header, inlined: every data segment)
            ident = self._ident = (self._ident + 1) & 0xFFFF
            fragword = 0x4000 if df else 0
            s = (0x4500 + size + ident + fragword + ((ttl << 8) | protocol) + src + dst) % 0xFFFF
            buf = payload.obj
            at = headroom - 20
            try:
                _pack_hdr(buf, at, 0x45, 0, size, ident, fragword, ttl, protocol, 0xFFFF - s if s else 0, src, dst)
            except struct.error:
                raise ValueError(f"IPv4 header field out of range (src {src}, dst {dst}, ttl {ttl}, "
                                 f"protocol {protocol})") from None
            c.inc("ip.out.packets")
            self.emit(memoryview(buf) if not at and len(buf) == size else memoryview(buf)[at:at + size])
            return 1
        buf = self._txbuf
        view = self._txview
        if size <= self.mtu:
            self._header(buf, 0, src, dst, protocol, size, ttl, df, tos)
            view[20:size] = payload
            c.inc("ip.out.packets")
            self.emit(view[:size])
            return 1
        if size > MAX_DATAGRAM:
            c.inc("ip.out.drop.too_big")
            raise DatagramTooBig(size, MAX_DATAGRAM)
        if df:
            c.inc("ip.out.drop.too_big_df")
            raise DatagramTooBig(size, self.mtu)
        # RFC 791 §3.2 fragmentation: every fragment but the last carries a multiple of 8 data bytes
        chunk = (self.mtu - 20) & ~7
        ident = self.next_ident()
        pv = payload if type(payload) is memoryview else memoryview(payload)
        n = 0
        for off in range(0, plen, chunk):
            end = min(off + chunk, plen)
            build_ipv4_header(buf, 0, src=src, dst=dst, protocol=protocol, payload_len=end - off, ttl=ttl,
                              ident=ident, mf=end < plen, frag_offset=off, tos=tos)
            view[20:20 + end - off] = pv[off:end]
            n += 1
            self.emit(view[:20 + end - off])
        c.inc("ip.out.packets", n)
        c.inc("ip.out.fragmented")
        c.inc("ip.out.fragments", n)
        return n
