"""`netstack serve` refuses bad options with one line and exit status 2, before it creates anything.

A system test: `netstack serve` runs as a subprocess but stops at option checking, before
it would need root, /dev/net/tun or a namespace.  Its lab behaviour is in
tests/integration/test_serve_cli.py.
"""
import pytest

from tests.support.labkit import assert_one_line_error, netns_exists, serve_cmd
from tests.support.nstest import unique_lab_name


@pytest.mark.parametrize("args,pattern", [
    (["--addr", "::1"], r"--addr '::1' is not an IPv4 address"),
    (["--addr", "mail.example"], r"not an IPv4 address"),
    (["--peer", "2001:db8::1/64"], r"--peer .* is not an IPv4"),
    (["--faults", "loss=200%"], r"--faults: loss=200%"),
    (["--mtu", "20"], r"--mtu 20 out of range"),
    (["--state-log", "/nonexistent-dir/s.jsonl"], r"--state-log /nonexistent-dir/s.jsonl: directory "
                                                   r"/nonexistent-dir does not exist"),
    (["--pcap-flush", "packet"], r"--pcap-flush packet needs --pcap FILE"),
    (["--log-level", "INFO", "-v"], r"--log-level and -v/-q: give one or the other"),
    (["--ip-min-pmtu", "67"], r"--ip-min-pmtu 67 out of range"),
    (["--ip-pmtu-decrease-interval", "-1"], r"--ip-pmtu-decrease-interval must not be negative"),
    (["--smtp-line-timeout", "-1"], r"--smtp-line-timeout must not be negative"),
    (["--smtp-max-data-line", "999"], r"--smtp-max-data-line must be at least 1000"),
    (["--smtp-data-rate-window", "0"], r"--smtp-data-rate-window must be positive"),
])
def test_bad_options_one_line_exit_2(args, pattern):
    ns = unique_lab_name()
    r = serve_cmd("--netns", ns, "--ifname", ns, *args)
    assert_one_line_error(r, pattern)
    assert not netns_exists(ns)
