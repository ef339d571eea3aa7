"""Buffer lifetime on the receive path: the link's read buffers (netstack.link.tun.ReadBuffers)
and the receive buffer that keeps a super-segment's payload as a view of one instead of copying it
(netstack.tcp.buffers.ReceiveBuffer).  A view into a buffer that a later read overwrites would
corrupt the stream: these tests read more packets into the very slot whose view is kept."""
from __future__ import annotations

import sys

import pytest

from netstack.link.tun import LEND_MIN, ReadBuffers
from netstack.tcp import TCPConfig
from netstack.tcp.events import ConnEvent
from netstack.tcp.buffers import KEEP_MIN, ReceiveBuffer

from tests.support.offload import OFFLOAD_MSS as MSS, OffloadHost, data


def read_into(bufs: ReadBuffers, i: int, packet: bytes) -> int:
    """What os.readv does with ``bufs.iov(i)``: the packet into slot ``i``'s buffer."""
    buf = bufs.iov(i)[-1]
    buf[:len(packet)] = packet
    return len(packet)


def big(text: bytes) -> bytes:
    """A packet long enough to be lent (a super-segment): ``text``, then padding."""
    return text + bytes(LEND_MIN - len(text))


def test_a_kept_view_is_never_overwritten_by_later_reads_into_its_slot():
    bufs = ReadBuffers(1, 2 * LEND_MIN)
    n = read_into(bufs, 0, big(b"first packet"))
    whole = bufs.view(0, 0, n)
    assert whole.readonly
    kept = whole[6:][:3]                           # a slice of a slice still holds the buffer
    del whole
    for k in range(5):
        read_into(bufs, 0, big(b"later packet %d" % k))
    assert bytes(kept) == b"pac"
    assert bufs.renewed == 1                       # lent once, then the slot's new buffer is free


def test_short_packets_are_writable_slices_of_the_slot_valid_until_the_next_read():
    bufs = ReadBuffers(1, 2 * LEND_MIN)
    n = read_into(bufs, 0, b"short")
    v = bufs.view(0, 0, n)
    assert not v.readonly and bytes(v) == b"short"
    del v
    read_into(bufs, 0, b"other")
    assert bufs.renewed == 0


def test_released_buffers_are_reused_not_allocated_and_unreferenced_slots_stay_put():
    bufs = ReadBuffers(2, 2 * LEND_MIN)
    first = id(bufs.bufs[0])                       # (a reference here would count as a kept view)
    n = read_into(bufs, 0, big(b"a"))
    v = bufs.view(0, 0, n)
    del v                                          # consumed before the next read: no renewal
    read_into(bufs, 0, big(b"b"))
    assert id(bufs.bufs[0]) == first and bufs.renewed == 0
    held = [bufs.view(0, 0, n)]
    read_into(bufs, 0, big(b"c"))                  # lent: the slot gets a new buffer
    assert bufs.renewed == 1 and bufs.reused == 0 and id(bufs.bufs[0]) != first
    held.append(bufs.view(0, 0, n))
    held.pop(0)                                    # the first lent buffer is free again
    read_into(bufs, 0, big(b"d"))
    assert bufs.renewed == 2 and bufs.reused == 1 and id(bufs.bufs[0]) == first
    assert bytes(held[0][:1]) == b"c"


def test_the_lent_list_is_bounded():
    bufs = ReadBuffers(1, 2 * LEND_MIN, max_lent=3)
    kept = []
    for k in range(10):
        n = read_into(bufs, 0, big(bytes([k + 1])))
        kept.append(bufs.view(0, 0, n))
    assert len(bufs.lent) == 3
    assert [bytes(v[:1]) for v in kept] == [bytes([k + 1]) for k in range(10)]


