"""IPv4 (RFC 791, RFC 1122 §3): input, output with fragmentation, reassembly, the ICMP responder.

- :mod:`netstack.ip.layer`       :class:`IPLayer`: validation, demultiplexing, output, fragmentation
- :mod:`netstack.ip.reassembly`  fragment reassembly with limits
- :mod:`netstack.ip.icmp`        echo replies, ICMP errors (rules of RFC 1122 §3.2.2), rate limit
- :mod:`netstack.ip.udp`         minimal UDP input: validate, answer port unreachable
- :mod:`netstack.ip.ratelimit`   the token bucket
- :mod:`netstack.ip.pmtu`        path MTU per destination: the floor, the decrease rate limit
"""
from netstack.ip.layer import DatagramTooBig, IPLayer

__all__ = ["IPLayer", "DatagramTooBig"]
