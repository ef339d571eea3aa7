"""Option negotiation: MSS, window scale, timestamps with PAWS, SACK-permitted.

  RFC 9293 §3.7.1   MSS: ours from the MTU, the peer's honoured (536 if absent)
  RFC 7323 §2       window scale: only if both SYNs carry it; shifts clamp at 14
  RFC 7323 §3/§4    timestamps: TSval from a 1 ms clock plus a per-connection
                    offset (§5.4); TS.Recent updated per §4.3
  RFC 7323 §5       PAWS: drop a segment whose TSval is older than TS.Recent,
                    except after 24 days idle (§5.5)
  RFC 2018 §2       SACK-permitted: only if both SYNs carry it
  RFC 6691          the MSS counts no options: with timestamps on, every data
                    segment's payload is 12 bytes below the MSS

The SYN-ACK offers only what the peer's SYN offered (RFC 7323 §1.3).  The
outcome of the negotiation is written into the send and receive spaces
(their MSS and window shifts); :class:`Negotiation` keeps the rest: which
options are on, and the timestamp state.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import TCPConfig
from .send_space import DEFAULT_PEER_MSS
from .seq import HALF, MASK

#: RFC 7323 §5.5: TS.Recent is invalid after 24 days idle.
PAWS_IDLE = 24 * 24 * 3600.0
#: The NOP, NOP, Timestamps option block every segment carries once timestamps are on.
TS_OPTION_LEN = 12


@dataclass(frozen=True, slots=True)
class SynOptions:
    """The options one SYN or SYN-ACK carries (None / False: not carried)."""
    mss: int
    wscale: int | None
    sack_permitted: bool
    ts: tuple[int, int] | None


class Negotiation:
    __slots__ = ("config", "peer_mss", "wscale_ok", "ts_enabled", "ts_recent", "ts_recent_age",
                 "ts_offset", "sack_ok")

    def __init__(self, config: TCPConfig, ts_offset: int = 0) -> None:
        self.config = config
        self.peer_mss = DEFAULT_PEER_MSS
        self.wscale_ok = False          #: both SYNs carried window scale
        self.ts_enabled = False         #: both SYNs carried timestamps
        self.ts_recent = 0              #: TS.Recent (RFC 7323 §4.3)
        self.ts_recent_age = 0.0        #: when TS.Recent was last set
        self.ts_offset = ts_offset      #: our random TSval offset (RFC 7323 §5.4)
        self.sack_ok = False            #: both SYNs carried SACK-permitted

    def tsval(self, now: float) -> int:
        """Our TSval clock: 1 ms ticks plus the per-connection offset (RFC 7323 §5.4)."""
        return (int(now * 1000) + self.ts_offset) & MASK

    def rtt_from_ecr(self, ecr: int, now: float) -> float:
        """RTT measured from an echoed TSval (RFC 7323 §4.1)."""
        return ((self.tsval(now) - ecr) & MASK) / 1000.0

    def syn_options(self, now: float) -> SynOptions:
        """Our SYN: everything the configuration enables."""
        cfg = self.config
        return SynOptions(mss=cfg.mss, wscale=cfg.wscale, sack_permitted=cfg.sack,
                          ts=(self.tsval(now), 0) if cfg.timestamps else None)

    def synack_options(self, now: float, rcv_wscale: int) -> SynOptions:
        """Our SYN-ACK: only what the peer offered (RFC 7323 §1.3, RFC 2018 §2)."""
        return SynOptions(mss=self.config.mss, wscale=rcv_wscale if self.wscale_ok else None,
                          sack_permitted=self.sack_ok,
                          ts=(self.tsval(now), self.ts_recent) if self.ts_enabled else None)

    def apply_peer_syn(self, opts, now: float, snd, rcv) -> None:
        """Apply the peer's SYN options against ours (RFC 9293 §3.7.1, RFC 7323 §2.2/§3.2,
        RFC 2018 §2): set the send space's MSS and window shift, the receive space's."""
        cfg = self.config
        self.peer_mss = opts.mss if opts.mss else DEFAULT_PEER_MSS
        if cfg.wscale is not None and opts.wscale is not None:
            self.wscale_ok = True
            snd.wscale = min(opts.wscale, 14)          # RFC 7323 §2.3
            rcv.wscale = min(cfg.wscale, 14)
        else:
            self.wscale_ok = False
            snd.wscale = rcv.wscale = 0
        if cfg.timestamps and opts.ts_val is not None:
            self.ts_enabled = True
            self.ts_recent = opts.ts_val
            self.ts_recent_age = now
        else:
            self.ts_enabled = False
        self.sack_ok = bool(cfg.sack and opts.sack_permitted)
        mss = min(self.peer_mss, cfg.mss)
        rmss = cfg.mss
        if self.ts_enabled:
            mss -= TS_OPTION_LEN
            rmss -= TS_OPTION_LEN
        snd.mss = max(mss, 64)
        rcv.mss = max(rmss, 64)

    def option_overhead(self) -> int:
        """Option bytes on every segment (the timestamps, when on)."""
        return TS_OPTION_LEN if self.ts_enabled else 0

    def ts_older(self, tsval: int) -> bool:
        """SEG.TSval < TS.Recent (modulo 2^32): a PAWS candidate."""
        return ((tsval - self.ts_recent) & MASK) >= HALF

    def paws_rejects(self, tsval: int, now: float) -> bool:
        """PAWS, RFC 7323 §5.3 R1: SEG.TSval < TS.Recent, and TS.Recent still valid (§5.5).

        An idle TS.Recent (24 days) is replaced by this TSval instead."""
        if ((tsval - self.ts_recent) & MASK) < HALF:
            return False
        if now - self.ts_recent_age > PAWS_IDLE:
            self.ts_recent = tsval
            self.ts_recent_age = now
            return False
        return True

    def remember(self, tsval: int, seq: int, last_ack_sent: int, now: float) -> None:
        """RFC 7323 §4.3: TS.Recent = SEG.TSval if SEG.SEQ =< Last.ACK.sent and TSval >= TS.Recent."""
        if ((last_ack_sent - seq) & MASK) < HALF and ((tsval - self.ts_recent) & MASK) < HALF:
            self.ts_recent = tsval
            self.ts_recent_age = now