def test_the_receive_buffer_keeps_large_read_only_views_and_copies_the_rest_in_order():
    src = bytes(range(256)) * 256                   # 64 KB
    big = memoryview(src).toreadonly()
    b = ReceiveBuffer(1 << 20)
    b.append(b"ab")                                # small: copied
    b.append(big[:KEEP_MIN])                       # kept as it is
    b.append(memoryview(bytearray(src))[:KEEP_MIN])   # writable: copied (its owner may reuse it)
    b.append(big[:KEEP_MIN - 1])                   # read-only but small: copied
    b.append(big[KEEP_MIN:])                       # kept
    assert len(b) == 2 + KEEP_MIN + KEEP_MIN + KEEP_MIN - 1 + len(src) - KEEP_MIN
    kept = [c for c in b.chunks if type(c) is memoryview]
    assert len(kept) == 2 and all(c.obj is src for c in kept)   # no copy made of them
    expected = b"ab" + src[:KEEP_MIN] + src[:KEEP_MIN] + src[:KEEP_MIN - 1] + src[KEEP_MIN:]
    assert b.read(1) == b"a"
    out = bytearray(5)
    assert b.read_into(out) == 5 and out == expected[1:6]
    first = b.take(1 << 20)                        # a kept chunk: handed over, no copy
    assert first == expected[6:6 + len(first)]
    rest = b.read()
    assert bytes(first) + rest == expected[6:] and len(b) == 0 and b.free == b.capacity


def test_tcp_keeps_a_super_segment_view_while_its_read_buffer_slot_is_read_into_again():
    """The stream the application reads is the one sent, although every packet was read into
    the same slot and nothing was read by the application until the end."""
    h = OffloadHost(TCPConfig(rcvbuf=1 << 20))
    bufs = ReadBuffers(1, 65536 + 64)
    k = 44 * MSS
    stream = data(6 * k)
    for j in range(6):
        pkt, meta = h.packet(j * k, stream[j * k:(j + 1) * k])
        n = read_into(bufs, 0, pkt)
        h.ip.input_offloaded(bufs.view(0, 0, n), meta, h.now)
    assert h.conn.rcv.buf.held >= 5 * k             # kept, not copied
    assert bufs.renewed >= 5
    assert h.conn.recv() == stream


def test_tun_link_read_loop_lends_a_kept_super_segment_and_reads_the_next_into_another_buffer():
    """TunLink.recv_batch's own read loop (the check of ReadBuffers.iov inlined), on a datagram
    socket pair standing in for the TUN's fd: a kept view of a super-segment survives the next
    reads into its slot; short packets stay writable slot views."""
    import os
    import socket

    from netstack.link.tun import READ_BUFFER_SIZE, TunLink, VnetMetaCache

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        link = object.__new__(TunLink)             # the read side only: no device
        link._fd, link.offload, link.rx_packets, link.rx_batches = b.fileno(), False, 0, 0
        link.buffers = ReadBuffers(1, READ_BUFFER_SIZE)
        link._rx_metas = VnetMetaCache()
        os.set_blocking(b.fileno(), False)
        a.send(big(b"super one"))
        [(kept, _)] = link.recv_batch(1)
        assert kept.readonly
        for k in range(3):
            a.send(big(b"super %d" % k))
            [(v, _)] = link.recv_batch(1)
            assert bytes(v[:7]) == b"super %d" % k
            del v
        a.send(b"short")
        [(s, _)] = link.recv_batch(1)
        assert not s.readonly and bytes(s) == b"short"
        assert bytes(kept[:9]) == b"super one" and link.buffers.renewed == 1
    finally:
        a.close()
        b.close()


def test_one_long_held_view_does_not_stop_the_reuse_of_buffers_lent_after_it():
    """A connection whose application does not read keeps one super-segment's view for long:
    the buffers lent after it are still reused, whatever is at the head of the lent list."""
    bufs = ReadBuffers(1, 2 * LEND_MIN)
    n = read_into(bufs, 0, big(b"stalled"))
    stalled = bufs.view(0, 0, n)                   # kept all along
    prev = None
    for k in range(300):
        n = read_into(bufs, 0, big(b"%d" % k))
        v = bufs.view(0, 0, n)                     # held until the next one is read, then released
        prev = v
    assert bufs.renewed == 300
    assert bufs.renewed - bufs.reused <= 3         # allocated: a couple, not one per read
    assert len(bufs.lent) <= 3
    assert bytes(stalled[:7]) == b"stalled" and bytes(prev[:3]) == b"299"


