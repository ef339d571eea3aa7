"""The lab's TUN statistics into the stack's counters (netstack.link.lab.Lab.update_counters):
increments of the device's drop counts, monotonic, shown as 0 from the first reading on.
Reading the device itself is an integration matter (tests/integration/test_tun_queue.py)."""
import pytest

from netstack.counters import Counters
from netstack.link.lab import DEFAULT_TUN_QUEUE_LEN, Lab, LabError


def test_drops_become_counter_increments():
    lab = Lab(netns="nstunit", ifname="nstunit")
    c = Counters()
    lab.update_counters(c, {"tx_dropped": 0, "rx_dropped": 0, "tx_packets": 10})
    assert c.snapshot() == {"link.tun.in.drop.queue_full": 0, "link.tun.out.drop": 0}
    lab.update_counters(c, {"tx_dropped": 6111, "rx_dropped": 2, "tx_packets": 20000})
    lab.update_counters(c, {"tx_dropped": 6200, "rx_dropped": 2, "tx_packets": 20100})
    assert c.get("link.tun.in.drop.queue_full") == 6200 and c.get("link.tun.out.drop") == 2


def test_queue_length_default_and_bounds():
    assert Lab(netns="nstunit", ifname="nstunit").tun_queue_len == DEFAULT_TUN_QUEUE_LEN == 10_000
    with pytest.raises(LabError):
        Lab(netns="nstunit", ifname="nstunit", tun_queue_len=0)


def test_no_reading_while_the_lab_is_down():
    lab = Lab(netns="nstunit", ifname="nstunit")
    assert lab.device_stats() == {} and lab.device_stats_future() is None
