"""The path-MTU floor and the per-destination decrease rate limit (netstack.ip.pmtu; RFC 1191,
RFC 8201), TCP's check that an ICMP error quotes a segment in flight (RFC 5927 §4.1), and the
whole chain through the stack: a crafted ICMP "fragmentation needed" at MTU 68 and 400."""
from __future__ import annotations

import asyncio

import pytest

from netstack.counters import Counters
from netstack.ip.pmtu import PathMtuTable
from netstack.link.faults import FaultyLink
from netstack.link.memory import MemoryLink
from netstack.stack import Stack
from netstack.wire import icmp as W
from netstack.wire.ipv4 import ip2int, ipv4_packet, parse_ipv4
from netstack.wire.tcp import parse_tcp
from tests.support.tcp_script import PEER, US, Script

DST = 0xC6120001


def table(**kw) -> PathMtuTable:
    return PathMtuTable(Counters(), **kw)


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize("reported", [0, 68, 400, 551])
def test_a_report_below_the_floor_gives_the_floor(reported):
    t = table()
    assert t.report(DST, reported, 0.0) == 552
    assert t.path_mtu(DST, 0.0) == 552
    assert t.counters.get("ip.pmtu.floored") == 1 and t.counters.get("ip.pmtu.decreases") == 1
    assert not t.df_allowed(DST)                    # the path is narrower than we send: routers fragment


def test_floor_is_configurable_and_a_report_above_it_is_taken_as_is():
    t = table(min_pmtu=1280)
    assert t.report(DST, 576, 0.0) == 1280
    t2 = table()
    assert t2.report(DST, 1400, 0.0) == 1400 and t2.df_allowed(DST)
    with pytest.raises(ValueError):
        table(min_pmtu=67)


def test_decreases_are_rate_limited_per_destination_and_counted():
    t = table(decrease_interval=1.0)
    assert t.report(DST, 1400, 10.0) == 1400
    assert t.report(DST, 1200, 10.5) is None        # a second decrease within the interval: ignored
    assert t.report(DST, 600, 10.99) is None
    assert t.counters.get("ip.pmtu.ignored.rate_limited") == 2
    assert t.path_mtu(DST, 10.99) == 1400
    assert t.report(DST + 1, 1000, 10.5) == 1000    # another destination has its own limit
    assert t.report(DST, 1200, 11.0) == 1200        # the interval has passed
    assert t.counters.get("ip.pmtu.decreases") == 3


def test_a_report_not_below_the_known_path_mtu_passes_with_the_known_value():
    t = table()
    t.report(DST, 1200, 0.0)
    assert t.report(DST, 1400, 0.1) == 1200         # another connection catching up: not a decrease
    assert t.report(DST, 1500, 0.1) == 1200
    assert t.counters.get("ip.pmtu.ignored.rate_limited") == 0


def test_entries_age_out_and_the_table_is_bounded():
    t = table(expiry=600.0, max_entries=3)
    t.report(DST, 1000, 0.0)
    assert t.path_mtu(DST, 599.0) == 1000 and t.path_mtu(DST, 600.0) == 1500
    for i in range(5):
        t.report(DST + 10 + i, 1000, 1000.0)
    assert len(t) == 3 and t.path_mtu(DST + 10, 1000.0) == 1500 and t.path_mtu(DST + 14, 1000.0) == 1000


# ------------------------------------------------------------------ TCP: the quote must be in flight


def _quote(sport, dport, seq):
    tcp8 = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (seq & 0xFFFFFFFF).to_bytes(4, "big")
    return memoryview(ipv4_packet(src=US, dst=PEER, protocol=6, payload=tcp8))


def _established(with_table: bool = True):
    s = Script()
    if with_table:
        s.layer.path_mtu = PathMtuTable(s.counters)
    conn, synack = s.passive_open()
    return s, conn, synack.seq + 1


def test_the_next_sequence_number_of_an_idle_connection_is_not_in_flight():
    s, conn, us = _established()
    mss = conn.snd.mss
    s.layer.on_icmp_error(3, 4, 68, _quote(80, 40000, us), s.now)   # SND.UNA == SND.NXT: nothing sent
    assert conn.snd.mss == mss
    assert s.counters.get("tcp.in.icmp.drop.out_of_window") == 1
    assert s.counters.get("tcp.in.icmp.frag_needed") == 0


