"""Capture as a link wrapper: record every packet to a pcap file, print the packet trace.

Like :class:`~netstack.link.faults.FaultyLink`, a link that wraps a link::

    link = CaptureLink(lab.link, pcap="session.pcap", trace=sys.stdout)
    async with Stack(link, "198.18.0.2") as stack:
        ...

Packets pass through unchanged.  Each one the stack receives
(:meth:`~netstack.link.base.Link.recv_batch`) and sends
(:meth:`~netstack.link.base.Link.send`) is, in the order it crosses the
link:

* with ``pcap`` (a path or a binary file), written to a libpcap file with
  link type RAW (IPv4 with no link header), stamped with the wall clock
  (:class:`netstack.capture.pcap.PcapWriter`; tshark and tcpdump read it).
  ``pcap_flush="buffered"`` (the default) writes the file in 64 KiB blocks;
  ``"packet"`` flushes after every packet, so a live capture can be read while
  it grows, like tcpdump's ``-U``;
* with ``trace`` (a text stream such as ``sys.stdout``), printed as one line in
  the dissector's tcpdump-style format (:mod:`netstack.capture.format`),
  ``<`` for received and ``>`` for sent, with wall-clock time and sequence
  numbers relative to each connection's first.

A received batch is recorded when the stack reads it, before the stack
answers any of it.  The recording ends when the stack lets go of the link
(:meth:`CaptureLink.detach`, which :meth:`netstack.stack.Stack.close`
calls) or at :meth:`CaptureLink.close`: the pcap is then flushed and the
file closed (a file object passed in is flushed, not closed); packets after
that pass through unrecorded.  Capture costs nothing when off: do not wrap.
"""
from __future__ import annotations

import time
from typing import BinaryIO, Callable, TextIO

from netstack.link.base import Link, PacketMeta

__all__ = ["CaptureLink", "trace_formatter"]


def trace_formatter() -> Callable[[bytes | memoryview], str]:
    """A one-argument printer: the dissector's tcpdump-style line for one raw IPv4 packet,
    with wall-clock time and per-connection relative sequence numbers."""
    from netstack.capture.dissect import dissect
    from netstack.capture.format import SeqTracker, format_packet, format_time

    tracker = SeqTracker()

    def line(data) -> str:
        t = time.time_ns()
        return format_packet(dissect(data), tracker, ts=format_time(t // 1_000_000_000, t % 1_000_000_000))
    return line


class CaptureLink(Link):
    """Wraps another :class:`Link` and records its traffic (see module doc)."""

    def __init__(self, inner: Link, *, pcap: str | BinaryIO | None = None, trace: TextIO | None = None,
                 pcap_flush: str = "buffered") -> None:
        if pcap is None and trace is None:
            raise ValueError("nothing to capture: give pcap, trace or both (or use the link itself)")
        if pcap_flush not in ("buffered", "packet"):
            raise ValueError(f"pcap_flush must be 'buffered' or 'packet', not {pcap_flush!r}")
        #: flush the pcap after every packet (tcpdump -U)
        self.flush_each = pcap_flush == "packet"
        self.inner = inner
        self.mtu = inner.mtu
        self.offload = inner.offload
        self.name = f"capture({inner.name})"
        #: the pcap writer while recording, else None
        self.pcap = None
        if pcap is not None:
            from netstack.capture.pcap import LINKTYPE_RAW, PcapWriter
            self.pcap = PcapWriter(pcap, linktype=LINKTYPE_RAW)
        self.trace = trace
        self._format = trace_formatter() if trace is not None else None

    # -- recording -----------------------------------------------------------------------------
    def _record(self, direction: str, data) -> None:
        pcap = self.pcap
        if pcap is not None:
            pcap.write(data)
            if self.flush_each:
                pcap.flush()
        if self._format is not None:
            try:
                line = self._format(data)
            except Exception as exc:  # the dissector must not kill the loop
                line = f"[unprintable packet: {exc}]"
            print(f"{direction} {line}", file=self.trace, flush=True)

    def _finish(self) -> None:
        """End the recording: flush and close the pcap, stop tracing."""
        pcap, self.pcap = self.pcap, None
        self._format = None
        if pcap is not None:
            pcap.close()

    # -- Link interface ------------------------------------------------------------------------
    def send(self, data, meta: PacketMeta | None = None) -> None:
        self._record(">", data)
        self.inner.send(data, meta)

    def recv_batch(self, max_packets: int = 64):
        batch = self.inner.recv_batch(max_packets)
        for view, _meta in batch:
            self._record("<", view)
        return batch

    def attach(self, loop, on_readable) -> None:
        self.inner.attach(loop, on_readable)

    def detach(self) -> None:
        try:
            self.inner.detach()
        finally:
            self._finish()

    def fileno(self):
        return self.inner.fileno()

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self.inner.close()
