"""SendSpace (send_space.py): SND.UNA/NXT/MAX/WND, the window-update rule, our FIN,
Minshall's Nagle check and the segment size, tested alone."""
import pytest

from netstack.tcp.send_space import DEFAULT_PEER_MSS, SendSpace

M = 0xFFFFFFFF


def started(iss=1000, capacity=4096, max_segment=None):
    s = SendSpace(capacity, max_segment)
    s.start(iss)
    return s


# -- start ---------------------------------------------------------------------------------------

def test_start_sets_una_nxt_max_and_buffer_seq():
    s = started(1000)
    assert (s.iss, s.una, s.nxt, s.max) == (1000, 1000, 1001, 1001)
    assert s.buf.seq == 1001                   # data starts after the SYN
    assert s.sml == 1000                       # no small segment outstanding
    assert s.in_flight == 1                    # the SYN


def test_start_at_the_top_of_sequence_space_wraps():
    s = started(M)
    assert (s.una, s.nxt, s.max, s.buf.seq) == (M, 0, 0, 0)


# -- advance ------------------------------------------------------------------------------------

def test_advance_moves_nxt_and_max_forward():
    s = started(1000)
    s.advance(1001, 100)
    assert (s.nxt, s.max) == (1101, 1101)
    s.advance(1101, 50)
    assert (s.nxt, s.max) == (1151, 1151)


def test_advance_behind_max_moves_nxt_but_not_max():
    s = started(1000)
    s.advance(1001, 500)
    s.advance(1001, 100)                       # a go-back-N retransmission
    assert (s.nxt, s.max) == (1101, 1501)


def test_advance_across_the_wrap():
    s = started(M - 10)
    s.advance(M - 9, 100)                      # crosses 2**32
    assert s.nxt == s.max == 90
    s.advance(M - 9, 5)                        # behind SND.MAX, numerically larger
    assert s.nxt == M - 4 and s.max == 90


# -- acknowledge -------------------------------------------------------------------------------

def test_acknowledge_frees_bytes_and_moves_una():
    s = started(1000)
    s.buf.write(b"x" * 300)
    s.advance(1001, 300)
    assert s.acknowledge(1101) == 100
    assert s.una == 1101 and len(s.buf) == 200 and s.buf.seq == 1101
    assert s.nxt == 1301


def test_acknowledge_pulls_nxt_up_after_go_back_n():
    s = started(1000)
    s.buf.write(b"x" * 300)
    s.advance(1001, 300)
    s.nxt = s.una                              # RTO: go back N
    s.advance(1001, 50)                        # retransmitted only 50
    s.acknowledge(1201)                        # the peer had more than that
    assert s.nxt == 1201 and s.max == 1301


def test_acknowledge_across_the_wrap_pulls_nxt():
    s = started(M - 5)
    s.buf.write(b"x" * 100)
    s.advance((M - 4) & M, 100)
    s.nxt = s.una
    assert s.acknowledge(20) == 20 + 5         # M-4 .. 19 is 25 bytes
    assert s.nxt == 20


# -- the window update (RFC 9293 §3.10.7.4 fifth) ----------------------------------------------

def with_window(wl1=5000, wl2=1001, wnd=1000):
    s = started(1000)
    s.set_window(wnd, wl1, wl2)
    return s


def test_newer_segment_updates_window():
    s = with_window()
    assert s.update_window(5001, 1001, 2000) is True
    assert (s.wnd, s.wl1, s.wl2) == (2000, 5001, 1001)


def test_older_segment_does_not_update_window():
    s = with_window()
    assert s.update_window(4999, 2000, 9000) is False
    assert (s.wnd, s.wl1, s.wl2) == (1000, 5000, 1001)


def test_equal_wl1_with_newer_or_equal_ack_updates():
    s = with_window()
    assert s.update_window(5000, 1001, 3000) is True      # WL2 == ACK
    assert s.wnd == 3000
    assert s.update_window(5000, 1002, 500) is True       # WL2 < ACK
    assert (s.wnd, s.wl2) == (500, 1002)


