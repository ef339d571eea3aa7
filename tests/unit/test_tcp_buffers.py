"""Send buffer, receive buffer, out-of-order queue."""
from netstack.tcp.buffers import OutOfOrderQueue, ReceiveBuffer, SendBuffer


def test_send_buffer_bounded_and_acked_by_seq_across_wrap():
    b = SendBuffer(10, seq=0xFFFFFFFC)
    assert b.write(b"abcdefghijkl") == 10
    assert b.write(b"x") == 0 and b.free == 0
    assert bytes(b.view(0xFFFFFFFE, 4)) == b"cdef"
    assert b.ack(0x2) == 6                 # across 2**32
    assert b.seq == 2 and bytes(b.data) == b"ghij"
    assert b.ack(0x1) == 0                 # old ACK
    assert b.ack(0x100) == 4               # clamp
    assert b.end_seq == 6


def test_receive_buffer_read_and_read_into():
    r = ReceiveBuffer(100)
    r.append(memoryview(b"hello world"))
    assert r.read(5) == b"hello"
    buf = bytearray(3)
    assert r.read_into(buf) == 3 and buf == b" wo"
    assert r.read() == b"rld" and len(r) == 0


def test_ooo_merges_and_pops_in_order():
    q = OutOfOrderQueue(1000)
    nxt = 0xFFFFFFF0
    assert q.insert((nxt + 20) & 0xFFFFFFFF, b"C" * 10, nxt)
    assert q.insert((nxt + 5) & 0xFFFFFFFF, b"A" * 5, nxt)
    assert q.insert((nxt + 8) & 0xFFFFFFFF, b"B" * 14, nxt)     # overlaps A, touches C
    assert len(q) == 1 and q.nbytes == 25
    assert q.blocks(nxt) == [((nxt + 5) & 0xFFFFFFFF, (nxt + 30) & 0xFFFFFFFF)]
    assert q.pop_ready(nxt) == []                                 # hole at nxt..nxt+5
    out = q.pop_ready((nxt + 7) & 0xFFFFFFFF)                     # 2 bytes already delivered
    assert b"".join(bytes(c) for c in out) == b"AAA" + b"B" * 10 + b"C" * 10   # existing bytes win
    assert q.nbytes == 0


def test_ooo_existing_bytes_win_and_duplicates_are_free():
    q = OutOfOrderQueue(100)
    assert q.insert(10, b"xxxx", 0)
    assert q.insert(10, b"yyyy", 0)
    assert q.nbytes == 4
    assert q.insert(8, b"zzzzzz", 0)
    assert bytes(q.ranges[0][1]) == b"zzxxxx"


def test_ooo_byte_bound():
    q = OutOfOrderQueue(10)
    assert q.insert(100, b"a" * 8, 0)
    assert not q.insert(200, b"b" * 3, 0)
    assert q.nbytes == 8 and len(q) == 1
    assert q.insert(108, b"c" * 2, 0)


def test_ooo_range_count_bound():
    q = OutOfOrderQueue(10**6, max_ranges=4)
    for i in range(4):
        assert q.insert(10 + 10 * i, b"x", 0)
    assert not q.insert(100, b"y", 0)          # a fifth hole: refused
    assert q.insert(11, b"z", 0)               # extending an existing range is fine


def test_take_hands_over_the_whole_buffer_and_a_fresh_one_starts():
    from netstack.tcp.buffers import ReceiveBuffer

    b = ReceiveBuffer(1000)
    b.append(b"hello ")
    b.append(memoryview(b"world"))
    inner = b.data
    got = b.take(100)                        # everything buffered: no copy, the buffer itself
    assert got is inner and got == b"hello world" and len(b) == 0
    b.append(b"more")
    assert got == b"hello world" and b.data is not inner
    assert b.take(2) == b"mo" and b.take() == b"re"
    b.append(b"abcdef")
    part = b.take(3)                         # part of it: a copy, as read()
    assert type(part) is bytes and part == b"abc" and bytes(b.data) == b"def"


def test_read_and_read_into_take_from_the_front():
    from netstack.tcp.buffers import ReceiveBuffer

    b = ReceiveBuffer(1000)
    b.append(bytes(range(100)))
    assert b.read(10) == bytes(range(10))
    out = bytearray(30)
    assert b.read_into(out) == 30 and out == bytes(range(10, 40))
    big = bytearray(200)
    assert b.read_into(big) == 60 and big[:60] == bytes(range(40, 100)) and len(b) == 0
