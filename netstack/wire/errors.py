"""The one exception raised for malformed input by every parser in ``netstack.wire``.

Bad input is part of the API (RFC 1122 §1.2.2, the robustness principle: "be
liberal in what you accept" stops where a packet cannot be read safely).  A
parser either returns a fully valid object or raises :class:`MalformedPacket`
carrying a *stable lowercase reason token*.  Callers drop the packet and count
it under :attr:`MalformedPacket.counter_name`, e.g. ``tcp.in.drop.bad_checksum``.

Reason tokens used by the parsers (stable; tests assert on them):

========================  =====================================================
``truncated``             fewer bytes than the fixed header (or a declared
                          header) needs
``bad_version``           IPv4 version field is not 4 (RFC 791 §3.1)
``bad_ihl``               IPv4 IHL < 5 words (RFC 791 §3.1)
``bad_total_length``      IPv4 total length below the header or beyond the buffer
``bad_checksum``          IPv4 header / ICMP / TCP checksum does not verify
``bad_data_offset``       TCP data offset < 5 words or beyond the segment
``bad_option_length``     option length byte 0 or 1, missing, running past the
                          header, or wrong for a fixed-size option (MSS, WS,
                          SACK-Permitted, Timestamps)
``bad_sack_length``       SACK option length not 2 + 8n with n in 1..4 (RFC 2018 §3)
``bad_quoted_datagram``   ICMP error whose quoted datagram is not an IPv4
                          header plus data (RFC 792, RFC 1122 §3.2.2)
========================  =====================================================
"""
from __future__ import annotations

__all__ = ["MalformedPacket"]

_COUNTER_LAYER = {"ipv4": "ip"}


class MalformedPacket(ValueError):
    """A packet that cannot be parsed; the packet is dropped and counted.

    ``str(e) == f"{layer}: {reason}: {detail}"``.  ``layer`` is one of
    ``"ipv4"``, ``"icmp"``, ``"tcp"``, ``"udp"``; ``reason`` is a stable
    lowercase token (see the module docstring); ``detail`` is human text.
    """

    def __init__(self, layer: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{layer}: {reason}: {detail}")
        self.layer = layer
        self.reason = reason
        self.detail = detail

    @property
    def counter_name(self) -> str:
        """The drop counter this packet belongs to: ``<counter layer>.in.drop.<reason>``.

        For example ``ip.in.drop.bad_checksum`` or ``tcp.in.drop.bad_data_offset``.
        The counter layer is :attr:`layer`, except that IPv4 counts under ``ip``
        (as ``netstat -s`` groups it), so every IP drop shares one prefix.
        """
        return f"{_COUNTER_LAYER.get(self.layer, self.layer)}.in.drop.{self.reason}"

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (type(self), (self.layer, self.reason, self.detail))
