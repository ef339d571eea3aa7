"""`netstack serve` as a daemon, the parts that need no lab: --version, the log level from
--log-level/-v/-q, the absolute --maildir default in --help, the ready line's services."""
from __future__ import annotations

import argparse
import logging

import pytest

import netstack
from netstack.cli import UsageError, build_parser, main, serve, serve_services, serve_smtp


def _serve_args(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"netstack {netstack.__version__}\n"


@pytest.mark.parametrize("argv, level", [
    ((), logging.WARNING), (("-v",), logging.INFO), (("-vv",), logging.DEBUG), (("-vvv",), logging.DEBUG),
    (("-q",), logging.ERROR), (("-qq",), logging.CRITICAL), (("-qqq",), logging.CRITICAL),
    (("--log-level", "debug"), logging.DEBUG), (("--log-level", "ERROR"), logging.ERROR),
])
def test_log_level_from_options(argv, level):
    assert serve.log_level(_serve_args(*argv)) == level


def test_mistyped_log_level_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        _serve_args("--log-level", "WARN")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'WARN'" in err and "DEBUG, INFO, WARNING, ERROR, CRITICAL" in err


def test_log_level_and_v_together_is_a_usage_error():
    with pytest.raises(UsageError, match="one or the other"):
        serve.log_level(_serve_args("--log-level", "INFO", "-v"))


def test_maildir_default_is_absolute_and_shown_in_help(capsys):
    args = _serve_args()
    assert args.maildir == serve_smtp.DEFAULT_MAILDIR == "/var/lib/netstack/mail"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default /var/lib/netstack/mail)" in help_text
    assert "--pcap-flush {buffered,packet}" in help_text and "tcpdump -U" in help_text


def test_services_offered_for_the_ready_line():
    args = _serve_args("--chargen-port", "0", "--smtp-port", "2525")
    assert serve_services.offered(args) + serve_smtp.offered(args) == [("echo", 7), ("discard", 9),
                                                                         ("smtp", 2525)]
    args = _serve_args("--no-services", "--smtp-port", "0")
    assert serve_services.offered(args) + serve_smtp.offered(args) == []
