"""The SMTP client's pure parts: line endings, dot-stuffing, `netstack send` usage errors.

The client against servers on kernel streams is in tests/system/test_smtp_client_kernel.py.
"""
from __future__ import annotations

import pytest

from netstack.cli import main as cli_main
from smtp.client import dot_stuff, normalize_line_endings


def test_normalize_and_dot_stuff():
    assert normalize_line_endings(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert normalize_line_endings(b"") == b""
    assert dot_stuff(b".a\r\n..b\r\nc.\r\n.\r\n") == b"..a\r\n...b\r\nc.\r\n..\r\n"


@pytest.mark.parametrize("argv,needle", [
    (["--server", "nope"], "--server 'nope': expected HOST:PORT"),
    (["--server", "127.0.0.1:25", "/nonexistent/file"], "/nonexistent/file: No such file or directory"),
])
def test_netstack_send_usage_errors(argv, needle, capsys):
    file_arg = [] if len(argv) == 3 else ["-"]
    rc = cli_main(["send", "--kernel", "--from", "a@x", "--to", "b@y", *argv, *file_arg])
    assert rc == 2 and needle in capsys.readouterr().err
