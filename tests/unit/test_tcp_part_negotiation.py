"""Negotiation (negotiation.py): what the peer's SYN turns on (MSS, window scale,
timestamps, SACK-permitted), what our SYN-ACK offers, PAWS and TS.Recent, the TSval clock."""
import pytest

from netstack.tcp.config import TCPConfig
from netstack.tcp.negotiation import DEFAULT_PEER_MSS, PAWS_IDLE, Negotiation, SynOptions
from netstack.tcp.recv_space import ReceiveSpace
from netstack.tcp.send_space import SendSpace
from netstack.wire.tcp_options import TCPOptions

M = 0xFFFFFFFF


def peer_syn(mss=1460, wscale=None, ts_val=None, sack=False):
    o = TCPOptions()
    o.mss, o.wscale, o.sack_permitted = mss, wscale, sack
    if ts_val is not None:
        o.ts_val, o.ts_ecr = ts_val, 0
    return o


def negotiate(opts, now=5.0, **cfg):
    neg = Negotiation(TCPConfig(**cfg))
    snd, rcv = SendSpace(4096), ReceiveSpace(4096, 4096, 1460)
    snd.wscale = rcv.wscale = 3                  # stale values must be overwritten
    neg.apply_peer_syn(opts, now, snd, rcv)
    return neg, snd, rcv


# -- window scale ---------------------------------------------------------------------------

def test_window_scale_on_when_both_syns_carry_it():
    neg, snd, rcv = negotiate(peer_syn(wscale=5), wscale=7)
    assert neg.wscale_ok and snd.wscale == 5 and rcv.wscale == 7


@pytest.mark.parametrize("ours,theirs", [(7, None), (None, 5)])
def test_window_scale_off_unless_both_carry_it(ours, theirs):
    neg, snd, rcv = negotiate(peer_syn(wscale=theirs), wscale=ours)
    assert not neg.wscale_ok and snd.wscale == 0 and rcv.wscale == 0


def test_window_scale_shifts_clamp_at_14():
    neg, snd, rcv = negotiate(peer_syn(wscale=15), wscale=20)
    assert snd.wscale == 14 and rcv.wscale == 14


# -- timestamps and the MSS ------------------------------------------------------------------

def test_timestamps_on_when_both_carry_them_and_mss_loses_12_bytes_each_way():
    neg, snd, rcv = negotiate(peer_syn(mss=1400, ts_val=777), now=5.0, mss=1460)
    assert neg.ts_enabled and neg.ts_recent == 777 and neg.ts_recent_age == 5.0
    assert neg.option_overhead() == 12
    assert snd.mss == 1400 - 12                 # the smaller MSS, less the option
    assert rcv.mss == 1460 - 12


def test_timestamps_off_when_the_peer_omits_them_keeps_the_full_mss():
    neg, snd, rcv = negotiate(peer_syn(mss=1400), mss=1460)
    assert not neg.ts_enabled and neg.option_overhead() == 0
    assert snd.mss == 1400 and rcv.mss == 1460


def test_timestamps_off_when_we_disable_them():
    neg, snd, rcv = negotiate(peer_syn(mss=1500, ts_val=777), mss=1460, timestamps=False)
    assert not neg.ts_enabled
    assert snd.mss == 1460 and rcv.mss == 1460


@pytest.mark.parametrize("mss_opt", [None, 0])
def test_default_peer_mss_is_536(mss_opt):
    neg, snd, rcv = negotiate(peer_syn(mss=mss_opt))
    assert neg.peer_mss == DEFAULT_PEER_MSS == 536 and snd.mss == 536


def test_default_peer_mss_with_timestamps():
    neg, snd, rcv = negotiate(peer_syn(mss=None, ts_val=1))
    assert snd.mss == 536 - 12


def test_mss_has_a_floor_of_64():
    neg, snd, rcv = negotiate(peer_syn(mss=40))
    assert neg.peer_mss == 40 and snd.mss == 64


# -- SACK-permitted --------------------------------------------------------------------------

@pytest.mark.parametrize("ours,theirs,on", [(True, True, True), (True, False, False), (False, True, False)])
def test_sack_only_if_both_offer_it(ours, theirs, on):
    neg, snd, rcv = negotiate(peer_syn(sack=theirs), sack=ours)
    assert neg.sack_ok is on


# -- what our SYN and SYN-ACK carry ----------------------------------------------------------