def test_equal_wl1_with_older_ack_does_not_update():
    s = with_window(wl2=1500)
    assert s.update_window(5000, 1499, 9000) is False
    assert s.wnd == 1000


def test_update_with_same_window_reports_unchanged_but_moves_wl():
    s = with_window()
    assert s.update_window(5010, 1001, 1000) is False
    assert s.wl1 == 5010


def test_window_update_across_the_wrap():
    s = with_window(wl1=M - 1)
    assert s.update_window(3, 1001, 777) is True          # 3 is after 2**32 - 2
    assert s.wnd == 777
    assert s.update_window(M - 1, 1001, 5) is False       # now old
    assert s.wnd == 777


def test_max_wnd_tracks_the_largest_window_offered():
    s = with_window(wnd=1000)
    s.update_window(5001, 1001, 8000)
    s.update_window(5002, 1001, 100)
    assert s.wnd == 100 and s.max_wnd == 8000


# -- our FIN ---------------------------------------------------------------------------------

def test_queue_fin_takes_the_sequence_number_after_the_data():
    s = started(1000)
    s.buf.write(b"abc")
    assert not s.fin_pending(s.nxt) and not s.fin_acked(2000)
    s.queue_fin()
    assert s.fin_queued and s.fin_seq == 1004


def test_fin_pending_until_sent():
    s = started(1000)
    s.buf.write(b"abc")
    s.queue_fin()
    assert s.fin_pending(1001)                 # data and FIN unsent
    assert s.fin_pending(1004)                 # only the FIN unsent
    assert not s.fin_pending(1005)             # FIN sent


def test_fin_acked_only_when_ack_covers_the_fin():
    s = started(1000)
    s.buf.write(b"abc")
    s.queue_fin()
    assert not s.fin_acked(1004)               # acks the data, not the FIN
    assert s.fin_acked(1005)


def test_fin_at_the_wrap():
    s = started(M - 1)                         # data starts at M
    s.buf.write(b"ab")                         # M, 0
    s.queue_fin()
    assert s.fin_seq == 1
    assert s.fin_pending(M) and s.fin_pending(1) and not s.fin_pending(2)
    assert not s.fin_acked(1) and s.fin_acked(2)


# -- Minshall's Nagle --------------------------------------------------------------------------

@pytest.mark.parametrize("una,sml,nxt,holds", [
    (1000, 1000, 1100, False),       # SML == UNA: the small segment was acked
    (1000, 1050, 1100, True),        # UNA < SML < NXT
    (1000, 1100, 1100, True),        # SML == NXT
    (1000, 1101, 1100, False),       # SML beyond NXT (impossible but bounded)
    (1100, 1050, 1200, False),       # SML behind UNA
    (M - 10, 5, 20, True),           # across the wrap
    (M - 10, M - 20, 20, False),     # behind UNA across the wrap
])
def test_nagle_holds_iff_una_lt_sml_le_nxt(una, sml, nxt, holds):
    s = started(0)
    s.una, s.sml = una, sml
    assert s.nagle_holds(nxt) is holds


def test_stale_sml_more_than_half_the_space_behind_is_harmless():
    s = started(0)
    s.sml = 100
    s.una = (100 + 2**31 + 10) & M             # SML now looks "after" UNA modulo 2**32
    assert s.nagle_holds((s.una + 50) & M) is False


# -- segment size -----------------------------------------------------------------------------

def test_segment_size_is_the_mss_without_max_segment():
    s = SendSpace(4096)
    assert s.segment_size == DEFAULT_PEER_MSS == 536
    s.mss = 1448
    assert s.segment_size == 1448


def test_segment_size_is_max_segment_when_set():
    s = SendSpace(4096, max_segment=64000)
    s.mss = 1448
    assert s.segment_size == 64000
