"""Our counters under the MIB names ``nstat`` prints, and the gauges of a running stack.

netstack names a counter for what it counts (``tcp.retrans_segs``,
``ip.in.drop.bad_checksum``; :mod:`netstack.counters`).  Operators know the
names of the SNMP MIBs as Linux prints them in ``/proc/net/snmp``,
``/proc/net/netstat`` and ``nstat``: IP-MIB (RFC 4293), ICMP (RFC 4293's
icmpStats), TCP-MIB (RFC 4022), UDP-MIB (RFC 4113), and Linux's ``TcpExt``.
:data:`MIB` maps one to the other; a MIB value is the sum of the counters its
row lists (a name ending in ``*`` is every counter with that prefix, minus
the row's exclusions).  ``netstack stats`` prints the MIB names first, then
the gauges, then every counter no row covers, under its own name: nothing
is hidden.

==========================  =================================================================
MIB name                    our counters
==========================  =================================================================
IpInReceives                ip.in.packets
IpInHdrErrors               ip.in.drop.* except the address, protocol, reassembly and
                            transport reasons below
IpInAddrErrors              ip.in.drop.not_for_us, ip.in.drop.bad_src
IpInUnknownProtos           ip.in.drop.unknown_protocol
IpInDelivers                ip.in.delivered
IpOutRequests               ip.out.packets
IpOutDiscards               ip.out.drop.*
IpReasmReqds                ip.reasm.fragments
IpReasmOKs                  ip.reasm.oks
IpReasmFails                ip.reasm.fails
IpFragOKs                   ip.out.fragmented
IpFragCreates               ip.out.fragments
IcmpInMsgs                  icmp.in.packets
IcmpInErrors                icmp.in.drop.*
IcmpInEchos                 icmp.in.echo_request
IcmpInEchoReps              icmp.in.echo_reply
IcmpInDestUnreachs          icmp.in.dest_unreach
IcmpInTimeExcds             icmp.in.time_exceeded
IcmpInParmProbs             icmp.in.parameter_problem
IcmpInSrcQuenchs            icmp.in.source_quench
IcmpInRedirects             icmp.in.redirect
IcmpOutMsgs                 icmp.out.packets
IcmpOutEchoReps             icmp.out.echo_reply
IcmpOutDestUnreachs         icmp.out.proto_unreach, icmp.out.port_unreach,
                            icmp.out.frag_needed, icmp.out.dest_unreach_*
IcmpOutTimeExcds            icmp.out.time_exceeded
TcpActiveOpens              tcp.active_opens
TcpPassiveOpens             tcp.passive_opens
TcpAttemptFails             tcp.attempt_fails
TcpEstabResets              tcp.estab_resets
TcpInSegs                   tcp.in_segs
TcpOutSegs                  tcp.out_segs
TcpRetransSegs              tcp.retrans_segs
TcpInErrs                   tcp.in.drop.* of a malformed segment (checksum, header, options)
TcpInCsumErrors             tcp.in.drop.bad_checksum
TcpOutRsts                  tcp.out_rsts
UdpInDatagrams              udp.in.datagrams
UdpNoPorts                  udp.in.no_port
TcpExtListenOverflows       tcp.listen.overflows
TcpExtListenDrops           tcp.listen.drops
TcpExtDelayedACKs           tcp.delayed_acks
TcpExtPAWSEstab             tcp.in.drop.paws
TcpExtTCPChallengeACK       tcp.in.challenge_ack
TcpExtTCPOFOQueue           tcp.in.ooo_segs
TcpExtTCPOFODrop            tcp.in.drop.ooo_full
TcpExtTCPTimeouts           tcp.rto_expirations
TcpExtTCPAbortOnTimeout     tcp.timeouts
TcpExtTCPLossProbes         tcp.tlp_probes
TcpExtTCPLossProbeRecovery  tcp.tlp_recoveries
TcpExtTCPSackRecovery       tcp.sack_recoveries
TcpExtTCPFastRetrans        tcp.fast_retransmits
TcpExtTCPLostRetransmit     tcp.lost_retransmits
TcpExtTCPKeepAlive          tcp.keepalive_probes
TcpExtTCPWinProbe           tcp.window_probes
==========================  =================================================================

The gauges (:func:`gauges`), values at the instant of the request:

==========================  =================================================================
TcpCurrEstab                connections in ESTABLISHED or CLOSE-WAIT (RFC 4022 tcpCurrEstab)
tcp.connections             connections the TCP layer holds, any state (TIME-WAIT included)
tcp.listeners               listening ports
tcp.accept_queue            connections waiting for accept(), all listeners
tcp.syn_queue               half-open connections (SYN-RECEIVED), all listeners
ip.reasm.bytes_held         fragment bytes waiting for reassembly
==========================  =================================================================
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["MIB", "MibRow", "mib_values", "unmapped", "gauges"]


class MibRow(NamedTuple):
    """One MIB name: the sum of ``counters`` (``prefix*`` patterns allowed) minus ``exclude``."""
    name: str
    counters: tuple[str, ...]
    exclude: tuple[str, ...] = ()


#: The semantic TCP drops: a well-formed segment the state machine refused (not TcpInErrs).
_TCP_SEMANTIC_DROPS = ("tcp.in.drop.listen_no_syn", "tcp.in.drop.bad_ack", "tcp.in.drop.paws",
                       "tcp.in.drop.zero_window", "tcp.in.drop.unacceptable", "tcp.in.drop.no_ack",
                       "tcp.in.drop.ack_unsent", "tcp.in.drop.ooo_full", "tcp.in.drop.other_worker")
#: IPv4 drops that are not header errors (each has its own MIB row, or is a reassembly failure).
_IP_NOT_HDR = ("ip.in.drop.not_for_us", "ip.in.drop.bad_src", "ip.in.drop.unknown_protocol",
               "ip.in.drop.transport_error", "ip.in.drop.reasm_*",
               "ip.in.drop.bad_fragment_length")

MIB: tuple[MibRow, ...] = (
    MibRow("IpInReceives", ("ip.in.packets",)),
    MibRow("IpInHdrErrors", ("ip.in.drop.*",), _IP_NOT_HDR),
    MibRow("IpInAddrErrors", ("ip.in.drop.not_for_us", "ip.in.drop.bad_src")),
    MibRow("IpInUnknownProtos", ("ip.in.drop.unknown_protocol",)),
    MibRow("IpInDelivers", ("ip.in.delivered",)),
    MibRow("IpOutRequests", ("ip.out.packets",)),
    MibRow("IpOutDiscards", ("ip.out.drop.*",)),
    MibRow("IpReasmReqds", ("ip.reasm.fragments",)),
    MibRow("IpReasmOKs", ("ip.reasm.oks",)),
    MibRow("IpReasmFails", ("ip.reasm.fails",)),
    MibRow("IpFragOKs", ("ip.out.fragmented",)),
    MibRow("IpFragCreates", ("ip.out.fragments",)),
    MibRow("IcmpInMsgs", ("icmp.in.packets",)),
    MibRow("IcmpInErrors", ("icmp.in.drop.*",)),
    MibRow("IcmpInEchos", ("icmp.in.echo_request",)),
    MibRow("IcmpInEchoReps", ("icmp.in.echo_reply",)),
    MibRow("IcmpInDestUnreachs", ("icmp.in.dest_unreach",)),
    MibRow("IcmpInTimeExcds", ("icmp.in.time_exceeded",)),
    MibRow("IcmpInParmProbs", ("icmp.in.parameter_problem",)),
    MibRow("IcmpInSrcQuenchs", ("icmp.in.source_quench",)),
    MibRow("IcmpInRedirects", ("icmp.in.redirect",)),
    MibRow("IcmpOutMsgs", ("icmp.out.packets",)),
    MibRow("IcmpOutEchoReps", ("icmp.out.echo_reply",)),
    MibRow("IcmpOutDestUnreachs", ("icmp.out.proto_unreach", "icmp.out.port_unreach", "icmp.out.frag_needed",
                                   "icmp.out.dest_unreach_*")),
    MibRow("IcmpOutTimeExcds", ("icmp.out.time_exceeded",)),
    MibRow("TcpActiveOpens", ("tcp.active_opens",)),
    MibRow("TcpPassiveOpens", ("tcp.passive_opens",)),
    MibRow("TcpAttemptFails", ("tcp.attempt_fails",)),
    MibRow("TcpEstabResets", ("tcp.estab_resets",)),
    MibRow("TcpInSegs", ("tcp.in_segs",)),
    MibRow("TcpOutSegs", ("tcp.out_segs",)),
    MibRow("TcpRetransSegs", ("tcp.retrans_segs",)),
    MibRow("TcpInErrs", ("tcp.in.drop.*",), _TCP_SEMANTIC_DROPS),
    MibRow("TcpInCsumErrors", ("tcp.in.drop.bad_checksum",)),
    MibRow("TcpOutRsts", ("tcp.out_rsts",)),
    MibRow("UdpInDatagrams", ("udp.in.datagrams",)),
    MibRow("UdpNoPorts", ("udp.in.no_port",)),
    MibRow("TcpExtListenOverflows", ("tcp.listen.overflows",)),
    MibRow("TcpExtListenDrops", ("tcp.listen.drops",)),
    MibRow("TcpExtDelayedACKs", ("tcp.delayed_acks",)),
    MibRow("TcpExtPAWSEstab", ("tcp.in.drop.paws",)),
    MibRow("TcpExtTCPChallengeACK", ("tcp.in.challenge_ack",)),
    MibRow("TcpExtTCPOFOQueue", ("tcp.in.ooo_segs",)),
    MibRow("TcpExtTCPOFODrop", ("tcp.in.drop.ooo_full",)),
    MibRow("TcpExtTCPTimeouts", ("tcp.rto_expirations",)),
    MibRow("TcpExtTCPAbortOnTimeout", ("tcp.timeouts",)),
    MibRow("TcpExtTCPLossProbes", ("tcp.tlp_probes",)),
    MibRow("TcpExtTCPLossProbeRecovery", ("tcp.tlp_recoveries",)),
    MibRow("TcpExtTCPSackRecovery", ("tcp.sack_recoveries",)),
    MibRow("TcpExtTCPFastRetrans", ("tcp.fast_retransmits",)),
    MibRow("TcpExtTCPLostRetransmit", ("tcp.lost_retransmits",)),
    MibRow("TcpExtTCPKeepAlive", ("tcp.keepalive_probes",)),
    MibRow("TcpExtTCPWinProbe", ("tcp.window_probes",)),
)


def _match(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def _covered(row: MibRow, name: str) -> bool:
    return (any(_match(name, p) for p in row.counters)
            and not any(_match(name, p) for p in row.exclude))


def mib_values(counters: dict[str, int]) -> dict[str, int]:
    """Every MIB name of :data:`MIB` with its value from ``counters`` (a snapshot), in table order."""
    return {row.name: sum(v for k, v in counters.items() if _covered(row, k)) for row in MIB}


def unmapped(counters: dict[str, int]) -> dict[str, int]:
    """The counters no row of :data:`MIB` covers, under their own names."""
    return {k: v for k, v in sorted(counters.items()) if not any(_covered(row, k) for row in MIB)}


#: RFC 4022 tcpCurrEstab: "the number of TCP connections for which the current state is
#: either ESTABLISHED or CLOSE-WAIT"
_CURR_ESTAB = ("ESTABLISHED", "CLOSE-WAIT")


def gauges(stack) -> dict[str, int]:
    """The stack's gauges now (see the module's table)."""
    tcp = stack.tcp
    conns = list(tcp.connections.values())
    listeners = list(tcp.listeners.values())
    infos = [lst.info() for lst in listeners]
    return {
        "TcpCurrEstab": sum(1 for c in conns if c.state.value in _CURR_ESTAB),
        "tcp.connections": len(conns),
        "tcp.listeners": len(listeners),
        "tcp.accept_queue": sum(i["recv_q"] for i in infos),
        "tcp.syn_queue": sum(i["syn_queue"] for i in infos),
        "ip.reasm.bytes_held": stack.ip.reassembler.bytes_held,
    }