def test_synack_offers_nothing_the_peer_did_not_offer():
    neg, snd, rcv = negotiate(peer_syn(mss=1460), mss=1200)
    assert neg.synack_options(1.0, rcv.wscale) == SynOptions(mss=1200, wscale=None, sack_permitted=False,
                                                              ts=None)


def test_synack_offers_everything_the_peer_offered():
    neg, snd, rcv = negotiate(peer_syn(wscale=2, ts_val=4242, sack=True), wscale=9)
    opts = neg.synack_options(1.0, rcv.wscale)
    assert opts == SynOptions(mss=1460, wscale=9, sack_permitted=True, ts=(neg.tsval(1.0), 4242))


def test_syn_offers_what_the_configuration_enables():
    neg = Negotiation(TCPConfig(mss=1000, wscale=4, sack=True, timestamps=True), ts_offset=10)
    assert neg.syn_options(2.0) == SynOptions(mss=1000, wscale=4, sack_permitted=True, ts=(2010, 0))
    neg = Negotiation(TCPConfig(wscale=None, sack=False, timestamps=False))
    assert neg.syn_options(2.0) == SynOptions(mss=1460, wscale=None, sack_permitted=False, ts=None)


# -- the TSval clock --------------------------------------------------------------------------

def test_tsval_is_milliseconds_plus_the_offset():
    assert Negotiation(TCPConfig(), ts_offset=100).tsval(1.5) == 1600


def test_tsval_wraps():
    assert Negotiation(TCPConfig(), ts_offset=M).tsval(0.002) == 1


def test_rtt_from_ecr_across_the_tsval_wrap():
    neg = Negotiation(TCPConfig(), ts_offset=M - 49)
    ecr = neg.tsval(0.0)                        # 2**32 - 50
    assert neg.rtt_from_ecr(ecr, 0.1) == pytest.approx(0.1)


# -- PAWS (RFC 7323 §5) ----------------------------------------------------------------------

def with_recent(recent, age=0.0):
    neg = Negotiation(TCPConfig())
    neg.ts_recent, neg.ts_recent_age = recent, age
    return neg


@pytest.mark.parametrize("recent,tsval,older", [
    (1000, 999, True), (1000, 1000, False), (1000, 1001, False),
    (M - 5, 3, False),                          # newer across the wrap
    (3, M - 5, True),                           # older across the wrap
    (1000, (1000 + 2**31) & M, True),           # exactly half the space away counts as older
])
def test_paws_rejects_older_tsvals(recent, tsval, older):
    neg = with_recent(recent)
    assert neg.ts_older(tsval) is older
    assert neg.paws_rejects(tsval, now=10.0) is older
    assert neg.ts_recent == recent              # a live TS.Recent is not touched


def test_paws_after_24_days_idle_accepts_and_replaces_ts_recent():
    neg = with_recent(1000, age=1.0)
    assert neg.paws_rejects(500, now=1.0 + PAWS_IDLE) is True          # not yet: exactly 24 days
    assert neg.paws_rejects(500, now=1.0 + PAWS_IDLE + 1) is False
    assert neg.ts_recent == 500 and neg.ts_recent_age == 1.0 + PAWS_IDLE + 1
    assert PAWS_IDLE == 24 * 86400


# -- TS.Recent (RFC 7323 §4.3) ---------------------------------------------------------------

@pytest.mark.parametrize("seq,last_ack_sent,tsval,updates", [
    (5000, 5000, 1001, True),                   # SEG.SEQ = Last.ACK.sent
    (4000, 5000, 1001, True),                   # SEG.SEQ < Last.ACK.sent
    (5001, 5000, 1001, False),                  # SEG.SEQ beyond Last.ACK.sent
    (5000, 5000, 1000, True),                   # TSval = TS.Recent
    (5000, 5000, 999, False),                   # an older TSval
    (M - 5, 10, 1001, True),                    # SEG.SEQ before Last.ACK.sent across the wrap
    (10, M - 5, 1001, False),                   # beyond it across the wrap
])
def test_remember_updates_ts_recent(seq, last_ack_sent, tsval, updates):
    neg = with_recent(1000, age=1.0)
    neg.remember(tsval, seq, last_ack_sent, now=7.0)
    assert (neg.ts_recent, neg.ts_recent_age) == ((tsval, 7.0) if updates else (1000, 1.0))


def test_remember_across_the_tsval_wrap():
    neg = with_recent(M - 1)
    neg.remember(2, 100, 100, now=3.0)
    assert neg.ts_recent == 2
