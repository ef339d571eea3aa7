"""Two TCPs over the simulated lossy channel (fake clock) with each loss-recovery setup:
CUBIC + SACK + RACK (the default), NewReno + SACK (RFC 6675), NewReno without SACK.
1 %, 5 % and 15 % loss with reordering and duplication: every byte arrives intact."""
import pytest

from netstack.sockets.table import format_info
from netstack.tcp import TCPConfig
from tests.unit.test_tcp_channel import transfer

SETUPS = {
    "cubic+sack+rack": TCPConfig(),
    "newreno+sack": TCPConfig(congestion="newreno", loss_detection="rfc6675"),
    "newreno": TCPConfig(congestion="newreno", sack=False),
}


@pytest.mark.parametrize("loss", [0.01, 0.05, 0.15])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_every_byte_intact_over_a_lossy_reordering_duplicating_channel(setup, loss):
    cfg = SETUPS[setup]
    size = 600_000 if loss < 0.1 else 200_000
    sim, ca, cb = transfer(size, config_a=cfg, config_b=cfg, loss=loss, reorder=0.05, dup=0.02,
                           seed=int(loss * 100) + 17)
    assert sim.ch.lost > 0 and sim.ch.duplicated > 0 and sim.ch.reordered > 0
    assert ca.cc.name == cfg.congestion and ca.recovery.retrans_segs > 0
    info = ca.info()
    for key in ("cc", "cwnd", "ssthresh", "srtt", "rttvar", "retrans", "reordering", "dsack", "undo"):
        assert key in info
    line = format_info(info)                   # the ss -tin style table's detail line
    assert line.split()[0] == cfg.congestion and f"cwnd_bytes:{info['cwnd']}" in line and "rtt:" in line
    if cfg.sack:
        # duplicated segments came back as D-SACKs (RFC 2883), on both sides
        assert sim.ca.get("tcp.out.dsack") > 0 and sim.ca.get("tcp.in.dsack") > 0
        assert info["dsack"] > 0 and f"dsack_dups:{info['dsack']}" in line
