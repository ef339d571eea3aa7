"""ReceiveSpace (recv_space.py): RCV.NXT, the advertised window (receiver SWS, never
shrinks, scaling), window updates after reads, in-order delivery with the out-of-order
queue, and the SYN window.  The acceptability table lives in test_tcp_acceptability.py
(including the 2**32 wrap)."""
import pytest

from netstack.tcp.recv_space import ReceiveSpace

M = 0xFFFFFFFF


def space(capacity=4096, mss=1460, irs=999, wscale=0):
    r = ReceiveSpace(capacity, capacity, mss)
    r.wscale = wscale
    r.start(irs)
    r.syn_window()
    return r


def arrive(r, n):
    r.take_in_order(b"x" * n, n)


# -- start, syn_window, wnd --------------------------------------------------------------------

def test_start_sets_irs_and_rcv_nxt_with_wrap():
    r = ReceiveSpace(100, 100, 536)
    r.start(M)
    assert r.irs == M and r.nxt == 0


def test_syn_window_is_the_free_buffer_and_sets_the_right_edge():
    r = ReceiveSpace(4096, 4096, 1460)
    r.start(999)
    assert r.syn_window() == 4096
    assert r.adv == 1000 + 4096 and r.wnd == 4096


def test_syn_window_is_never_scaled_and_capped_at_65535():
    r = ReceiveSpace(1 << 20, 1 << 20, 1460)
    r.wscale = 7
    r.start(999)
    assert r.syn_window() == 65535
    assert r.adv == 1000 + 65535


def test_wnd_is_never_negative():
    r = space()
    r.adv = (r.nxt - 10) & M
    assert r.wnd == 0


# -- advertise: receiver SWS avoidance ---------------------------------------------------------

def test_advertise_after_data_shows_the_shrinking_rest_of_the_window():
    r = space(4096)
    arrive(r, 1000)
    assert r.advertise() == 3096
    assert r.adv == 1000 + 4096                # the right edge did not move


def test_right_edge_moves_only_by_at_least_one_mss():
    r = space(4096, mss=1460)
    arrive(r, 2000)
    r.buf.read(1459)                           # would open the edge by 1459 < MSS
    assert r.advertise() == 2096
    assert r.adv == 1000 + 4096
    r.buf.read(1)                              # now by 1460 = MSS
    assert r.advertise() == 4096 - 540
    assert r.adv == 3000 + 4096 - 540


def test_right_edge_moves_by_half_the_buffer_when_that_is_less_than_mss():
    r = space(1000, mss=1460)                  # threshold min(500, 1460) = 500
    arrive(r, 600)
    r.buf.read(499)
    assert r.advertise() == 400                # 499 < 500: edge stays
    r.buf.read(1)                              # 500: the edge moves to all the free space
    assert r.advertise() == 900
    assert r.adv == 1600 + 900


def test_right_edge_never_moves_left_when_the_buffer_shrinks():
    r = space(4096)
    r.buf.capacity = 1024                      # less room than already advertised
    assert r.advertise() == 4096               # the advertised edge stays
    assert r.adv == 1000 + 4096


def test_full_buffer_advertises_zero_without_moving_the_edge_back():
    r = space(4096)
    arrive(r, 4096)
    assert r.advertise() == 0
    assert r.adv == r.nxt == 1000 + 4096


def test_advertise_scales_by_wscale_and_caps_the_edge_at_65535_scaled():
    r = space(1 << 20, wscale=2)               # SYN advertised 65535 unscaled
    field = r.advertise()
    assert r.adv == 1000 + (65535 << 2)        # the edge moves at most 65535 << wscale
    assert field == 65535


def test_advertise_field_is_shifted_by_wscale():
    r = space(1 << 20, wscale=7)
    reserve = 16 * 127                         # headroom for rounding up: 16 granules of 2^7 - 1
    assert r.advertise() == -(-((1 << 20) - reserve) >> 7)
    assert r.adv == 1000 + (r.advertise() << 7)


def test_rounding_headroom_is_at_most_a_sixteenth_of_the_buffer():
    r = space(64 * 1024, wscale=14)
    field = r.advertise()
    assert field == -(-(64 * 1024 - 4096) >> 14)     # min(16 * (2^14 - 1), 64K / 16) kept back


def test_advertise_field_never_exceeds_65535():
    r = space(100000, wscale=0)
    r.adv = r.nxt + 100000                     # an edge beyond what one field can say
    assert r.advertise() == 65535


def test_advertise_across_the_wrap():
    r = space(4096, irs=M - 100)               # RCV.NXT = 2**32 - 100
    arrive(r, 2000)                            # RCV.NXT wraps
    assert r.nxt == 1900
    r.buf.read(2000)
    assert r.advertise() == 4096
    assert r.adv == 1900 + 4096


# -- window updates after reads ---------------------------------------------------------------

def test_window_update_due_when_a_zero_window_opens_by_one_mss():
    r = space(8192, mss=1000)
    arrive(r, 8192)
    r.advertise()
    assert not r.window_update_due()
    r.buf.read(999)
    assert not r.window_update_due()
    r.buf.read(1)
    assert r.window_update_due()               # RCV.WND < MSS <= free


@pytest.mark.parametrize("capacity,mss,received", [
    (8192, 1000, 3000),      # threshold 2 * MSS = 2000 (less than half the buffer)
    (2000, 600, 1000),       # threshold half the buffer = 1000 (less than 2 * MSS)
])
def test_window_update_due_when_the_window_grows_by_the_threshold(capacity, mss, received):
    r = space(capacity, mss=mss)
    threshold = min(capacity // 2, 2 * mss)
    arrive(r, received)                        # RCV.WND stays >= MSS
    r.buf.read(threshold - 1)
    assert not r.window_update_due()
    r.buf.read(1)
    assert r.window_update_due()


# -- take_in_order ----------------------------------------------------------------------------

def test_take_in_order_appends_and_moves_rcv_nxt():
    r = space()
    assert r.take_in_order(b"hello", 5) is False
    assert bytes(r.buf.data) == b"hello" and r.nxt == 1005


def test_take_in_order_drains_the_out_of_order_queue_and_reports_the_filled_hole():
    r = space()
    assert r.ooo.insert(1005, b"world", r.nxt)
    assert r.ooo.insert(1020, b"later", r.nxt)
    assert r.take_in_order(b"hello", 5) is True
    assert bytes(r.buf.data) == b"helloworld"
    assert r.nxt == 1010
    assert len(r.ooo) == 1 and r.ooo.nbytes == 5    # the range beyond the next hole stays


def test_take_in_order_part_of_the_gap_counts_as_filling():
    r = space()
    r.ooo.insert(1010, b"tail", r.nxt)
    assert r.take_in_order(b"abc", 3) is True       # RFC 5681 §4.2: fills part of the gap
    assert r.nxt == 1003 and len(r.ooo) == 1


def test_take_in_order_with_overlapping_queued_data_and_wrap():
    r = space(irs=M - 3)                            # RCV.NXT = 2**32 - 2
    r.ooo.insert(M, b"CDEF", r.nxt)                 # seq 2**32 - 1 .. 2
    assert r.take_in_order(b"ABC", 3) is True       # 2**32 - 2 .. 0: overlaps 'C'
    assert bytes(r.buf.data) == b"ABCDEF"
    assert r.nxt == 3 and not r.ooo.ranges
