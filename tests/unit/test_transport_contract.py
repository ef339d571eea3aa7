"""The declared transport contract (netstack.transport): TCP implements it, emits one item
shape, and the stack relies on nothing else."""
import asyncio

from netstack.link.memory import MemoryLink
from netstack.stack import Stack
from netstack.tcp import TCPConfig, TCPLayer
from netstack.transport import Outgoing, Transport
from netstack.wire.ipv4 import ipv4_packet, parse_ipv4
from netstack.wire.tcp import ACK, RST, SYN, parse_tcp, tcp_segment

from tests.support.ip_helpers import PEER, US


def test_tcp_layer_is_a_transport():
    assert isinstance(TCPLayer(US), Transport)


def test_an_object_missing_a_member_is_not_a_transport():
    class NoIcmp:
        outbox = None
        on_output = None

        def on_datagram(self, src, dst, payload, now): ...
        def poll(self, now): ...
        def next_deadline(self): ...

    assert not isinstance(NoIcmp(), Transport)      # on_icmp_error is required, not optional


def test_every_tcp_outbox_item_is_an_outgoing():
    layer = TCPLayer(US)
    layer.connect(PEER, 80, 0.0)                                # a connection's SYN: DF set
    syn = tcp_segment(src=PEER, dst=US, src_port=4000, dst_port=81, seq=1, ack=0, flags=SYN, window=1000)
    layer.on_datagram(PEER, US, memoryview(syn), 0.1)           # to a closed port: RST, DF clear
    items = list(layer.outbox)
    assert [type(i) for i in items] == [Outgoing, Outgoing]
    (dst1, seg1, df1, partial1, gso1, room1), (dst2, seg2, df2, partial2, gso2, room2) = items
    assert (partial1, gso1, partial2, gso2) == (False, 0, False, 0)      # no offload asked
    assert (room1, room2) == (0, 0)          # no data: copied into the IP layer's buffer
    assert (dst1, df1) == (PEER, True) and parse_tcp(seg1, src=US, dst=PEER).flags == SYN
    assert (dst2, df2) == (PEER, False) and parse_tcp(seg2, src=US, dst=PEER).flags == RST | ACK


def test_a_data_segment_leaves_room_for_the_ip_header_in_its_own_buffer():
    """Outgoing.headroom: a segment with data is built behind 20 free bytes, so that the IP
    layer sends it in place (the payload copied once, send buffer to link)."""
    from tests.support.tcp_script import Script

    for offload in (False, True):
        s = Script(TCPConfig(max_segment=64000, sndbuf=1 << 20))
        s.layer.offload = offload
        conn, _ = s.passive_open(win=65535, wscale=7, mss=1460)
        s.layer.outbox.clear()
        conn.send(bytes(range(256)) * 8)
        s.poll()
        dst, seg, df, partial, gso, room = s.layer.outbox[0]
        assert room == 20 and type(seg) is memoryview and len(seg.obj) == 20 + len(seg)
        assert bytes(seg.obj[20:]) == bytes(seg) and len(seg) == 32 + 2048 and partial is offload


def test_the_stack_sends_the_df_of_each_item():
    async def main():
        a, peer = MemoryLink.pair()
        async with Stack(a, US) as stack:
            stack.tcp.connect(PEER, 80, stack.clock())               # SYN with DF
            for _ in range(100):
                await asyncio.sleep(0.001)
                got = [bytes(v) for v, _ in peer.recv_batch()]
                if got:
                    break
            peer.send(ipv4_packet(src=PEER, dst=US, protocol=6, payload=tcp_segment(
                src=PEER, dst=US, src_port=4000, dst_port=81, seq=1, ack=0, flags=SYN, window=1000)))
            for _ in range(100):
                await asyncio.sleep(0.001)
                got += [bytes(v) for v, _ in peer.recv_batch()]
                if len(got) >= 2:
                    break
        return got

    got = asyncio.run(asyncio.wait_for(main(), 10))
    syn, rst = (parse_ipv4(g) for g in got)
    assert syn.df and parse_tcp(syn.payload, src=US, dst=PEER).flags == SYN
    assert not rst.df and parse_tcp(rst.payload, src=US, dst=PEER).flags & RST
