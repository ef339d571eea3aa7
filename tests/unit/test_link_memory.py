import asyncio

from netstack.link import GSO_TCPV4, Link, MemoryLink, PacketMeta


def test_pair_is_a_link_and_carries_packets_both_ways():
    a, b = MemoryLink.pair(mtu=1400)
    assert isinstance(a, Link) and a.mtu == b.mtu == 1400
    a.send(b"one")
    a.send(bytearray(b"two"))
    b.send(memoryview(b"back"))
    got = b.recv_batch()
    assert [bytes(v) for v, _ in got] == [b"one", b"two"]
    assert [bytes(v) for v, _ in a.recv_batch()] == [b"back"]
    assert a.recv_batch() == [] and b.recv_batch() == []


def test_send_copies_the_callers_buffer():
    a, b = MemoryLink.pair()
    buf = bytearray(b"abc")
    a.send(buf)
    buf[0] = ord("X")
    assert bytes(b.recv_batch()[0][0]) == b"abc"


def test_batch_limit_and_metadata():
    a, b = MemoryLink.pair()
    meta = PacketMeta(gso_type=GSO_TCPV4, gso_size=1448, needs_csum=True)
    for i in range(10):
        a.send(bytes([i]), meta if i == 0 else None)
    first = b.recv_batch(4)
    assert len(first) == 4
    assert first[0][1] == meta and first[1][1] is None
    assert len(b.recv_batch(64)) == 6


def test_packetmeta_fields_and_equality():
    m = PacketMeta()
    assert (m.gso_type, m.gso_size, m.needs_csum, m.data_valid) == (0, 0, False, False)
    assert PacketMeta(gso_size=5) == PacketMeta(gso_size=5) != PacketMeta(gso_size=6)
    assert not hasattr(m, "__dict__")


def test_attach_notifies_reader_once_per_burst():
    async def main():
        a, b = MemoryLink.pair()
        seen = []
        calls = []

        def on_readable():
            calls.append(1)
            seen.extend(bytes(v) for v, _ in b.recv_batch(64))

        b.attach(asyncio.get_running_loop(), on_readable)
        for i in range(100):
            a.send(bytes([i]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        b.detach()
        return seen, calls

    seen, calls = asyncio.run(main())
    assert seen == [bytes([i]) for i in range(100)]
    assert 1 <= len(calls) <= 3


def test_closed_peer_drops_and_counts():
    a, b = MemoryLink.pair()
    b.close()
    a.send(b"x")
    assert a.dropped == 1