def test_free_lent_buffers_kept_are_bounded_whatever_the_order_of_releases():
    """Many views held at once, then released in a scrambled order: afterwards at most one
    free buffer per slot is kept (the rest are freed), and they are reused, not allocated."""
    bufs = ReadBuffers(2, 2 * LEND_MIN)
    held = []
    for k in range(100):
        i = k % 2
        n = read_into(bufs, i, big(b"%d" % k))
        held.append(bufs.view(i, 0, n))
    assert len(bufs.lent) >= 90
    order = sorted(range(100), key=lambda k: (k * 37) % 101)   # not the order they were lent in
    for k in order:
        held[k] = None
    allocated = bufs.renewed - bufs.reused
    kept = []
    for k in range(50):                            # a steady stream, each view held one read
        i = k % 2
        n = read_into(bufs, i, big(b"again %d" % k))
        kept.append(bufs.view(i, 0, n))
        if len(kept) > 2:
            kept.pop(0)
    assert bufs.renewed - bufs.reused == allocated  # all reused
    lent = bufs.lent                               # (getrefcount 2: the lent list and the argument)
    unreferenced = sum(1 for k in range(len(lent)) if sys.getrefcount(lent[k]) <= 2) + len(bufs.free)
    assert unreferenced <= 2 + 2                   # one per slot kept free, and the stream's own
    assert len(lent) + len(bufs.free) <= 2 + 2 + 2
    assert [bytes(v[:8]) for v in kept] == [b"again 48", b"again 49"]


def test_partial_reads_of_copied_bytes_before_a_kept_chunk_do_not_copy_the_rest():
    """Small reads from a chunk of copied bytes (a bytearray) take from it in place (del,
    amortised), not by making a new bytearray of the rest on every read (quadratic)."""
    src = memoryview(bytes(range(256)) * 128).toreadonly()       # 32 KB, kept
    for reader in ("read", "read_into"):
        b = ReceiveBuffer(1 << 20)
        copied = bytes(range(200)) * 50
        b.append(copied)
        b.append(src)
        head = b.chunks[0]
        assert type(head) is bytearray
        got = bytearray()
        for k in range(100):
            if reader == "read":
                got += b.read(7)
            else:
                out = bytearray(7)
                assert b.read_into(out) == 7
                got += out
            assert b.chunks[0] is head                           # the same bytearray, shortened
        assert got == copied[:700] and len(b) == len(copied) - 700 + len(src)
        assert b.read() == copied[700:] + bytes(src)


def _kept_super_segment_host():
    """An OffloadHost whose connection keeps a super-segment (a view of a link read buffer)."""
    h = OffloadHost(TCPConfig(rcvbuf=1 << 20))
    bufs = ReadBuffers(1, 65536 + 64)
    k = 44 * MSS
    pkt, meta = h.packet(0, data(k))
    n = read_into(bufs, 0, pkt)
    h.ip.input_offloaded(bufs.view(0, 0, n), meta, h.now)
    assert h.conn.rcv.buf.held >= k                              # kept, not copied
    return h, bufs


def test_an_abort_releases_the_kept_views_of_the_link_read_buffers():
    """ABORT drops the unread data (RFC 9293 §3.10.5), so the link's read buffer it kept a
    view of is free for reuse at once, not when the Connection object is freed."""
    h, bufs = _kept_super_segment_host()
    lent = bufs.bufs[0]
    bufs.iov(0)                                                  # the slot's buffer is lent out
    assert bufs.bufs[0] is not lent and sys.getrefcount(lent) > 3
    h.conn.abort()
    assert len(h.conn.rcv.buf) == 0 and h.conn.recv() == b""
    assert sys.getrefcount(lent) == 3                            # bufs.lent, lent, the argument


def test_data_received_before_a_reset_stays_readable():
    """After a reset the kept data is still returned by recv() before the error, so it stays."""
    h, bufs = _kept_super_segment_host()
    h.conn.fail(ConnectionResetError("reset"), ConnEvent.RESET)
    assert h.conn.recv() == data(44 * MSS)
    with pytest.raises(ConnectionResetError):
        h.conn.recv()


def test_recv_owned_hands_over_a_kept_view_read_only():
    """recv_owned's data may be a read-only memoryview of a link read buffer (its docstring)."""
    h, bufs = _kept_super_segment_host()
    out = h.conn.recv_owned()
    assert type(out) is memoryview and out.readonly and bytes(out) == data(44 * MSS)
