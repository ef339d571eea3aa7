"""`netstack serve --tcp-*`: the options reach the TCPConfig of the stack's TCP layer."""
import pytest

from netstack.cli import build_parser
from netstack.link.memory import MemoryLink
from netstack.stack import Stack
from netstack.tcp import TCPLayer
from netstack.cli import tcp_options as tcp_serve


def parse(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_defaults_are_the_rfcs():
    cfg = tcp_serve.config_from_args(parse(), 1500)
    assert (cfg.mss, cfg.rto_min, cfg.msl, cfg.sack, cfg.timestamps, cfg.wscale) == (1460, 1.0, 30.0, True, True, 7)


def test_options_reach_the_stacks_tcp_layer():
    args = parse("--tcp-rto-min", "0.2", "--tcp-msl", "5", "--tcp-rcvbuf", "65536", "--tcp-no-sack",
                 "--tcp-no-timestamps", "--tcp-no-wscale")
    a, _b = MemoryLink.pair(mtu=9000)
    stack = Stack(a, "10.9.0.1", tcp=tcp_serve.config_from_args(args, a.mtu))     # as netstack serve builds it
    tcp = stack.tcp
    assert isinstance(tcp, TCPLayer)
    cfg = tcp.config
    assert cfg.mss == 8960                       # from the link MTU
    assert (cfg.rto_min, cfg.rto_initial, cfg.msl, cfg.rcvbuf) == (0.2, 1.0, 5.0, 65536)
    assert (cfg.sack, cfg.timestamps, cfg.wscale) == (False, False, None)


@pytest.mark.parametrize("argv", [["--tcp-rto-min", "0"], ["--tcp-msl", "-1"], ["--tcp-rcvbuf", "10"],
                                  ["--tcp-rto-min", "soon"]])
def test_bad_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_syncookies_and_limits_reach_the_config():
    from netstack.tcp.syncookies import SynCookieMode
    cfg = tcp_serve.config_from_args(parse(), 1500)
    assert cfg.syncookies is SynCookieMode.AUTO
    cfg = tcp_serve.config_from_args(parse("--tcp-syncookies", "always", "--tcp-max-connections", "100",
                                           "--tcp-max-orphans", "7"), 1500)
    assert (cfg.syncookies, cfg.max_connections, cfg.max_orphans) == (SynCookieMode.ALWAYS, 100, 7)


@pytest.mark.parametrize("argv", [["--tcp-syncookies", "sometimes"], ["--tcp-max-connections", "0"]])
def test_bad_syncookie_and_limit_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err