@pytest.mark.parametrize("mtu", [68, 400])
def test_in_flight_quote_below_the_floor_sets_the_floor_mss(mtu):
    s, conn, us = _established()
    conn.send(b"m" * 3000)
    s.poll()
    s.sent()
    s.layer.on_icmp_error(3, 4, mtu, _quote(80, 40000, us + 1448), s.now)   # the second segment
    assert conn.snd.mss == 552 - 40 - 12                                   # timestamps on: 500
    segs = s.sent()
    assert segs and segs[0].seq == us and max(len(x.payload) for x in segs) == 500


@pytest.mark.parametrize("offset", [-1, 3000, 100000])
def test_out_of_window_quotes_are_ignored(offset):
    s, conn, us = _established()
    conn.send(b"m" * 3000)
    s.poll()
    s.layer.on_icmp_error(3, 4, 68, _quote(80, 40000, us + offset), s.now)   # before UNA, at/after NXT
    assert conn.snd.mss == 1448 and s.counters.get("tcp.in.icmp.drop.out_of_window") == 1


def test_a_second_decrease_within_the_interval_is_ignored_by_tcp_too():
    s, conn, us = _established()
    conn.send(b"m" * 3000)
    s.poll()
    s.layer.on_icmp_error(3, 4, 1200, _quote(80, 40000, us), s.now)
    assert conn.snd.mss == 1200 - 52
    s.layer.on_icmp_error(3, 4, 600, _quote(80, 40000, us), s.now + 0.1)
    assert conn.snd.mss == 1200 - 52
    assert s.counters.get("tcp.in.icmp.drop.pmtu_rate_limited") == 1
    assert s.counters.get("ip.pmtu.ignored.rate_limited") == 1


# ------------------------------------------------------------------ the whole chain through the stack


def _frag_needed(mtu: int, quoted_datagram: bytes) -> bytes:
    msg = W.dest_unreachable(W.FRAG_NEEDED, quoted_datagram, next_hop_mtu=mtu)
    return ipv4_packet(src=ip2int("198.51.100.1"), dst=ip2int("198.18.0.2"), protocol=1, payload=msg)


@pytest.mark.parametrize("mtu", [68, 400])
def test_stack_floors_a_crafted_frag_needed_and_clears_df(mtu):
    """Two stacks over the memory link; a 'router' ICMP quoting a segment in flight."""
    async def main():
        a, b = MemoryLink.pair()
        seen: list[bytes] = []
        tap = b.send

        # the client's packets (its ACKs) take 50 ms: the server always has data in flight
        slow_b = FaultyLink(b, delay=0.05, seed=1)
        async with Stack(a, "198.18.0.2") as server_stack, Stack(slow_b, "198.18.0.1") as client_stack:
            got = bytearray()

            async def handler(reader, writer):
                writer.write(b"x" * 200_000)
                await writer.drain()
                writer.close()

            await server_stack.start_server(handler, port=7000)
            # record what the server sends as the client's link receives it
            orig = client_stack.ip.input_batch

            def spy(batch, now):
                seen.extend(bytes(buf) for buf, _meta in batch)
                orig(batch, now)
            client_stack.ip.input_batch = spy
            reader, writer = await client_stack.open_connection("198.18.0.2", 7000)
            first = await reader.readexactly(1000)
            got += first
            data_pkts = [p for p in seen if len(p) > 1000]
            quoted = data_pkts[-1]
            tap(_frag_needed(mtu, quoted))                     # as if a router on the path said so
            got += await reader.read()
            writer.close()
            return server_stack.counters, seen, len(got)

    counters, seen, n = asyncio.run(asyncio.wait_for(main(), 20))
    assert n == 200_000
    assert counters.get("ip.pmtu.floored") == 1 and counters.get("tcp.in.icmp.frag_needed") == 1
    tail = [parse_ipv4(p) for p in seen[-20:] if len(p) > 100]
    assert tail and all(p.total_length <= 552 for p in tail)
    assert all(not p.flags & 2 for p in tail)                  # DF cleared: the path is below the floor
    assert counters.get("ip.out.df_cleared") > 0
